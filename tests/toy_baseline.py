"""A toy classical method, added the way DESIGN.md says a new baseline is: this one module (its SPECS) plus one
registry entry (`recon_core.baselines.register(spec)`, done by the test that uses it).

"Tikhonov SENSE": CG on (AᴴA + λI)x = Aᴴy with λ 0.05 (scale-free: the registry normalises the data)."""

from __future__ import annotations

from recon_core.baselines import BaselineSpec
from recon_core.cg import sense_solve


def solve(op, y, lamda, n_iter, show_pbar=False):
    return sense_solve(op, y, n_iter=n_iter, lamda=lamda)


SPECS = (BaselineSpec("tikhonov", solve, lamda=0.05, n_iter=20, lambda_grid=(0.01, 0.05),
                      summary="toy: CG-SENSE with a Tikhonov term"),)
