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

from ..errors import InputError

MANIFEST = "contextmri.json"
FORMAT = "contextmri-prior"
FORMAT_VERSION = 1
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "default"
DEFAULT_LATENT_DIR = Path(__file__).resolve().parent.parent / "models" / "latent"   # "default-latent"
NORMALISATION = {"kind": "percentile", "percentile": 99.0, "of": "|MVUE|",
                 "channels": ["real", "imag"], "fft": "centred orthonormal"}


def make_manifest(cfg: dict, encoder, preset: str | None = None, training: dict | None = None, vae=None) -> dict:
    """Manifest dict for a prior built from config `cfg` with `encoder` (and the MR-VAE of a latent prior)."""
    from .. import __version__

    cfg = {k: v for k, v in cfg.items() if k != "latent"}   # the VAE travels inside the checkpoint (vae/)
    parts = {"unet": "unet", "scheduler": "scheduler", "encoder": "metadata_encoder"}
    latent = {}
    if vae is not None:
        parts["vae"] = "vae"
        latent = {"space": "latent", "latent": {"channels": vae.latent_channels, "size": vae.latent_size,
                                                "downsample": vae.downsample, "scaling_factor": vae.scaling_factor}}
    return {**latent,
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "contextmri_version": __version__,
        "preset": preset,
        "resolution": int(cfg["resolution"]),
        "prompt_format": cfg.get("prompt_format", "contextmri"),
        "encoder_kind": getattr(encoder, "kind", None),
        "conditioned": bool(cfg.get("conditioned", True)),
        "normalisation": dict(NORMALISATION),
        "config": json.loads(json.dumps(cfg)),
        "training": training or {},
        "parts": parts,
    }


# ------------------------------------------------------------------------------------------------
from ..io_utils import atomic_dir as _atomic_dir  # noqa: E402  (shared atomic writes)
from ..io_utils import write_json_atomic  # noqa: E402,F401


def save_prior(prior, directory, extra_manifest: dict | None = None) -> Path:
    """Write `prior` to `directory` atomically (temp dir + rename); returns the path."""
    from ..io_utils import atomic_directory

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
def read_manifest(directory) -> dict:
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise InputError(f"{path}: expected a JSON object")
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path}: key 'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("version")
    if not isinstance(version, int):
        raise InputError(f"{path}: key 'version' must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise InputError(f"{path}: key 'version' is {version}, newer than this contextmri supports "
                         f"({FORMAT_VERSION}); upgrade contextmri")
    for key in ("resolution", "parts"):
        if key not in manifest:
            raise InputError(f"{path}: missing key {key!r}")
    return manifest


def _require_dir(path: Path, what: str, files=()) -> Path:
    if not path.is_dir():
        raise InputError(f"checkpoint part missing: {path} ({what})")
    for name in files:
        if not any((path / f).is_file() for f in ([name] if isinstance(name, str) else name)):
            raise InputError(f"checkpoint part incomplete: {path} has no {name if isinstance(name, str) else ' or '.join(name)}")
    return path


_UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _load_unet(path: Path):
    from diffusers import UNet2DConditionModel

    _require_dir(path, "UNet2DConditionModel", ["config.json", _UNET_WEIGHTS])
    try:
        unet = UNet2DConditionModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise InputError(f"{path}: cannot load the UNet ({str(exc).splitlines()[0]})") from exc
    return unet


def _load_scheduler(path: Path):
    from diffusers import DDPMScheduler

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


def is_contextmri_layout(directory) -> bool:
    d = Path(directory)
    return (not (d / MANIFEST).exists() and (d / "text_encoder").is_dir() and (d / "scheduler").is_dir()
            and any((d / v).is_dir() for v in ("fastmri", "skm-tea", "unet")))


def _load_contextmri_layout(directory: Path, variant: str | None):
    """ContextMRI's MRI_checkpoint: fastmri/|skm-tea/|unet/ + text_encoder/ + tokenizer/ + scheduler/."""
    from ..metadata.encoders import build_encoder

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


