"""Self-validation on the scan itself (issue 26, item 2b): which reconstruction does this scan support?

A prior trained on other data may not help a given scan (at R ≈ 2 on real heads it adds nothing; on an
anatomy it never saw it may hurt). The measured k-space itself can tell, without a reference image:

1. hold out `holdout` of the measured lines that are not calibration (ACS) lines, at least 4, every other
   one of the free lines nearest the centre (`holdout_rows`); with fewer than 4 free lines nothing is held
   out and the step is skipped (a note, not an error);
2. reconstruct from the remaining lines with every candidate (`CANDIDATES`: DDS with the fixed data
   weight, DDS with the noise-aware one, CG-SENSE and sigpy L1-wavelet, with the same coil maps);
3. score each by its prediction error on the held-out lines (central half of the readout, where signal
   dominates), ‖M_h F S x − y_h‖² / ‖y_h‖² (the held-out noise is independent of the reconstruction, so
   this ranks candidates by their error on unmeasured k-space plus a constant);
4. reconstruct once more with all lines using the winner. When a classical candidate wins, its image is
   returned, and the reason (every candidate's held-out error) goes into the result's info, the log and
   the image meta.

Cost: one reconstruction per candidate on top of the final one (≈ 3 DDS runs per slice with the defaults).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..baselines import reconstruct
from ..coils import calib_region
from ..fft import fft2c_np
from .base import SamplerResult, resolve_config
from .dds import DDSConfig

log = logging.getLogger(__name__)

#: (name, method, sampler settings) tried on the reduced data
CANDIDATES = (("dds", "dds", {"data_weight": "fixed"}), ("dds-noise", "dds", {"data_weight": "noise"}),
              ("sense", "sense", None), ("l1wavelet", "l1wavelet", None))
MIN_FREE_LINES = 4
MIN_HELDOUT = 4


def candidate(name: str) -> tuple:
    """(method, sampler settings or None for a classical method) of the candidate called `name`."""
    table = {n: (meth, sets) for n, meth, sets in CANDIDATES}
    if name not in table:
        raise KeyError(f"no self-validation candidate {name!r}")
    return table[name]


def majority(choices) -> str | None:
    """The most frequent of the per-slice choices (ties: the first chosen); None when there are none."""
    choices = [c for c in choices if c]
    return max(dict.fromkeys(choices), key=choices.count) if choices else None


def holdout_rows(mask_rows: np.ndarray, acs: tuple, fraction: float, seed: int) -> np.ndarray:
    """Measured, non-ACS rows to hold out: n = max(MIN_HELDOUT, fraction · free lines), taken from the 2n free
    lines nearest the k-space centre (where the signal, not the noise, dominates), every other one (so the
    holes are spread), starting at a seeded offset. Empty when fewer than MIN_FREE_LINES lines are free."""
    free = np.nonzero(mask_rows)[0]
    free = free[(free < acs[0]) | (free >= acs[1])]
    if len(free) < MIN_FREE_LINES:
        return np.array([], dtype=int)
    n = min(max(MIN_HELDOUT, int(round(fraction * len(free)))), len(free) // 2)
    centre = len(mask_rows) // 2
    near = free[np.argsort(np.abs(free - centre), kind="stable")][: 2 * n]
    start = int(np.random.default_rng(seed).integers(2))
    return np.sort(near[start::2][:n])


def heldout_error(image: np.ndarray, ksp: np.ndarray, maps: np.ndarray, rows: np.ndarray) -> float:
    """‖F(S x) − y‖² / ‖y‖² for one slice over the held-out rows and the central half of the readout (the
    outer readout is mostly noise): image (ny, nx), ksp/maps (C, ny, nx)."""
    nx = ksp.shape[-1]
    cols = slice(nx // 4, nx - nx // 4)
    pred = fft2c_np(maps * image[None])[:, rows, cols]
    y = ksp[:, rows, cols]
    return float(np.sum(np.abs(pred - y) ** 2) / max(np.sum(np.abs(y) ** 2), 1e-30))


def _run(sampler, method: str, settings, prior, ksp, maps, mask, records, config, device, scale=None):
    """One candidate on (1, C, ny, nx) data → (image (ny, nx) complex64, SamplerResult or None): the classical
    `method` when `settings` is None, else `sampler` (the wrapped diffusion sampler) with `settings`."""
    if settings is None:
        return np.asarray(reconstruct(method, ksp, maps, mask))[0], None
    res = sampler(prior, ksp, maps, mask, records=records, config=config.replace(self_validate=False, **settings),
                  device=device, scale=scale)
    return np.asarray(res.image)[0], res


def _slice_scale(scale, b: int):
    """The caller's `scale` for slice b: None or a method name as it is, numbers per slice."""
    if scale is None or isinstance(scale, str):
        return scale
    v = np.asarray(scale, dtype=np.float64).reshape(-1)
    return float(v[0] if v.size == 1 else v[b])


