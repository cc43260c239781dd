"""Zero-filled reconstruction: Aᴴy, the SENSE-combined zero-filled image (x = Σ_c S_c* F⁻¹ y_c)."""

from __future__ import annotations

from .spec import BaselineSpec


def solve(op, y, lamda=None, n_iter=None, show_pbar=False):
    """Aᴴy: y (B, C, ny, nx) → (B, ny, nx) complex."""
    return op.AH(y)


SPECS = (BaselineSpec("zerofilled", solve, normalise=False, summary="Aᴴy (SENSE-combined zero-filled image)"),)
