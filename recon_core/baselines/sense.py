"""CG-SENSE: conjugate gradients on (AᴴA + λI)x = Aᴴy (λ default 0, 30 iterations: early stopping regularises)."""

from __future__ import annotations

from ..cg import sense_solve
from .spec import BaselineSpec


def solve(op, y, lamda: float, n_iter: int, show_pbar=False):
    """y (B, C, ny, nx) normalised → (B, ny, nx) complex."""
    return sense_solve(op, y, n_iter=n_iter, lamda=lamda)


SPECS = (BaselineSpec("sense", solve, lamda=0.0, n_iter=30, real_grid=(0.0,),
                      summary="CG-SENSE (AᴴA + λI)x = Aᴴy, 30 iterations"),)
