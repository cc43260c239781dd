"""`BaselineSpec`: what a classical reconstruction declares so that the registry (`recon_core.baselines`) can
offer it to the front doors (`method`), the CLI and the evaluation without anyone else naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class BaselineSpec:
    """name: the `method` value.
    solve: backend "torch": solve(op, y, lamda, n_iter, show_pbar) → (B, ny, nx) complex tensor, with `op` the
           SENSE operator (`recon_core.operators.SenseOp`) and y (B, C, ny, nx) the measured k-space divided per
           slice by the 99th percentile of |zero-filled| when `normalise` (λ is then scale-free);
           backend "numpy": solve(ksp, maps, mask, lamda, n_iter) → (B, ny, nx) complex64 on numpy arrays
           (ksp, maps (B, C, ny, nx), mask (ny, nx) or (B, ny, nx)) in the input's units.
    lamda, n_iter: defaults (None: the method has none); lambda_grid: λ values the evaluation tunes on its
    validation split; real_grid: λ values the real-data evaluation tries per slice; requires: an external
    binary the method needs (its absence is an InputError naming it); regularised: counts toward the
    evaluation's "best classical" (a regularised or kernel method, not plain SENSE / zero-filling)."""

    name: str
    solve: Callable
    backend: str = "torch"
    normalise: bool = True
    lamda: float | None = None
    n_iter: int | None = None
    lambda_grid: tuple = ()
    real_grid: tuple = ()
    requires: str | None = None
    regularised: bool = False
    summary: str = ""

    def __post_init__(self):
        if self.backend not in ("torch", "numpy"):
            raise ValueError(f"baseline {self.name}: backend must be 'torch' or 'numpy', got {self.backend!r}")
