"""The one cache of loaded priors (thread-safe), so a gadget, server, evaluation or benchmark handling
many scans loads a model once.

`PriorCache().get(name, device)` → `Prior` (eval mode), keyed by the resolved model directory and the
device; `get_prior(name, device)` uses the process-wide cache. "default" is the model shipped under
recon_core/models/default/. An MRD server worker keeps its own `PriorCache` (one copy per worker).
"""

from __future__ import annotations

import os
import threading
import time

from ..device import resolve_device
from ..errors import InputError
from . import manifest
from .model import load_prior


def default_model_dir() -> str:
    """Directory of the shipped default model (may not exist yet)."""
    return str(manifest.DEFAULT_MODEL_DIR)


def resolve_model(name: str) -> str:
    """'default' → the shipped model directory; otherwise the given directory. Missing → InputError."""
    try:
        return os.path.realpath(manifest.resolve_model_path(name or "default"))
    except InputError as exc:
        if str(name or "default") == "default":
            raise InputError(f"{exc}; or pass --model DIR, or use a baseline (--method l1wavelet|sense|tv|zerofilled)"
                             ) from None
        raise


class PriorCache:
    """Loaded priors keyed by (resolved directory, device); `loader(path, device)` builds one (default:
    `load_prior` + eval). Thread-safe: one lock around lookup and load."""

    def __init__(self, loader=None, log=None):
        self._cache: dict = {}
        self._lock = threading.Lock()
        self._loader = loader
        self._log = log

    def get(self, name: str = "default", device="auto"):

        path = resolve_model(name) if self._loader is None else str(name)
        dev = resolve_device(device) if isinstance(device, str) else device
        key = (path, str(dev))
        with self._lock:
            prior = self._cache.get(key)
            if prior is None:
                t0 = time.time()
                if self._loader is not None:
                    prior = self._loader(name, device)
                else:
                    prior = load_prior(path, device=str(dev))
                if hasattr(prior, "eval"):
                    prior.eval()
                self._cache[key] = prior
                if self._log:
                    self._log(f"loaded prior {name!r} ({path}) on {dev} in {time.time() - t0:.1f} s")
            return prior

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()


_DEFAULT = PriorCache()


def get_prior(name: str = "default", device="auto"):
    """Load (once per process) and return the prior `name` on `device` (eval mode)."""
    return _DEFAULT.get(name, device)


def clear_cache() -> None:
    """Drop every prior of the process-wide cache (tests, memory pressure)."""
    _DEFAULT.clear()
