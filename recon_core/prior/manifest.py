"""The manifest of a prior checkpoint directory (`contextmri.json`: format, version, resolution, prompt format,
encoder kind, conditioning, normalisation, training summary, part folder names), the shipped models' places
and the resolution of a model name ('default', 'default-latent' or a directory) to a directory."""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
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


def is_contextmri_layout(directory) -> bool:
    d = Path(directory)
    return (not (d / MANIFEST).exists() and (d / "text_encoder").is_dir() and (d / "scheduler").is_dir()
            and any((d / v).is_dir() for v in ("fastmri", "skm-tea", "unet")))


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