def self_validated(sampler, prior, ksp, maps, mask, records=None, config=None, device="auto", scale=None,
                   progress=None, **settings):
    """`sampler`'s signature and result (SamplerResult); with `config.self_validate` the candidates are ranked on
    held-out lines of each slice first (module docstring) and `result.timings["self_validation"]` holds the
    per-slice choice and errors."""
    c = resolve_config(DDSConfig, config, settings, "self_validated")
    if not c.self_validate:
        return sampler(prior, ksp, maps, mask, records=records, config=c, device=device, scale=scale,
                       progress=progress)
    k = np.asarray(ksp.cpu() if isinstance(ksp, torch.Tensor) else ksp)
    s = np.asarray(maps.cpu() if isinstance(maps, torch.Tensor) else maps)
    k, s = (k[None], s[None]) if k.ndim == 3 else (k, s)
    B, C, ny, nx = k.shape
    m = np.broadcast_to(np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask).astype(bool)
                        .reshape(-1, ny, nx), (B, ny, nx)).copy()
    recs = list(records) if records is not None else None
    results, infos = [], []
    for b in range(B):
        rb = None if recs is None else [recs[b]]
        sb = _slice_scale(scale, b)
        info, (method, sets) = _choose(sampler, prior, k[b], s[b], m[b], rb, c, device, sb)
        infos.append(info)
        results.append(_run(sampler, method, sets, prior, k[b:b + 1], s[b:b + 1], m[b], rb, c, device, sb))
    return _merge(results, infos, c)


def _choose(sampler, prior, k, s, m, records, c, device, scale):
    """Rank the candidates on one slice → (info dict, (method, settings) of the winner)."""
    cy, _ = calib_region(m)
    lo = m.shape[0] // 2 - cy // 2
    rows = holdout_rows(m.any(axis=1), (lo, lo + cy), c.holdout, c.seed)
    if len(rows) == 0:
        note = f"self-validation skipped: fewer than {MIN_FREE_LINES} measured lines outside the calibration block"
        log.info(note)
        return {"skipped": note}, ("dds", {})
    reduced = m.copy()
    reduced[rows] = False
    errs = {}
    for name, method, sets in CANDIDATES:
        img, _ = _run(sampler, method, sets, prior, (k * reduced[None])[None], s[None], reduced, records, c, device, scale)
        errs[name] = heldout_error(img, k, s, rows)
    best = min(errs, key=errs.get)
    spec = {n: (meth, sets) for n, meth, sets in CANDIDATES}[best]
    info = {"chosen": best, "heldout_lines": int(len(rows)), "heldout_nmse": {n: round(v, 6) for n, v in errs.items()}}
    if spec[1] is None:
        info["reason"] = (f"the classical {best} predicts the held-out lines better than the prior "
                          f"(NMSE {errs[best]:.4g} vs DDS {min(errs['dds'], errs['dds-noise']):.4g})")
        log.warning("self-validation: %s", info["reason"])
    return info, spec


def _merge(results, infos, c):
    """Per-slice results → one SamplerResult (classical winners: std None, timings from a DDS winner if any)."""
    image = np.stack([r[0] for r in results]).astype(np.complex64)
    dds = [r[1] for r in results if r[1] is not None]
    K = c.samples
    std = None
    if K > 1 and len(dds) == len(results):
        std = np.concatenate([r.std for r in dds])
    base = dds[0] if dds else None
    timings = dict(base.timings) if base is not None else {}
    timings["self_validation"] = infos
    scale = np.concatenate([r[1].scale if r[1] is not None else np.ones(1, np.float32) for r in results])
    return SamplerResult(image=image, std=std, samples=None, scale=scale, timings=timings, denoised=None,
                         nfe=base.nfe if base else 0, cfg=float(c.cfg), timesteps=base.timesteps if base else [],
                         config=c.to_meta())
