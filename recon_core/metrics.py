"""Image quality metrics on magnitude images: PSNR, SSIM, NMSE.

Conventions (`convention=`):
- "fastmri" (default): magnitudes as they are; data_range = max(|ref|) (fastMRI `evaluate.py`).
  PSNR = 10 log10(range² / MSE); SSIM with a 7×7 uniform window, K1 = 0.01, K2 = 0.03, sample
  covariances (as scikit-image's `structural_similarity` defaults, which fastMRI uses).
- "contextmri": each magnitude image min–max normalised to [0, 1] first, then data_range = 1 for
  PSNR and, as ContextMRI's code does (sic), data_range = 2 for SSIM.
NMSE = ‖ref − rec‖² / ‖ref‖² on the (possibly normalised) magnitudes.
Inputs: one slice (ny, nx) or a batch (B, ny, nx), complex or real, numpy or torch; batch → per-slice
values (array of B).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter
from scipy.stats import spearmanr

from .errors import InputError

CONVENTIONS = ("fastmri", "contextmri")


def _prep(ref, rec, convention):
    if convention not in CONVENTIONS:
        raise InputError(f"unknown metric convention {convention!r}: expected one of {CONVENTIONS}")
    ref = np.abs(np.asarray(ref.detach().cpu() if hasattr(ref, "detach") else ref)).astype(np.float64)
    rec = np.abs(np.asarray(rec.detach().cpu() if hasattr(rec, "detach") else rec)).astype(np.float64)
    if ref.shape != rec.shape:
        raise InputError(f"reference {ref.shape} and reconstruction {rec.shape} shapes differ")
    if ref.ndim not in (2, 3):
        raise InputError(f"expected (ny, nx) or (B, ny, nx) images, got shape {ref.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(rec).all()):
        raise InputError("metrics: non-finite values in the images")
    batched = ref.ndim == 3
    if not batched:
        ref, rec = ref[None], rec[None]
    if convention == "contextmri":
        def mm(a):
            lo = a.min(axis=(1, 2), keepdims=True)
            hi = a.max(axis=(1, 2), keepdims=True)
            return (a - lo) / np.maximum(hi - lo, 1e-12)
        ref, rec = mm(ref), mm(rec)
    return ref, rec, batched


def _out(v, batched):
    v = np.asarray(v, dtype=np.float64)
    return v if batched else float(v[0])


def nmse(ref, rec, convention: str = "fastmri"):
    ref, rec, b = _prep(ref, rec, convention)
    return _out(((ref - rec) ** 2).sum(axis=(1, 2)) / np.maximum((ref ** 2).sum(axis=(1, 2)), 1e-30), b)


def psnr(ref, rec, convention: str = "fastmri"):
    ref, rec, b = _prep(ref, rec, convention)
    mse = ((ref - rec) ** 2).mean(axis=(1, 2))
    rng = ref.max(axis=(1, 2)) if convention == "fastmri" else np.ones(len(ref))
    with np.errstate(divide="ignore"):
        return _out(10 * np.log10(rng ** 2 / np.maximum(mse, 1e-30)), b)


def _ssim2d(x, y, data_range, win=7, k1=0.01, k2=0.03):
    return _ssim_parts(x, y, data_range, win, k1, k2)[0]


def ssim(ref, rec, convention: str = "fastmri"):
    ref, rec, b = _prep(ref, rec, convention)
    vals = []
    for r, x in zip(ref, rec):
        dr = r.max() if convention == "fastmri" else 2.0
        vals.append(_ssim2d(r, x, dr))
    return _out(vals, b)


def all_metrics(ref, rec, convention: str = "fastmri") -> dict:
    """{'psnr', 'ssim', 'nmse'} for one slice (floats) or a batch (arrays)."""
    return {"psnr": psnr(ref, rec, convention), "ssim": ssim(ref, rec, convention),
            "nmse": nmse(ref, rec, convention)}


def masked_metrics(ref, rec, region) -> dict:
    """PSNR / SSIM / NMSE of magnitudes inside `region` (bool (ny, nx)), background zeroed in both images:
    PSNR = 10 log10(max|ref|² / mean over the region of the squared error); SSIM: the map of
    `_ssim_map` (fastMRI constants, data_range = max|ref|) averaged over the region; NMSE over the region.
    Independent of anyone's coil-map support: every image is judged on the same pixels."""
    r = np.abs(np.asarray(ref)).astype(np.float64)
    x = np.abs(np.asarray(rec)).astype(np.float64)
    m = np.asarray(region, dtype=bool)
    if r.shape != x.shape or r.shape != m.shape or r.ndim != 2:
        raise InputError(f"masked metrics: reference {r.shape}, reconstruction {x.shape} and region {m.shape} "
                         f"must be the same (ny, nx)")
    if not m.any():
        raise InputError("masked metrics: the region is empty")
    r, x = r * m, x * m
    dr = float(r.max())
    err = ((r - x) ** 2)[m]
    ssim_map = _ssim_map(r, x, dr)
    return {"psnr": float(10 * np.log10(dr ** 2 / max(err.mean(), 1e-30))), "ssim": float(ssim_map[m].mean()),
            "nmse": float(err.sum() / max((r[m] ** 2).sum(), 1e-30))}


