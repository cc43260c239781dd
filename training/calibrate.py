"""Fit a prior's uncertainty calibration (recon_core.uncertainty.ErrorModel) on simulator validation slices.

Per validation subject (recon_core.sim.export, split "val", the evaluation's 128² 8-coil setting) and acceleration R
(uniform 1-D mask with its ACS block): coil maps by the product's recipe, DDS with the product settings and
max(K) posterior samples; for each K the first K samples give the image (their mean) and the std, the pooled std
σ_p (recon_core.uncertainty.pooled_std) and the actual error ||x̂| − |x|| inside the head (object region of the
reference). The factor c(R, K) makes |error| ≤ 2cσ_p hold for `coverage` of those pixels (`fit_factors`). The
test split and the real brains are never used here (the evaluation scores them)."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from recon_core.coils import coil_maps
from recon_core.errors import InputError
from recon_core.masks import make_mask
from recon_core.raw.retrospective import object_region
from recon_core.samplers import SamplerConfig
from recon_core.samplers.dds import dds_reconstruct
from recon_core.sim.export import simulate_slice
from recon_core.uncertainty import COVERAGE, POOL_PX, ErrorModel, fit_factors, pooled_std


def collect_cases(prior, n_slices: int = 8, accels=(4.0, 8.0), samples=(2, 4), seed: int = 100,
                  matrix: int = 128, coils: int = 8, config: SamplerConfig | None = None, pool_px: float = POOL_PX,
                  progress: bool = True, device: str = "cpu") -> list:
    """[(K, R, |error| in the head, σ_p in the head)] over validation slices × accelerations × K."""
    if not samples or min(samples) < 2:
        raise InputError(f"calibration needs sample counts ≥ 2, got {list(samples)}")
    if n_slices < 1 or not accels:
        raise InputError("calibration needs ≥ 1 slice and ≥ 1 acceleration")
    cfg = (config or SamplerConfig()).replace(samples=int(max(samples)))
    cases = []
    bar = tqdm(total=n_slices * len(accels), desc="calibrate", unit="recon", disable=not progress, leave=False)
    for i in range(n_slices):
        full, ref, rec = simulate_slice(matrix, coils, seed + i, split="val")
        region = object_region(np.abs(ref))
        for R in accels:
            m = make_mask("uniform1d", full.shape[-2:], float(R), seed=i)
            k = (full * m.mask[None]).astype(np.complex64)
            maps = coil_maps(k[None], mask=m.mask)
            res = dds_reconstruct(prior, k[None], maps, m.mask, [rec], config=cfg, device=device)
            smp = np.asarray(res.samples)[:, 0]                       # (Kmax, ny, nx)
            for K in samples:
                mean = smp[:K].mean(0)
                std = np.sqrt((np.abs(smp[:K] - mean) ** 2).mean(0))
                e = np.abs(np.abs(mean) - np.abs(ref))[region]
                cases.append((int(K), float(R), e, pooled_std(std, K, pool_px)[region]))
            bar.update(1)
    bar.close()
    return cases


def calibrate_uncertainty(prior, n_slices: int = 8, accels=(4.0, 8.0), samples=(2, 4), seed: int = 100,
                          coverage: float = COVERAGE, pool_px: float = POOL_PX, progress: bool = True,
                          command: str = "", matrix: int = 128, coils: int = 8, device: str = "cpu") -> ErrorModel:
    """The fitted ErrorModel (see module docstring)."""
    if not 0.5 < coverage < 1.0:
        raise InputError(f"coverage must be in (0.5, 1), got {coverage}")
    cases = collect_cases(prior, n_slices, accels, samples, seed, matrix, coils, pool_px=pool_px, progress=progress,
                          device=device)
    what = (f"{n_slices} simulator validation slices (seeds {seed}…{seed + n_slices - 1}), uniform1d "
            f"×{'/'.join(f'{r:g}' for r in accels)}, K {'/'.join(str(k) for k in samples)}"
            + (f"; `{command}`" if command else ""))
    return ErrorModel(pool_px=pool_px, factors=fit_factors(cases, coverage), coverage=coverage, fitted_on=what)
