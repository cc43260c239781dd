"""Self-validation on the scan itself (issue 26, item 2b): which reconstruction does this scan support?

A prior trained on other data may not help a given scan (at R ≈ 2 on real heads it adds nothing; on an
anatomy it never saw it may hurt). The measured k-space itself can tell, without a reference image:

1. hold out `holdout` of the measured samples outside the calibration (ACS) block, in `holdout_folds` (1 or 2)
   disjoint folds: for line masks (every measured row samples the same readout points: the raw stream's 2-D
   Cartesian scans) whole lines, at least 4 (`holdout_rows`); for 2-D masks (e.g. Poisson k-space points) single
   samples (`holdout_points`: removing whole rows of a 2-D mask opens a hole the reconstruction cannot fill, and
   the ranking follows the hole, not the scan). Which ones (`holdout_rule`): "spread" (the default since session
   19) draws them at random over all free k-space and weights each residual by the inverse local sampling density
   (`holdout_weights`), so the score estimates the error over all unmeasured k-space; "centre" (sessions 11–18)
   takes every other one of the free lines / samples nearest the centre (fold 0 the even ones, fold 1 the odd
   ones), which scores a ring of low frequencies only. With fewer than 4 free lines nothing is held out and the
   step is skipped (a note, not an error);
2. reconstruct from the remaining samples with every candidate (`CANDIDATES`: DDS as configured, DDS with its
   prior weighed × 0.3 in the sparse data consistency (recon_core/sparse_dc.py), CG-SENSE and L1-wavelet with
   cycle spinning; session 12 — before: DDS with γ and 2γ, sigpy's fixed-grid L1-wavelet), with the same coil maps);
3. score each by its prediction error on the held-out samples (line masks: the central half of the readout,
   where signal dominates), ‖M_h F S x − y_h‖²_w / ‖y_h‖²_w over the held-out samples of all folds (w: the spread
   rule's weights; the held-out noise is independent of the reconstruction, so this ranks candidates by their error
   on unmeasured k-space plus a constant);
4. reconstruct once more with all samples using the winner. When a classical candidate is returned, the reason
   (every candidate's held-out error) goes into the result's info ("reason" and "prior_unsure"), the log and the
   image meta; when DDS wins the sum but the best classical candidate wins one fold, DDS is kept and
   "prior_unsure" says the folds disagree (falling back there was measured and cost 1.6 and 3.2 dB on two
   simulator slices at ×8, where one fold's held-out lines carry almost no signal).

Session 19 (results/selfval/check_s19.md, training/RUNS.md "Session 19"): on 32 product checks the spread rule changed
5 choices (+0.46 dB on the worst simulator slice, +0.09 / +0.14 on two real cells, −0.06 on one) and 27 not.
Measured (results/selfval/probe.py on a lent GPU, rules.py; training/RUNS.md "Self-validation"): one fold of
held-out lines flips its choice with the parity of the lines (−0.35 dB against L1-wavelet on one real brain),
their sum did not; the noise-weight candidate was never the best and was dropped. Session 12 (training/RUNS.md
"Sparse data consistency"): the real brains prefer the prior weighed less (μ 0.1–0.3) beside the sparsity
term, the simulator μ 1 — hence the dds-sparse candidate (it replaced the 2γ one, which the sparse DC makes
redundant at real ×4–×6).

With K ≥ 2 posterior samples (a std series asked for) and DDS kept, the winner's fold-0 run also gives
`holdout_error_ratio` (recon_core.uncertainty.holdout_error_ratio): its held-out residual against what its own
error estimate predicts there, which rescales the error estimate of the slice (and of the series that reuses the
choice) where the prior is more wrong than its spread says (`ErrorModel.holdout_scale`).

Cost: `holdout_folds` × (2 DDS + 2 classical) reconstructions on top of the final one (≈ 5 DDS runs per slice with
the defaults); in a series only the first `selfval_slices` slices pay it.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from scipy import ndimage as ndi

from ..baselines import reconstruct
from ..coils import calib_region
from ..fft import fft2c_np
from ..masks import realised_accel
from ..uncertainty import error_model_of, holdout_error_ratio
from .base import SamplerResult, resolve_config
from .dds import DDSConfig

log = logging.getLogger(__name__)

#: the sparse candidate's wavelet λ when the configured DDS runs without sparsity (wavelet_lambda 0)
SPARSE_LAMBDA = 1e-3


def _as_configured(config) -> dict:
    return {}


def _weaker_prior(config) -> dict:
    """The prior's estimate weighed × 0.3 in the sparse data consistency (switched on at SPARSE_LAMBDA if it is off)."""
    return {"prior_weight": 0.3 * float(config.prior_weight),
            "wavelet_lambda": float(config.wavelet_lambda) or SPARSE_LAMBDA}