def _ssim_map(x, y, data_range, win=7, k1=0.01, k2=0.03, cs: bool = False):
    """Per-pixel SSIM map (uniform window, sample covariances), same size as x; with `cs` also the
    contrast-structure map."""
    ux, uy = uniform_filter(x, win), uniform_filter(y, win)
    uxx, uyy, uxy = uniform_filter(x * x, win), uniform_filter(y * y, win), uniform_filter(x * y, win)
    n = win * win
    cov = n / (n - 1)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return (s, (2 * vxy + c2) / (vx + vy + c2)) if cs else s


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # Wang, Simoncelli & Bovik 2003


def _ssim_parts(x, y, data_range, win=7, k1=0.01, k2=0.03):
    """(mean SSIM, mean contrast-structure term) with a uniform window over the valid region."""
    s, cs = _ssim_map(x, y, data_range, win, k1, k2, cs=True)
    pad = (win - 1) // 2
    sl = (slice(pad, -pad), slice(pad, -pad))
    return s[sl].mean(), cs[sl].mean()


def ms_ssim(a, b, data_range: float | None = None, scales: int | None = None) -> float:
    """Multi-scale SSIM of two magnitude images (ny, nx) (complex or real): mean contrast-structure at the
    first `scales`−1 dyadic scales (2×2 mean pooling), mean SSIM at the coarsest, Wang et al.'s weights
    (renormalised for fewer scales; scales = 1 is the SSIM of `ssim`). data_range: max |a| by default.
    Needs min(ny, nx) / 2^(scales−1) ≥ 8; scales None: as many as that allows, at most 5."""
    x, y = np.abs(np.asarray(a, np.complex128)), np.abs(np.asarray(b, np.complex128))
    if x.shape != y.shape or x.ndim != 2:
        raise InputError(f"ms_ssim: expected two (ny, nx) images of one shape, got {x.shape} and {y.shape}")
    if scales is None:
        scales = int(max(1, min(5, np.floor(np.log2(max(min(x.shape), 1) / 8)) + 1)))
    if min(x.shape) // 2 ** (scales - 1) < 8:
        raise InputError(f"ms_ssim: {x.shape} is too small for {scales} scales (coarsest side < 8)")
    dr = float(x.max()) if data_range is None else float(data_range)
    w = np.asarray(MS_SSIM_WEIGHTS[:scales]) / np.sum(MS_SSIM_WEIGHTS[:scales])
    val = 1.0
    for s in range(scales):
        full, cs = _ssim_parts(x, y, dr)
        val *= max(cs, 1e-6) ** w[s] if s < scales - 1 else max(full, 1e-6) ** w[s]
        if s < scales - 1:
            h, ww = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
            x = x[:h, :ww].reshape(h // 2, 2, ww // 2, 2).mean(axis=(1, 3))
            y = y[:h, :ww].reshape(h // 2, 2, ww // 2, 2).mean(axis=(1, 3))
    return float(val)


def uncertainty_calibration(ref, rec, std, region=None, bins: int = 10) -> dict:
    """How well a posterior standard-deviation map predicts the actual error (issue 27).

    ref, rec: (ny, nx) images (magnitudes are compared); std: (ny, nx) ≥ 0 in the same units; region: bool
    (ny, nx) pixels scored (default all). error = ||rec| − |ref||. Returns:
    spearman: rank correlation of std and error over the region (1: the std ranks the errors perfectly);
    coverage_1sigma / coverage_2sigma: fraction of pixels with error ≤ 1σ / 2σ (a calibrated Gaussian error
    gives ≈ 0.68 / 0.95; for a magnitude error, ≈ 0.68 / 0.95 too when |rec| − |ref| is Gaussian);
    std_over_rmse: mean std / RMS error (1: the right size on average); rmse, mean_std: those two;
    reliability: per std-quantile bin {std: mean σ, rmse: RMS error, n}: a calibrated map has rmse ≈ std.
    """
    r, x, s = (np.abs(np.asarray(a)).astype(np.float64) for a in (ref, rec, std))
    m = np.ones(r.shape, bool) if region is None else np.asarray(region, dtype=bool)
    if not (r.shape == x.shape == s.shape == m.shape) or r.ndim != 2:
        raise InputError(f"uncertainty calibration: reference {r.shape}, reconstruction {x.shape}, std {s.shape} "
                         f"and region {m.shape} must be the same (ny, nx)")
    if not m.any():
        raise InputError("uncertainty calibration: the region is empty")
    e, s = np.abs(x - r)[m], s[m]
    rho = float(spearmanr(s, e).statistic) if np.ptp(s) > 0 and np.ptp(e) > 0 else float("nan")
    edges = np.quantile(s, np.linspace(0, 1, int(bins) + 1))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, int(bins) - 1)
    rel = [{"std": float(s[idx == b].mean()), "rmse": float(np.sqrt((e[idx == b] ** 2).mean())),
            "n": int((idx == b).sum())} for b in range(int(bins)) if (idx == b).any()]
    rmse = float(np.sqrt((e ** 2).mean()))
    return {"spearman": rho, "coverage_1sigma": float((e <= s).mean()), "coverage_2sigma": float((e <= 2 * s).mean()),
            "std_over_rmse": float(s.mean() / max(rmse, 1e-30)), "rmse": rmse, "mean_std": float(s.mean()),
            "reliability": rel}
