"""Training configuration (YAML): schema, defaults and validation (unknown keys → InputError naming the
file and the key).

Top level: name, seed, prior (preset name | YAML path | dict, schema of recon_core/prior/presets),
latent_vae (MR-VAE directory: train a latent prior on its latents), init (checkpoint dir to start from,
e.g. the base for LoRA), data, train, conditioning, lora.
Relative paths in `data.path`, `data.cache`, `init` are resolved against the current directory.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from recon_core.errors import InputError
from recon_core.settings import PRECISIONS
from training.datasets import check_exclude

DEFAULTS = {
    "name": "run",
    "seed": 0,
    "prior": "tiny",
    "latent_vae": None,            # a latent prior: the MR-VAE checkpoint (train-vae's OUT/model) whose latents
                                   # the UNet of `prior` learns (e.g. prior: latent-cpu); None: a pixel prior
    "init": None,
    "data": {
        "kind": "export",          # export (simulator export) | fastmri (multi-coil .h5) | ismrmrd (raw .h5)
        "path": None,              # export dir, or a .h5 file / directory of .h5 files
        "split": "train",          # export split
        "cache": None,             # fastmri/ismrmrd: where the preprocessed export-layout cache is written
        "limit": None,             # use only the first N slices
        "augment_phase": True,     # multiply each image by a random global phase e^{i phi} (physically valid)
        "also": None,              # export: more export directories (same split) whose images are added, e.g. the
                                   # classic export beside the scanner-variety one
        "exclude": None,           # [{contrast: FLAIR, pathology: tumour}, ...]: leave these combinations out
                                   # (pathology: none | wm_lesions | tumour); e.g. to test unseen combinations
    },
    "train": {
        "batch_size": 8,           # per process, per micro-batch
        "grad_accum": 1,
        "max_steps": 100,          # optimiser steps in total (across resumed runs)
        "lr": 1.0e-4,
        "lr_schedule": "constant",  # constant | cosine (to lr * lr_min_ratio at max_steps)
        "warmup_steps": 0,         # linear LR warm-up from 0 over the first N steps
        "lr_min_ratio": 0.1,       # cosine: final LR = lr * lr_min_ratio
        "lr_horizon": "steps",     # cosine ends at: steps (max_steps; exact resume) | minutes (this run's
                                   # max_minutes of wall time: a fixed lease; the step count is then whatever fits)
        "loss_weighting": "uniform",  # uniform (ε-MSE) | min_snr (Hang et al. 2023: w_t = min(SNR_t, γ)/SNR_t)
        "min_snr_gamma": 5.0,
        "weight_decay": 1.0e-4,
        "betas": [0.9, 0.999],
        "grad_clip": 1.0,
        "ema_decay": 0.999,
        "ema_warmup": True,        # decay_t = min(ema_decay, (1 + t) / (10 + t)) (diffusers EMAModel default)
        "precision": "auto",       # auto (timed trial: bf16 only where faster) | fp32 | bf16 | fp16
        "checkpoint_every": 200,   # steps; also on SIGINT/SIGTERM, --max-minutes and at the end
        "log_every": 10,           # CSV rows every N steps (the loss is the mean over those steps)
        "device": "auto",
        "threads": None,           # torch.set_num_threads
        "max_minutes": None,       # wall-time limit of one run (stops cleanly with a checkpoint)
        "compile": False,          # torch.compile the UNet in place (nn.Module.compile; "auto": on CUDA only)
        "preload": False,          # read the whole training split into memory first (no memmap reads per step)
    },
    "conditioning": {
        "mode": "contextmri",      # contextmri | independent | none | unconditional (always null tokens)
        "p_empty": 0.1,
        "p_params": 0.5,
        "p_field": 0.5,
    },
    "lora": None,                  # {rank: 4, alpha: 32, targets: [to_q, to_k, to_v, to_out.0]}; needs init
}
LORA_KEYS = {"rank", "alpha", "targets", "dropout"}
DATA_KINDS = ("export", "fastmri", "ismrmrd")
LR_SCHEDULES = ("constant", "cosine")
LR_HORIZONS = ("steps", "minutes")
LOSS_WEIGHTINGS = ("uniform", "min_snr")
COND_MODES = ("contextmri", "independent", "none", "unconditional")


def _merge(base: dict, over: dict, source: str, prefix: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in (over or {}).items():
        if key not in base:
            raise InputError(f"{source}: unknown key {prefix + key!r} (allowed: {sorted(base)})")
        if isinstance(base[key], dict) and key != "prior":
            if not isinstance(value, dict):
                raise InputError(f"{source}: key {prefix + key!r} must be a mapping, got {type(value).__name__}")
            out[key] = _merge(base[key], value, source, prefix + key + ".")
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config(config, defaults: dict, overrides: dict | None = None, what: str = "training config"):
    """(config with `defaults` filled, source) from a YAML path or a dict; unknown keys → InputError naming
    the file and the key. `overrides`: {"train.max_steps": 5, "latent_vae": DIR, ...} (None values skipped)."""
    source = what
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise InputError(f"{what} not found: {path}")
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    else:
        raw = copy.deepcopy(dict(config))
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping at the top level")
    cfg = _merge(defaults, raw, source)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if "." not in dotted:
            cfg[dotted] = value
            continue
        section, key = dotted.split(".")
        cfg[section][key] = value
    return cfg, source


def load_config(config, overrides: dict | None = None) -> dict:
    """YAML path or dict → full validated config (defaults filled). `overrides`: {"train.max_steps": 5, ...}."""
    cfg, source = read_config(config, DEFAULTS, overrides)
    _validate(cfg, source)
    cfg["_source"] = source
    return cfg


def _validate(cfg: dict, source: str) -> None:
    d, t, c = cfg["data"], cfg["train"], cfg["conditioning"]
    if d["kind"] not in DATA_KINDS:
        raise InputError(f"{source}: key 'data.kind' is {d['kind']!r}, expected one of {DATA_KINDS}")
    if c["mode"] not in COND_MODES:
        raise InputError(f"{source}: key 'conditioning.mode' is {c['mode']!r}, expected one of {COND_MODES}")
    for key in ("batch_size", "grad_accum", "max_steps", "checkpoint_every", "log_every"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise InputError(f"{source}: key 'train.{key}' must be a positive integer, got {t[key]!r}")
    for key in ("lr", "weight_decay", "grad_clip", "ema_decay", "lr_min_ratio", "min_snr_gamma"):
        try:
            t[key] = float(t[key])
        except (TypeError, ValueError):
            raise InputError(f"{source}: key 'train.{key}' must be a number, got {t[key]!r}") from None
    if not 0.0 <= t["ema_decay"] < 1.0:
        raise InputError(f"{source}: key 'train.ema_decay' must be in [0, 1), got {t['ema_decay']}")
    if t["compile"] not in (True, False, "auto"):
        raise InputError(f"{source}: key 'train.compile' is {t['compile']!r}, expected true, false or auto")
    if not isinstance(t["preload"], bool):
        raise InputError(f"{source}: key 'train.preload' must be true or false, got {t['preload']!r}")
    if t["precision"] not in PRECISIONS:
        raise InputError(f"{source}: key 'train.precision' is {t['precision']!r}, expected auto, fp32, bf16 or fp16")
    if t["lr_schedule"] not in LR_SCHEDULES:
        raise InputError(f"{source}: key 'train.lr_schedule' is {t['lr_schedule']!r}, expected one of {LR_SCHEDULES}")
    if t["lr_horizon"] not in LR_HORIZONS:
        raise InputError(f"{source}: key 'train.lr_horizon' is {t['lr_horizon']!r}, expected one of {LR_HORIZONS}")
    if t["lr_horizon"] == "minutes" and not t["max_minutes"]:
        raise InputError(f"{source}: key 'train.lr_horizon' is 'minutes' but 'train.max_minutes' is not set")
    if t["loss_weighting"] not in LOSS_WEIGHTINGS:
        raise InputError(f"{source}: key 'train.loss_weighting' is {t['loss_weighting']!r}, "
                         f"expected one of {LOSS_WEIGHTINGS}")
    if not isinstance(t["warmup_steps"], int) or isinstance(t["warmup_steps"], bool) or t["warmup_steps"] < 0:
        raise InputError(f"{source}: key 'train.warmup_steps' must be an integer >= 0, got {t['warmup_steps']!r}")
    if not 0.0 <= t["lr_min_ratio"] <= 1.0:
        raise InputError(f"{source}: key 'train.lr_min_ratio' must be in [0, 1], got {t['lr_min_ratio']}")
    if not t["min_snr_gamma"] > 0:
        raise InputError(f"{source}: key 'train.min_snr_gamma' must be > 0, got {t['min_snr_gamma']}")
    if cfg["lora"] is not None:
        if not isinstance(cfg["lora"], dict):
            raise InputError(f"{source}: key 'lora' must be a mapping or null")
        unknown = sorted(set(cfg["lora"]) - LORA_KEYS)
        if unknown:
            raise InputError(f"{source}: unknown key 'lora.{unknown[0]}' (allowed: {sorted(LORA_KEYS)})")
        if not cfg["init"]:
            raise InputError(f"{source}: key 'lora' needs key 'init' (the base checkpoint to adapt)")

    check_exclude(d["exclude"], source)
    if d["also"] is not None:
        if not isinstance(d["also"], list) or not all(isinstance(p, str) and p for p in d["also"]):
            raise InputError(f"{source}: key 'data.also' must be a list of export directories")
        if d["kind"] != "export":
            raise InputError(f"{source}: key 'data.also' adds simulator exports; it needs data.kind export")
    if cfg["latent_vae"] is not None and (cfg["init"] or cfg["lora"] is not None):
        raise InputError(f"{source}: key 'latent_vae' builds a new latent prior; it cannot be combined with 'init'/'lora'")
    if not isinstance(cfg["prior"], (str, dict)):
        raise InputError(f"{source}: key 'prior' must be a preset name, a YAML path or a mapping")
