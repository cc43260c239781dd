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
    import recon_core

    return os.path.join(os.path.dirname(recon_core.__file__), "models", "default")


def resolve_model(name: str) -> str:
    """'default' → the shipped model directory; otherwise the given directory. Missing → InputError."""
    if name in (None, "", "default"):
        path = default_model_dir()
        if not os.path.isdir(path) or not os.listdir(path):
            raise InputError(f"the default model is not installed (expected it in {path}); pass --model DIR with a "
                             f"trained prior, or use a baseline method (--method l1wavelet|sense|tv|zerofilled)")
        return os.path.realpath(path)
    if not os.path.isdir(name):
        raise InputError(f"model directory {name!r} does not exist (expected 'default' or a saved prior directory)")
    return os.path.realpath(name)


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
