"""Compressed sensing with sigpy's apps: L1-wavelet (db4; λ default 5e-4) and total variation (λ default 5e-3),
100 iterations, on the same maps and mask."""

from __future__ import annotations

import numpy as np
import torch

from .spec import BaselineSpec

APPS = {"l1wavelet": "L1WaveletRecon", "tv": "TotalVariationRecon"}   # sigpy.mri.app classes


def _solver(method: str):
    def solve(op, y, lamda: float, n_iter: int, show_pbar=False):
        """y (B, C, ny, nx) normalised → (B, ny, nx) complex, one sigpy app per slice (on the CPU)."""
        import sigpy.mri.app as app  # heavy (≈2 s): loaded only when a sigpy method runs

        out = []
        mask = op.mask.expand(y.shape[0], 1, *y.shape[-2:])
        for b in range(y.shape[0]):
            yb = y[b].cpu().numpy().astype(np.complex64)
            mb = op.maps[b].cpu().numpy().astype(np.complex64)
            wb = mask[b, 0].cpu().numpy().astype(np.float32)
            x = getattr(app, APPS[method])(yb, mb, lamda, weights=wb, max_iter=n_iter, show_pbar=show_pbar).run()
            out.append(torch.from_numpy(np.asarray(x, dtype=np.complex64)))
        return torch.stack(out).to(y.device)
    return solve


_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SPECS = (BaselineSpec("l1wavelet", _solver("l1wavelet"), lamda=5e-4, n_iter=100, lambda_grid=_GRID,
                      real_grid=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), regularised=True,
                      summary="sigpy L1WaveletRecon (db4)"),
         BaselineSpec("tv", _solver("tv"), lamda=5e-3, n_iter=100, lambda_grid=_GRID, regularised=True,
                      summary="sigpy TotalVariationRecon"))
