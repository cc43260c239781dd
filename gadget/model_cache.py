"""Per-process cache of loaded priors, so a gadget/server handling many scans loads a model once.

`get_prior(name, device)` → `recon_core.prior.Prior` (eval mode), keyed by the resolved model path
and device. "default" is the model shipped under recon_core/models/default/.
"""

from __future__ import annotations

import os
import threading

from recon_core.errors import InputError

_CACHE: dict = {}
_LOCK = threading.Lock()


def default_model_dir() -> str:
    """Directory of the shipped default model (may not exist yet)."""
    from recon_core.prior.checkpoint import DEFAULT_MODEL_DIR

    return str(DEFAULT_MODEL_DIR)


def resolve_model(name: str) -> str:
    """'default' → the shipped model directory; otherwise the given directory. Missing → InputError."""
    from recon_core.prior.checkpoint import resolve_model_path

    try:
        return os.path.realpath(resolve_model_path(name or "default"))
    except InputError as exc:
        if str(name or "default") == "default":
            raise InputError(f"{exc}; or pass --model DIR, or use a baseline (--method l1wavelet|sense|tv|zerofilled)"
                             ) from None
        raise


def get_prior(name: str = "default", device: str = "auto"):
    """Load (once per process) and return the prior `name` on `device` (eval mode)."""
    from recon_core.device import resolve_device
    from recon_core.prior import load_prior

    path = resolve_model(name)
    dev = resolve_device(device) if isinstance(device, str) else device
    key = (path, str(dev))
    with _LOCK:
        prior = _CACHE.get(key)
        if prior is None:
            prior = load_prior(path, device=str(dev))
            prior.eval()
            _CACHE[key] = prior
        return prior


def clear_cache():
    """Drop every cached prior (tests, memory pressure)."""
    with _LOCK:
        _CACHE.clear()