def resolve_model_path(path_or_name) -> Path:
    """'default' → the shipped model (recon_core/models/default), 'default-latent' → the shipped latent prior
    (recon_core/models/latent); otherwise a directory path."""
    if str(path_or_name) == "default":
        if not (DEFAULT_MODEL_DIR / MANIFEST).is_file():
            raise InputError(f"the default model is not installed ({DEFAULT_MODEL_DIR} has no {MANIFEST}); "
                             f"train one with `contextmri train --config training/configs/default.yaml`")
        return DEFAULT_MODEL_DIR
    if str(path_or_name) == "default-latent":
        if not (DEFAULT_LATENT_DIR / MANIFEST).is_file():
            raise InputError(f"the default latent prior is not installed ({DEFAULT_LATENT_DIR} has no {MANIFEST}); "
                             f"train one (training/RUNS.md, 'Latent prior') or pass --model DIR")
        return DEFAULT_LATENT_DIR
    path = Path(path_or_name).expanduser()
    if not path.is_dir():
        raise InputError(f"model directory not found: {path} (expected 'default' or a checkpoint directory)")
    return path


def load_prior(path_or_name="default", device="cpu", variant: str | None = None, adapter=None):
    """Load a prior checkpoint directory (or 'default', or a ContextMRI MRI_checkpoint directory).

    `variant` picks the UNet folder of a ContextMRI layout ("fastmri" | "skm-tea"). `adapter` is an
    optional LoRA adapter directory (see `recon_core.prior.lora`) applied onto the base. A directory
    whose manifest is itself a LoRA adapter loads its base (manifest key "base") plus the adapter.
    Returns a `Prior` in eval mode on `device`.
    """
    from ..device import resolve_device
    from .model import Prior

    directory = resolve_model_path(path_or_name)
    if is_contextmri_layout(directory):
        unet, sched, encoder, manifest = _load_contextmri_layout(directory, variant)
    else:
        if not (directory / MANIFEST).is_file():
            raise InputError(f"{directory}: not a prior checkpoint (no {MANIFEST}, and not a ContextMRI "
                             f"MRI_checkpoint layout with fastmri/ + text_encoder/ + tokenizer/ + scheduler/)")
        manifest = read_manifest(directory)
        if manifest.get("kind") == "lora-adapter":
            base = manifest.get("base")
            if not base:
                raise InputError(f"{directory / MANIFEST}: LoRA adapter without key 'base'; pass the base model")
            base_path = Path(base) if Path(base).is_absolute() or base == "default" else directory / base
            return load_prior(base_path if base != "default" else "default", device=device, adapter=directory)
        parts = manifest["parts"]
        from ..metadata.encoders import load_encoder

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
        from ..latent import load_vae

        vdir = directory / (manifest.get("parts") or {}).get("vae", "vae")
        if not vdir.is_dir():
            raise InputError(f"{directory / MANIFEST}: a latent prior, but its VAE directory {vdir} is missing "
                             f"(expected {vdir}/contextmri.json + {vdir}/vae/)")
        vae = load_vae(vdir)
    _check_consistent(unet, encoder, manifest, directory, vae)
    prior = Prior(unet, sched, encoder, manifest, vae=vae)
    if adapter is not None:
        from .lora import load_adapter

        load_adapter(prior, adapter)
    prior.eval()
    return prior.to(resolve_device(device) if isinstance(device, str) else device)


def export_prior(src, dst, half: bool = False) -> Path:
    """Copy the checkpoint directory `src` to `dst` (atomically); `half`: float32 weights stored as float16
    (half the size on disk; `load_prior` loads them back as float32 — rounding only, ~1e-3 relative).
    Returns dst. The manifest records `weights_dtype`."""
    import torch
    from safetensors.torch import load_file, save_file

    src = resolve_model_path(src)
    if not (src / MANIFEST).is_file():
        raise InputError(f"{src}: not a prior checkpoint (no {MANIFEST})")
    from ..io_utils import atomic_directory

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
