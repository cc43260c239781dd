"""Checkpoint directory of a prior (diffusers style, safetensors weights):

    DIR/contextmri.json        manifest: format, version, resolution, prompt format, encoder kind,
                               conditioned, normalisation, training summary, part folder names
    DIR/unet/                  UNet2DConditionModel (config.json + diffusion_pytorch_model.safetensors)
    DIR/scheduler/             DDPMScheduler (scheduler_config.json)
    DIR/metadata_encoder/      ConditionEncoder.save_pretrained (typed encoder, or CLIP text_encoder/+tokenizer/)

A directory laid out like ContextMRI's published `MRI_checkpoint` (no manifest; `fastmri/` or `skm-tea/`
UNet, `text_encoder/` + `tokenizer/` (CLIP), `scheduler/`) loads unchanged with a CLIP encoder and the
ContextMRI prompt format.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..io_utils import atomic_directory, write_json_atomic
from ..metadata.encoders import build_encoder, load_encoder
from .manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    NORMALISATION,
    is_contextmri_layout,
    read_manifest,
    resolve_model_path,
)
from .vae import load_vae


def save_prior(prior, directory, extra_manifest: dict | None = None) -> Path:
    """Write `prior` to `directory` atomically (temp dir + rename); returns the path."""
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        parts = prior.manifest.get("parts") or {}
        unet_dir = parts.get("unet", "unet")
        enc_dir = parts.get("encoder", "metadata_encoder")
        prior.unet.save_pretrained(tmp / unet_dir, safe_serialization=True)
        prior.scheduler.save_pretrained(tmp / parts.get("scheduler", "scheduler"))
        prior.encoder.save_pretrained(tmp / enc_dir)
        manifest = dict(prior.manifest)
        manifest.update(extra_manifest or {})
        manifest["parts"] = {"unet": unet_dir, "scheduler": parts.get("scheduler", "scheduler"), "encoder": enc_dir}
        if getattr(prior, "vae", None) is not None:
            prior.vae.save_pretrained(tmp / parts.get("vae", "vae"))
            manifest["parts"]["vae"] = parts.get("vae", "vae")
        manifest["format"], manifest["version"] = FORMAT, FORMAT_VERSION
        write_json_atomic(tmp / MANIFEST, manifest)
    return directory


# ------------------------------------------------------------------------------------------------


def _require_dir(path: Path, what: str, files=()) -> Path:
    if not path.is_dir():
        raise InputError(f"checkpoint part missing: {path} ({what})")
    for name in files:
        if not any((path / f).is_file() for f in ([name] if isinstance(name, str) else name)):
            raise InputError(f"checkpoint part incomplete: {path} has no {name if isinstance(name, str) else ' or '.join(name)}")
    return path


_UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _load_unet(path: Path):
    from diffusers import UNet2DConditionModel  # heavy (≈2 s): loaded when a prior is built or read

    _require_dir(path, "UNet2DConditionModel", ["config.json", _UNET_WEIGHTS])
    try:
        unet = UNet2DConditionModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise InputError(f"{path}: cannot load the UNet ({str(exc).splitlines()[0]})") from exc
    return unet


def _load_scheduler(path: Path):
    from diffusers import DDPMScheduler  # heavy (≈2 s): loaded when a prior is built or read

    _require_dir(path, "DDPMScheduler", ["scheduler_config.json"])
    try:
        sched = DDPMScheduler.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: cannot load the scheduler ({str(exc).splitlines()[0]})") from exc
    if sched.config.prediction_type != "epsilon":
        raise InputError(f"{path / 'scheduler_config.json'}: key 'prediction_type' is "
                         f"{sched.config.prediction_type!r}, expected 'epsilon'")
    return sched


def _check_consistent(unet, encoder, manifest: dict, where: Path, vae=None) -> None:
    cfg = unet.config
    want_ch = 2 if vae is None else vae.latent_channels
    what = "2 (real, imag)" if vae is None else f"{want_ch} (the VAE's latent channels)"
    for key in ("in_channels", "out_channels"):
        if cfg[key] != want_ch:
            raise InputError(f"{where}/unet/config.json: key {key!r} is {cfg[key]}, expected {what}")
    want = cfg.encoder_hid_dim if cfg.get("encoder_hid_dim") is not None else cfg.cross_attention_dim
    key = "encoder_hid_dim" if cfg.get("encoder_hid_dim") is not None else "cross_attention_dim"
    if int(want) != int(encoder.dim):
        raise InputError(f"{where}: mismatched parts: unet config {key!r} = {want} but the encoder "
                         f"({getattr(encoder, 'kind', '?')}) gives tokens of dim {encoder.dim}")
    f = 1 if vae is None else vae.downsample
    if int(manifest["resolution"]) != int(cfg.sample_size) * f:
        raise InputError(f"{where / MANIFEST}: key 'resolution' is {manifest['resolution']} but "
                         f"unet/config.json sample_size is {cfg.sample_size}" + (f" (× VAE downsampling {f})" if f > 1 else ""))


def _load_contextmri_layout(directory: Path, variant: str | None):
    """ContextMRI's MRI_checkpoint: fastmri/|skm-tea/|unet/ + text_encoder/ + tokenizer/ + scheduler/."""
    variants = [variant] if variant else ["fastmri", "unet", "skm-tea"]
    unet_dir = next((directory / v for v in variants if (directory / v).is_dir()), None)
    if unet_dir is None:
        raise InputError(f"checkpoint part missing: {directory / variants[0]} (UNet of the ContextMRI layout)")
    _require_dir(directory / "tokenizer", "CLIPTokenizer")
    _require_dir(directory / "text_encoder", "CLIPTextModel", ["config.json"])
    unet = _load_unet(unet_dir)
    sched = _load_scheduler(directory / "scheduler")
    prompt = "skmtea" if unet_dir.name == "skm-tea" else "contextmri"
    encoder = build_encoder({"kind": "clip", "path": str(directory), "prompt_variant": prompt})
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "preset": None, "source": "contextmri-mri-checkpoint",
        "resolution": int(unet.config.sample_size), "prompt_format": prompt, "encoder_kind": encoder.kind,
        "conditioned": True, "normalisation": dict(NORMALISATION), "training": {},
        "parts": {"unet": unet_dir.name, "scheduler": "scheduler", "encoder": "metadata_encoder"},
    }
    return unet, sched, encoder, manifest