#: (name, method, settings: a function of the configured sampler settings giving the ones to change, or None for a
#: classical method) tried on the reduced data: DDS as configured; DDS trusting its prior less (what the real brains
#: preferred in session 12's sweep); CG-SENSE; cycle-spinning L1-wavelet
CANDIDATES = (("dds", "dds", _as_configured), ("dds-sparse", "dds", _weaker_prior), ("sense", "sense", None),
              ("l1wavelet-shift", "l1wavelet-shift", None))
MIN_FREE_LINES = 4
MIN_HELDOUT = 4
MIN_HELDOUT_POINTS = 64
SPREAD_SEED = 20261205     # the "spread" rule's draw of held-out samples (fixed: the same scan gives the same choice)
SPREAD_SIGMA = 3.0         # pixels: the smoothing of the mask that gives the local sampling density


def candidate(name: str, config) -> tuple:
    """(method, sampler settings to apply on `config`, or None for a classical method) of the candidate `name`."""
    table = {n: (meth, f) for n, meth, f in CANDIDATES}
    if name not in table:
        raise KeyError(f"no self-validation candidate {name!r}")
    meth, f = table[name]
    return meth, (None if f is None else f(config))


def reuse_choice(votes: list, config, selfval_slices: int) -> tuple | None:
    """In a series: None while the next slice must still self-validate (fewer than `selfval_slices` votes, or 0 =
    every slice); else (method, config, info) of the majority choice of the first slices — a classical method (its
    name, `config` unchanged) or DDS with the winner's settings and self-validation off — with info saying so."""
    if selfval_slices == 0 or len(votes) < selfval_slices:
        return None
    winner = majority(votes)
    method, settings = candidate(winner, config)
    info = {"chosen": winner, "reused": f"chosen on the series' first {len(votes)} slices "
                                        f"({', '.join(votes)}); not re-validated"}
    if settings is None:
        info["reason"] = info["prior_unsure"] = (f"the classical {winner} predicted the held-out samples best on "
                                                 f"the first slices")
        return method, config, info
    return method, config.replace(self_validate=False, **settings), info


def is_line_mask(mask: np.ndarray) -> bool:
    """True when every measured row of the (ny, nx) mask samples the same readout points (whole lines)."""
    m = np.asarray(mask, bool)
    rows = m[m.any(axis=1)]
    return bool(len(rows) == 0 or (rows == rows[0]).all())


def majority(choices) -> str | None:
    """The most frequent of the per-slice choices (ties: the first chosen); None when there are none."""
    choices = [c for c in choices if c]
    return max(dict.fromkeys(choices), key=choices.count) if choices else None


