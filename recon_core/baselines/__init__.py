"""Classical reconstructions by name, with the same inputs/outputs as the diffusion samplers: the one list
the front doors (`method`), the CLI and the evaluation read.

reconstruct(method, ksp, maps, mask, ...) with ksp (B, C, ny, nx) complex (measured, zeros where not
sampled), maps (B, C, ny, nx), mask (ny, nx) or (B, ny, nx) → image (B, ny, nx) complex64 in scanner
units (numpy in → numpy out, torch in → torch out).

    zerofilled  Aᴴy                                    (baselines/zerofilled.py)
    sense       CG-SENSE, λ 0, 30 iterations           (baselines/sense.py)
    grappa      pygrappa kernels 7×9, λ 0.1            (baselines/grappa.py)
    l1wavelet   sigpy L1-wavelet (db4), λ 5e-4, 100 it (baselines/sigpy_cs.py)
    l1wavelet-shift  the same with cycle spinning (random shifts), λ 1e-3 (baselines/sigpy_cs.py)
    tv          sigpy total variation, λ 5e-3, 100 it  (baselines/sigpy_cs.py)
    bart-w      `bart pics` l1-wavelet, λ 3e-3, 100 it (baselines/bart.py; needs the `bart` binary)
    bart-tv     `bart pics` TV, λ 3e-3, 100 it        (baselines/bart.py)

λ is scale-free: each slice is divided by the 99th percentile of |zero-filled| before the solve and
multiplied back after, so one λ serves data in any scanner units. Each family module declares `SPECS`
(`spec.BaselineSpec`); adding a method = one module + one entry in `_FAMILIES` (or `register(spec)`).
"""

from __future__ import annotations

import shutil

import numpy as np
import torch

from ..errors import InputError
from ..mvue import percentile_scale
from ..operators import SenseOp
from ..validate import as_tensor, check_ndim
from . import bart, grappa, sense, sigpy_cs, zerofilled
from .spec import BaselineSpec

_FAMILIES = (zerofilled, sense, grappa, sigpy_cs, bart)
BASELINES: dict[str, BaselineSpec] = {s.name: s for fam in _FAMILIES for s in fam.SPECS}
METHODS = tuple(BASELINES)   # the built-in names (a run-time `register` adds to `BASELINES` only)

__all__ = ["BASELINES", "METHODS", "BaselineSpec", "available", "get_spec", "methods", "prepare", "reconstruct", "register"]


def register(spec: BaselineSpec) -> BaselineSpec:
    """Add a classical method at run time (its name becomes a valid `method` wherever `methods()` is asked)."""
    if spec.name in BASELINES:
        raise InputError(f"a baseline named {spec.name!r} is already registered")
    BASELINES[spec.name] = spec
    return spec


def methods(requires: str | None | bool = False, regularised: bool | None = None) -> tuple:
    """Names of the registered methods; `requires` a binary name (or None: those needing nothing) filters by
    the external tool they need; `regularised` filters by that flag."""
    return tuple(n for n, s in BASELINES.items() if (requires is False or s.requires == requires)
                 and (regularised is None or s.regularised == regularised))


def get_spec(method: str) -> BaselineSpec:
    if method not in BASELINES:
        raise InputError(f"unknown method {method!r}: expected one of {', '.join(BASELINES)}")
    return BASELINES[method]


def available(method: str) -> bool:
    """Whether the method's external tool (if any) is installed."""
    spec = get_spec(method)
    return spec.requires is None or shutil.which(spec.requires) is not None


def prepare(ksp, maps, mask, device=None):
    """Validate and convert (ksp, maps, mask) → (SenseOp, measured k-space tensor)."""
    k = as_tensor(ksp, "k-space", device=device)
    check_ndim(k, 4, "k-space", "(B, C, ny, nx)")
    op = SenseOp(maps, mask, device=k.device)
    if tuple(op.maps.shape) != tuple(k.shape):
        raise InputError(f"maps {tuple(op.maps.shape)} must match k-space {tuple(k.shape)} (B, C, ny, nx)")
    return op, op.mask * k


def reconstruct(method: str, ksp, maps, mask, lamda: float | None = None, n_iter: int | None = None,
                device=None, show_pbar: bool = False):
    """See module docstring; `lamda`/`n_iter` None → the method's defaults."""
    spec = get_spec(method)
    lam = spec.lamda if lamda is None else float(lamda)
    its = spec.n_iter if n_iter is None else int(n_iter)
    if lam is not None and lam < 0:
        raise InputError(f"lambda must be ≥ 0, got {lam}")
    was_numpy = isinstance(ksp, np.ndarray)
    if spec.backend == "numpy":   # numpy tools: per slice, on the CPU
        k, s, mk = (x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in (ksp, maps, mask))
        if k.ndim == 3:
            k, s = k[None], s[None]
        out = np.asarray(spec.solve(k, s, mk, lam, its), dtype=np.complex64)
        return out if was_numpy else torch.from_numpy(out)
    op, y = prepare(ksp, maps, mask, device=device)
    if spec.normalise:
        scale = percentile_scale(op.AH(y))                                  # (B,)
        out = spec.solve(op, y / scale[:, None, None, None].to(y.real.dtype), lam, its, show_pbar)
        out = out * scale[:, None, None].to(out.real.dtype)
    else:
        out = spec.solve(op, y, lam, its, show_pbar)
    out = out.to(torch.complex64)
    return out.cpu().numpy() if was_numpy else out