def adapter_base(directory: Path, manifest: dict):
    """The base model of a LoRA adapter directory (its manifest key "base": 'default', absolute, or relative
    to the adapter), or None when `manifest` is not an adapter's."""
    if manifest.get("kind") != "lora-adapter":
        return None
    base = manifest.get("base")
    if not base:
        raise InputError(f"{directory / MANIFEST}: LoRA adapter without key 'base'; pass the base model")
    return "default" if base == "default" else (Path(base) if Path(base).is_absolute() else directory / base)


def load_parts(directory: Path, variant: str | None = None, manifest: dict | None = None):
    """The parts of the checkpoint in `directory` (a prior's, or a ContextMRI MRI_checkpoint layout), checked
    against each other → (unet, scheduler, encoder, manifest, vae or None)."""
    if is_contextmri_layout(directory):
        unet, sched, encoder, manifest = _load_contextmri_layout(directory, variant)
    else:
        manifest = manifest or read_manifest(directory)
        parts = manifest["parts"]
        unet = _load_unet(directory / parts.get("unet", "unet"))
        sched = _load_scheduler(directory / parts.get("scheduler", "scheduler"))
        enc_dir = _require_dir(directory / parts.get("encoder", "metadata_encoder"), "condition encoder")
        try:
            encoder = load_encoder(enc_dir)
        except InputError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"{enc_dir}: cannot load the condition encoder ({str(exc).splitlines()[0]})") from exc
    vae = None
    if manifest.get("space") == "latent":
        vdir = directory / (manifest.get("parts") or {}).get("vae", "vae")
        if not vdir.is_dir():
            raise InputError(f"{directory / MANIFEST}: a latent prior, but its VAE directory {vdir} is missing "
                             f"(expected {vdir}/contextmri.json + {vdir}/vae/)")
        vae = load_vae(vdir)
    _check_consistent(unet, encoder, manifest, directory, vae)
    return unet, sched, encoder, manifest, vae


def read_checkpoint_manifest(directory: Path) -> dict | None:
    """The manifest of a checkpoint directory; None for a ContextMRI layout (which has none); InputError when
    the directory is neither."""
    if is_contextmri_layout(directory):
        return None
    if not (directory / MANIFEST).is_file():
        raise InputError(f"{directory}: not a prior checkpoint (no {MANIFEST}, and not a ContextMRI "
                         f"MRI_checkpoint layout with fastmri/ + text_encoder/ + tokenizer/ + scheduler/)")
    return read_manifest(directory)


def export_prior(src, dst, half: bool = False) -> Path:
    """Copy the checkpoint directory `src` to `dst` (atomically); `half`: float32 weights stored as float16
    (half the size on disk; `load_prior` loads them back as float32 — rounding only, ~1e-3 relative).
    Returns dst. The manifest records `weights_dtype`."""
    src = resolve_model_path(src)
    if not (src / MANIFEST).is_file():
        raise InputError(f"{src}: not a prior checkpoint (no {MANIFEST})")
    dst = Path(dst)
    with atomic_directory(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        if half:
            for f in sorted(tmp.rglob("*.safetensors")):
                sd = load_file(str(f))
                save_file({k: (v.half() if v.dtype == torch.float32 else v) for k, v in sd.items()}, str(f))
        man = json.loads((tmp / MANIFEST).read_text())
        man["weights_dtype"] = "float16 (loaded as float32)" if half else "float32"
        write_json_atomic(tmp / MANIFEST, man)
    return dst