def holdout_rows(mask_rows: np.ndarray, acs: tuple, fraction: float, fold: int = 0, rule: str = "centre") -> np.ndarray:
    """Measured, non-ACS rows to hold out: n = max(MIN_HELDOUT, fraction · free lines), taken from the 2n free
    lines nearest the k-space centre (where the signal, not the noise, dominates), every other one (so the
    holes are spread): fold 0 the 1st, 3rd, …, fold 1 the 2nd, 4th, … (disjoint). Rule "spread": the 2n lines
    drawn at random (a fixed seed) among all free lines instead. Empty when fewer than MIN_FREE_LINES lines are
    free."""
    free = np.nonzero(mask_rows)[0]
    free = free[(free < acs[0]) | (free >= acs[1])]
    if len(free) < MIN_FREE_LINES:
        return np.array([], dtype=int)
    n = min(max(MIN_HELDOUT, int(round(fraction * len(free)))), len(free) // 2)
    centre = len(mask_rows) // 2
    if rule == "spread":
        pick = free[np.random.default_rng(SPREAD_SEED).permutation(len(free))[: 2 * n]]
        return np.sort(pick[int(fold) % 2::2][:n])
    near = free[np.argsort(np.abs(free - centre), kind="stable")][: 2 * n]
    return np.sort(near[int(fold) % 2::2][:n])


def holdout_points(mask: np.ndarray, calib: tuple, fraction: float, fold: int = 0, rule: str = "centre") -> np.ndarray:
    """For 2-D masks: (ny, nx) bool of single measured samples outside the centred calib (cy, cx) block to hold
    out, chosen like `holdout_rows` by (elliptical) distance from the centre (rule "spread": at random), fold 0 / 1
    every other one. All False when fewer than 2·MIN_HELDOUT_POINTS samples are free."""
    m = np.asarray(mask, bool)
    ny, nx = m.shape
    cy, cx = calib
    free = m.copy()
    free[ny // 2 - cy // 2: ny // 2 - cy // 2 + cy, nx // 2 - cx // 2: nx // 2 - cx // 2 + cx] = False
    iy, ix = np.nonzero(free)
    out = np.zeros_like(m)
    if len(iy) < 2 * MIN_HELDOUT_POINTS:
        return out
    n = min(max(MIN_HELDOUT_POINTS, int(round(fraction * len(iy)))), len(iy) // 2)
    if rule == "spread":
        order = np.random.default_rng(SPREAD_SEED).permutation(len(iy))
    else:
        order = np.argsort(((iy - ny // 2) / ny) ** 2 + ((ix - nx // 2) / nx) ** 2, kind="stable")
    near = order[: 2 * n][int(fold) % 2::2][:n]
    out[iy[near], ix[near]] = True
    return out


def holdout_mask(mask: np.ndarray, fraction: float, fold: int = 0, rule: str = "centre") -> tuple:
    """(held-out (ny, nx) bool, scored (ny, nx) bool, what) for one fold: whole lines of a line mask (scored on
    the central half of the readout), single samples of a 2-D mask (scored where held out); empty when too
    few samples are free. `rule`: "centre" (the held-out samples nearest the centre) or "spread" (at random over
    the free samples; score them with `holdout_weights`)."""
    m = np.asarray(mask, bool)
    ny, nx = m.shape
    cy, cx = calib_region(m)
    if is_line_mask(m):
        lo = ny // 2 - cy // 2
        rows = holdout_rows(m.any(axis=1), (lo, lo + cy), fraction, fold, rule)
        held = np.zeros_like(m)
        held[rows] = m[rows]
        scored = held.copy()
        scored[:, : nx // 4] = False
        scored[:, nx - nx // 4:] = False
        return held, scored, f"{len(rows)} lines"
    held = holdout_points(m, (cy, cx), fraction, fold, rule)
    return held, held, f"{int(held.sum())} samples"


def holdout_weights(mask: np.ndarray, rule: str = "centre") -> np.ndarray | None:
    """Weights (ny, nx) of the held-out samples' residuals: None for rule "centre" (plain sums); for "spread" the
    inverse local sampling density of the mask (Gaussian σ SPREAD_SIGMA pixels; along the phase axis only for a
    line mask), so that the held-out samples of a variable-density mask stand for the unmeasured k-space around
    them and the score estimates the error over all of it rather than over the densely sampled centre."""
    if rule != "spread":
        return None
    m = np.asarray(mask, bool)
    if is_line_mask(m):
        rows = ndi.gaussian_filter1d(m.any(axis=1).astype(np.float64), SPREAD_SIGMA, mode="wrap")
        dens = np.broadcast_to(rows[:, None], m.shape)
    else:
        dens = ndi.gaussian_filter(m.astype(np.float64), SPREAD_SIGMA, mode="wrap")
    return 1.0 / np.maximum(dens, 1e-3)


def heldout_residual(image: np.ndarray, ksp: np.ndarray, maps: np.ndarray, scored: np.ndarray,
                     weights: np.ndarray | None = None) -> tuple:
    """(‖F(S x) − y‖², ‖y‖²) for one slice over the scored held-out samples (`holdout_mask`), each sample weighted
    by `weights` (ny, nx) when given (`holdout_weights`): image (ny, nx), ksp/maps (C, ny, nx), scored (ny, nx) bool."""
    pred = fft2c_np(maps * image[None])[:, scored]
    y = ksp[:, scored]
    w = 1.0 if weights is None else np.asarray(weights)[scored][None]
    return float(np.sum(w * np.abs(pred - y) ** 2)), float(np.sum(w * np.abs(y) ** 2))


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
    t0 = time.perf_counter()
    for b in range(B):
        rb = None if recs is None else [recs[b]]
        sb = _slice_scale(scale, b)
        info, (method, sets) = _choose(sampler, prior, k[b], s[b], m[b], rb, c, device, sb)
        infos.append(info)
        results.append(_run(sampler, method, sets, prior, k[b:b + 1], s[b:b + 1], m[b], rb, c, device, sb))
    out = _merge(results, infos, c)
    out.timings["total"] = time.perf_counter() - t0     # the whole call, validation included (also when classical)
    return out


def _choose(sampler, prior, k, s, m, records, c, device, scale):
    """Rank the candidates on one slice over `c.holdout_folds` folds → (info dict, (method, settings) of the winner)."""
    folds = []
    weights = holdout_weights(m, c.holdout_rule)
    for f in range(c.holdout_folds):
        held, scored, what = holdout_mask(m, c.holdout, f, c.holdout_rule)
        if held.any():
            folds.append((held, scored, what))
    if not folds:
        note = f"self-validation skipped: fewer than {MIN_FREE_LINES} measured lines outside the calibration block"
        log.info(note)
        return {"skipped": note}, ("dds", {})

    def held_out(name, held, scored, w):
        """Candidate `name` from the samples not held out → (weighted residual, energy, SamplerResult or None)."""
        reduced = m & ~held
        meth, sets = candidate(name, c)
        img, res = _run(sampler, meth, sets, prior, (k * reduced[None])[None], s[None], reduced, records, c, device,
                        scale)
        return (*heldout_residual(img, k, s, scored, w), res)

    per_fold, energy, first = [], [], {}
    for f, (held, scored, _) in enumerate(folds):
        errs = {}
        for name, _m, _f in CANDIDATES:
            errs[name], y2, res = held_out(name, held, scored, weights)
            if f == 0:   # (the error ratio below; under the spread rule it is taken on the centre fold instead)
                first[name] = (errs[name], int(scored.sum()), res)
        energy.append(max(y2, 1e-30))
        per_fold.append({n: v / energy[-1] for n, v in errs.items()})
    # the NMSE over all held-out samples of all folds (each fold weighted by its measured energy: a fold whose lines
    # carry little signal, NMSE ≈ 1 for every candidate, does not drown the others)
    total = {n: float(sum(e[n] * w for e, w in zip(per_fold, energy)) / sum(energy)) for n, _, _ in CANDIDATES}
    best = min(total, key=total.get)
    classical = [n for n, _, f in CANDIDATES if f is None]
    diffusion = [n for n, _, f in CANDIDATES if f is not None]
    info = {"chosen": best, "heldout": ", ".join(w for _, _, w in folds) + f" in {len(folds)} fold(s)",
            "heldout_nmse": {n: round(v, 6) for n, v in total.items()}}
    if len(folds) > 1:
        info["heldout_nmse_folds"] = [{n: round(v, 6) for n, v in e.items()} for e in per_fold]
    bc = min(classical, key=total.get)
    if best in diffusion and c.samples > 1 and weights is not None:
        # the error ratio's reference s̄ (ErrorModel.holdout_sbar) was fitted on the centre rule's fold 0: under another
        # rule the winner is run once more on that hold-out (K ≥ 2 only, i.e. when an error estimate is sent)
        held_c, scored_c, _ = holdout_mask(m, c.holdout, 0, "centre")
        if held_c.any():
            residual, _, res = held_out(best, held_c, scored_c, None)
            first[best] = (residual, int(scored_c.sum()), res)
            info["holdout_error_ratio_on"] = "the centre rule's fold 0 (one more run of the winner)"
    residual, n_scored, res = first[best]
    if best in diffusion and res is not None and res.std is not None:   # K ≥ 2: how wrong vs its own estimate
        ratio = holdout_error_ratio(residual, n_scored, np.asarray(res.std)[0], k, s, m, c.samples,
                                    realised_accel(m), error_model_of(prior))
        if ratio is not None:
            info["holdout_error_ratio"] = round(ratio, 4)
    if best in diffusion:
        lost = [i for i, e in enumerate(per_fold) if e[bc] < min(e[n] for n in diffusion)]
        if lost:   # kept (it wins over all held-out samples), but not confirmed by every fold: said so
            info["prior_unsure"] = (f"the held-out folds disagree: the classical {bc} predicted the held-out samples "
                                    f"better in fold {', '.join(str(i) for i in lost)} of {len(folds)} (NMSE "
                                    f"{per_fold[lost[0]][bc]:.4g} vs DDS "
                                    f"{min(per_fold[lost[0]][n] for n in diffusion):.4g}); DDS kept on the sum")
            log.warning("self-validation: %s", info["prior_unsure"])
    else:
        info["reason"] = info["prior_unsure"] = (
            f"the classical {best} predicts the held-out samples better than the prior "
            f"(NMSE {total[best]:.4g} vs DDS {min(total[n] for n in diffusion):.4g})")
        log.warning("self-validation: %s", info["reason"])
    return info, candidate(info["chosen"], c)


def _merge(results, infos, c):
    """Per-slice results → one SamplerResult (classical winners: std None, timings from a DDS winner if any; the
    caller sets "total")."""
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
