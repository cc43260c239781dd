"""Compressed sensing with sigpy: L1-wavelet (db4; λ default 5e-4) and total variation (λ default 5e-3), sigpy's
apps, 100 iterations, on the same maps and mask; and L1-wavelet with cycle spinning (`l1wavelet-shift`).

Cycle spinning (random wavelet shifts, as BART's `pics -R W` does unless `-n`): a decimated wavelet transform
is not shift invariant, so a fixed one leaves blocky errors on the wavelet grid where the data are sparse
(random masks at ×4 and beyond). Here each FISTA step's proximal operator circularly shifts the image by a
random offset in [0, 2^levels) per axis, soft-thresholds its wavelet coefficients and shifts back
(recon_core/wavelet.py) — the same LinearLeastSquares/FISTA as sigpy's L1WaveletRecon, only the prox differs; the
offsets come from a fixed seed and the step from a seeded power iteration (reproducible). On the real brains it
matches BART pics W (training/RUNS.md, "Cycle-spinning L1-wavelet").
"""

from __future__ import annotations

import numpy as np
import torch

from ..wavelet import shifted_wavelet_prox
from .spec import BaselineSpec

APPS = {"l1wavelet": "L1WaveletRecon", "tv": "TotalVariationRecon"}   # sigpy.mri.app classes
SHIFT_SEED = 0


def max_eig(A, n_iter: int = 30, seed: int = SHIFT_SEED) -> float:
    """Largest eigenvalue of AᴴA by power iteration from a seeded start (sigpy's MaxEig starts from numpy's global
    random state, which makes its step size, and so its result, differ slightly from run to run)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(A.ishape) + 1j * rng.standard_normal(A.ishape)).astype(np.complex64)
    lam = 1.0
    for _ in range(n_iter):
        x = A.H(A(x))
        lam = float(np.linalg.norm(x))
        x = x / lam
    return lam


def _slices(op, y):
    """(numpy k-space (C, ny, nx), maps (C, ny, nx), mask weights (ny, nx)) per slice of a normalised batch."""
    mask = op.mask.expand(y.shape[0], 1, *y.shape[-2:])
    for b in range(y.shape[0]):
        yield (y[b].cpu().numpy().astype(np.complex64), op.maps[b].cpu().numpy().astype(np.complex64),
               mask[b, 0].cpu().numpy().astype(np.float32))


def _solver(method: str):
    def solve(op, y, lamda: float, n_iter: int, show_pbar=False):
        """y (B, C, ny, nx) normalised → (B, ny, nx) complex, one sigpy app per slice (on the CPU)."""
        import sigpy.mri.app as app  # heavy (≈2 s): loaded only when a sigpy method runs

        out = [getattr(app, APPS[method])(yb, mb, lamda, weights=wb, max_iter=n_iter, show_pbar=show_pbar).run()
               for yb, mb, wb in _slices(op, y)]
        return torch.stack([torch.from_numpy(np.asarray(x, dtype=np.complex64)) for x in out]).to(y.device)
    return solve


def _shifted_solver(op, y, lamda: float, n_iter: int, show_pbar=False):
    """Cycle-spinning L1-wavelet: y (B, C, ny, nx) normalised → (B, ny, nx) complex (FISTA, on the CPU)."""
    import sigpy as sp
    import sigpy.mri as mr

    out = []
    for yb, mb, wb in _slices(op, y):
        A = mr.linop.Sense(mb, weights=wb)
        proxg = shifted_wavelet_prox(mb.shape[1:], lamda)
        x = sp.app.LinearLeastSquares(A, yb * wb ** 0.5, proxg=proxg, max_iter=n_iter, alpha=1.0 / max_eig(A),
                                      show_pbar=show_pbar).run()
        out.append(torch.from_numpy(np.asarray(x, dtype=np.complex64)))
    return torch.stack(out).to(y.device)


_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SPECS = (BaselineSpec("l1wavelet", _solver("l1wavelet"), lamda=5e-4, n_iter=100, lambda_grid=_GRID,
                      real_grid=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), regularised=True,
                      summary="sigpy L1WaveletRecon (db4)"),
         BaselineSpec("l1wavelet-shift", _shifted_solver, lamda=1e-3, n_iter=100, lambda_grid=_GRID,
                      real_grid=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), regularised=True,
                      summary="L1-wavelet (db4) with cycle spinning, sigpy FISTA (BART pics W's random shifts)"),
         BaselineSpec("tv", _solver("tv"), lamda=5e-3, n_iter=100, lambda_grid=_GRID, regularised=True,
                      summary="sigpy TotalVariationRecon"))
