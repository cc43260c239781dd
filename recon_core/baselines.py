"""Classical reconstructions with the same inputs/outputs as DDS.

reconstruct(method, ksp, maps, mask, ...) with ksp (B, C, ny, nx) complex (measured, zeros where not
sampled), maps (B, C, ny, nx), mask (ny, nx) or (B, ny, nx) → image (B, ny, nx) complex64 in scanner
units (numpy in → numpy out, torch in → torch out).

- zerofilled: Aᴴy (SENSE-combined zero-filled image).
- sense:      CG on (AᴴA + λI)x = Aᴴy (λ default 0, 30 iterations; early stopping regularises).
- grappa:     `recon_core.grappa` (pygrappa kernels 7×9 from the ACS block, λ = the kernel fit's relative
              Tikhonov weight, default 0.1), coil images combined with the same maps.
- l1wavelet:  sigpy.mri.app.L1WaveletRecon (db4), λ default 5e-4, 100 iterations.
- tv:         sigpy.mri.app.TotalVariationRecon, λ default 5e-3, 100 iterations.
- bart-w / bart-tv: `bart pics` l1-wavelet / TV with the same maps (recon_core.bart; needs the `bart`
  binary: without it these raise InputError naming it), λ default 3e-3, 100 iterations.
λ is scale-free: each slice is divided by the 99th percentile of |zero-filled| before the solve and
multiplied back after, so one λ serves data in any scanner units.
"""

from __future__ import annotations

import numpy as np
import torch

from .cg import sense_solve
from .errors import InputError
from .mvue import percentile_scale
from .operators import SenseOp
from .validate import as_tensor, check_ndim

METHODS = ("zerofilled", "sense", "grappa", "l1wavelet", "tv", "bart-w", "bart-tv")
BART_METHODS = ("bart-w", "bart-tv")
DEFAULT_LAMBDA = {"grappa": 0.1, "sense": 0.0, "l1wavelet": 5e-4, "tv": 5e-3, "bart-w": 3e-3, "bart-tv": 3e-3}
DEFAULT_ITERS = {"sense": 30, "l1wavelet": 100, "tv": 100, "bart-w": 100, "bart-tv": 100}


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
    """See module docstring."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    was_numpy = isinstance(ksp, np.ndarray)
    if method in BART_METHODS or method == "grappa":  # numpy tools: per-slice, on the CPU
        k, s, mk = (x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in (ksp, maps, mask))
        if k.ndim == 3:
            k, s = k[None], s[None]
        if method == "grappa":
            out = _grappa(k, s, mk, DEFAULT_LAMBDA["grappa"] if lamda is None else float(lamda))
        else:
            from . import bart

            out = bart.pics(k, s, mk, method, lamda=lamda, n_iter=n_iter or DEFAULT_ITERS[method])
        return out if was_numpy else torch.from_numpy(out)
    op, y = prepare(ksp, maps, mask, device=device)
    lam = DEFAULT_LAMBDA.get(method, 0.0) if lamda is None else float(lamda)
    its = DEFAULT_ITERS.get(method, 0) if n_iter is None else int(n_iter)
    if lam < 0:
        raise InputError(f"lambda must be ≥ 0, got {lam}")
    zf = op.AH(y)
    if method == "zerofilled":
        out = zf
    else:
        scale = percentile_scale(zf)                                  # (B,)
        yn = y / scale[:, None, None, None].to(y.real.dtype)
        if method == "sense":
            out = sense_solve(op, yn, n_iter=its, lamda=lam)
        else:
            out = _sigpy_recon(method, yn, op, lam, its, show_pbar)
        out = out * scale[:, None, None].to(out.real.dtype)
    out = out.to(torch.complex64)
    return out.cpu().numpy() if was_numpy else out


def _grappa(k: np.ndarray, s: np.ndarray, mk: np.ndarray, lam: float) -> np.ndarray:
    """GRAPPA per slice: k, s (B, C, ny, nx), mask (ny, nx) or (B, ny, nx) → (B, ny, nx) complex64."""
    from .grappa import grappa_image

    if k.ndim != 4 or s.shape != k.shape:
        raise InputError(f"k-space (B, C, ny, nx) and maps of the same shape expected, got {k.shape} and {s.shape}")
    masks = np.broadcast_to(mk.astype(bool), (k.shape[0],) + k.shape[-2:])
    return np.stack([grappa_image(k[b], s[b], masks[b], lamda=lam) for b in range(k.shape[0])])


def _sigpy_recon(method, y, op, lam, its, show_pbar):
    import sigpy.mri.app as app

    App = app.L1WaveletRecon if method == "l1wavelet" else app.TotalVariationRecon
    out = []
    mask = op.mask.expand(y.shape[0], 1, *y.shape[-2:])
    for b in range(y.shape[0]):
        yb = y[b].cpu().numpy().astype(np.complex64)
        mb = op.maps[b].cpu().numpy().astype(np.complex64)
        wb = mask[b, 0].cpu().numpy().astype(np.float32)
        x = App(yb, mb, lam, weights=wb, max_iter=its, show_pbar=show_pbar).run()
        out.append(torch.from_numpy(np.asarray(x, dtype=np.complex64)))
    return torch.stack(out).to(y.device)
