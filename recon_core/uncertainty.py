"""A calibrated error estimate from K posterior samples (issue 27).

The raw posterior std of K samples is too small (≈ ½ the RMS error) and, per pixel, mostly noise: with K = 2 it is
a one-degree-of-freedom estimate. Measured on simulator validation slices and the real brains (training/RUNS.md,
"Uncertainty"), two changes help and nothing else tried did (independent initialisations, propagated measurement
noise, |DDS − SENSE|, image gradient, magnitude):

1. pool the unbiased sample variance over a small neighbourhood, σ_p = sqrt(G_w * s²) with s² = K/(K−1)·std² and
   G_w a Gaussian of `pool_px` pixels (w = 2 chosen on validation): rank correlation with the actual error rises
   from 0.14 to 0.25 (real, K = 2) — near what even the true error, pooled the same way, reaches (0.43–0.51);
2. scale it by c(R, K), fitted on validation slices so that |error| ≤ 2σ for `coverage` (0.92) of the head pixels
   at each fitted acceleration R; between and beyond the fitted R, c is interpolated in log R (clamped), for
   another K the nearest fitted K (in log K) is used.

3. per scan, when the self-validation ran with K ≥ 2 samples and kept DDS (session 14): its hold-out fold 0 says how
   wrong the image is where the prior had no data — s = sqrt((held-out residual − noise) / what the hold-out run's
   own error estimate predicts there), `holdout_error_ratio`. s is ≈ s̄(R) on the simulator (errors are spatially
   correlated, so the independent-pixel prediction is off by that much) and larger where the prior does not know
   the scan; the error estimate is multiplied by max(1, s / s̄(R))^α (`ErrorModel.holdout_scale`: up only, s̄ and α
   fitted on simulator validation cases only; real brains then 94.8–98.4 % ±2σ coverage instead of 84–94 %,
   results/calibration/holdout_rules_s14.md).

`ErrorModel` lives in the prior's manifest (key "uncertainty", written by `contextmri calibrate-uncertainty`);
a prior without one gets the pooled, uncalibrated map (factor 1) and says so. Arrays: std/err (…, ny, nx) float
in the units of the image; `region` bool (ny, nx).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError
from .noise_level import kspace_sigma

POOL_PX = 2.0
COVERAGE = 0.92        # the fitted ±2σ coverage (the middle of the 85–98 % a calibrated map should give)


@dataclass(frozen=True)
class ErrorModel:
    """pool_px: Gaussian pooling width (pixels); factors {K: {R: c}} (str keys in JSON); coverage: the ±2σ coverage
    the factors were fitted for; fitted_on: what data (free text, with the command); holdout_sbar {R: s̄} and
    holdout_alpha α of the per-scan hold-out rescaling (module docstring, item 3; none: off), holdout_fitted_on."""
    pool_px: float = POOL_PX
    factors: dict = field(default_factory=dict)
    coverage: float = COVERAGE
    fitted_on: str = ""
    holdout_sbar: dict = field(default_factory=dict)
    holdout_alpha: float = 0.0
    holdout_fitted_on: str = ""

    @property
    def calibrated(self) -> bool:
        return bool(self.factors)

    def factor(self, samples: int, accel: float) -> float:
        """c(R, K): log-linear in R between the fitted accelerations (clamped), nearest fitted K; 1 if uncalibrated."""
        if not self.factors:
            return 1.0
        ks = sorted(int(k) for k in self.factors)
        k = min(ks, key=lambda v: abs(np.log(v) - np.log(max(int(samples), 2))))
        return _log_interp(self.factors[str(k)], accel)

    def holdout_scale_ref(self, accel: float) -> float:
        """s̄(R): the simulator validation's geometric-mean hold-out ratio, log-linear in log R between the fitted R
        (clamped); nan without a fit."""
        return _log_interp(self.holdout_sbar, accel) if self.holdout_sbar else float("nan")

    def holdout_scale(self, ratio: float | None, accel: float) -> float:
        """max(1, s / s̄(R))^α for the hold-out ratio s (`holdout_error_ratio`) of a scan at acceleration R; 1
        without a fit, without a ratio or with α 0."""
        if not self.holdout_sbar or not self.holdout_alpha or ratio is None or not np.isfinite(ratio):
            return 1.0
        return float(max(1.0, float(ratio) / self.holdout_scale_ref(accel)) ** float(self.holdout_alpha))

    def describe(self, samples: int, accel: float) -> str:
        c = self.factor(samples, accel)
        how = (f"calibrated: c = {c:.2f} at R {accel:.1f}, K {samples} (fitted for ±2σ coverage "
               f"{100 * self.coverage:.0f} % on {self.fitted_on})") if self.calibrated else "uncalibrated (factor 1)"
        return f"sqrt(Gaussian_{self.pool_px:g}px * unbiased sample variance) × c; {how}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["factors"] = {str(k): {str(r): round(float(c), 4) for r, c in v.items()} for k, v in self.factors.items()}
        d["holdout_sbar"] = {str(r): round(float(v), 4) for r, v in self.holdout_sbar.items()}
        return d

    @classmethod
    def from_json(cls, d: dict | None) -> "ErrorModel":
        if not d:
            return cls()
        try:
            return cls(pool_px=float(d.get("pool_px", POOL_PX)), coverage=float(d.get("coverage", COVERAGE)),
                       fitted_on=str(d.get("fitted_on", "")),
                       factors={str(k): {str(r): float(c) for r, c in v.items()} for k, v in d["factors"].items()},
                       holdout_sbar={str(r): float(v) for r, v in (d.get("holdout_sbar") or {}).items()},
                       holdout_alpha=float(d.get("holdout_alpha", 0.0)),
                       holdout_fitted_on=str(d.get("holdout_fitted_on", "")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"the prior's uncertainty calibration is malformed ({exc})") from None


def _log_interp(table: dict, accel: float) -> float:
    """{R: v} (str or float keys) at `accel`: log-linear in log R between the tabulated R, clamped beyond them."""
    pts = sorted((float(r), float(v)) for r, v in table.items())
    rs = [r for r, _ in pts]
    lr = np.log(np.clip(float(accel), rs[0], rs[-1]))
    return float(np.exp(np.interp(lr, np.log(rs), np.log([v for _, v in pts]))))


def error_model_of(prior) -> ErrorModel:
    """The prior's error model (manifest key "uncertainty"), or the uncalibrated default."""
    return ErrorModel.from_json((getattr(prior, "manifest", None) or {}).get("uncertainty"))


def pooled_std(std: np.ndarray, samples: int, pool_px: float = POOL_PX) -> np.ndarray:
    """σ_p = sqrt(G * s²), s² = K/(K−1)·std² (std: the 1/K spread of K samples, as the samplers return it);
    pooled over the last two axes only."""
    if int(samples) < 2:
        raise InputError(f"an error estimate needs ≥ 2 posterior samples, got {samples}")
    var = np.asarray(std, np.float64) ** 2 * (samples / (samples - 1.0))
    if pool_px > 0:
        sig = (0,) * (var.ndim - 2) + (float(pool_px), float(pool_px))
        var = ndi.gaussian_filter(var, sig, mode="nearest")
    return np.sqrt(var).astype(np.float32)


def error_estimate(std: np.ndarray, samples: int, accel: float, model: ErrorModel | None = None) -> np.ndarray:
    """The calibrated error map c(R, K)·σ_p (same shape and units as `std`)."""
    model = model or ErrorModel()
    return (model.factor(samples, accel) * pooled_std(std, samples, model.pool_px)).astype(np.float32)


def holdout_rescaled(err: np.ndarray, ratio: float | None, accel: float,
                     model: ErrorModel | None = None) -> tuple[np.ndarray, float | None]:
    """The error map the scanner sends for a scan whose self-validation measured the hold-out ratio `ratio`
    (`holdout_error_ratio`): (err × `ErrorModel.holdout_scale`, the scale), or (err, None) without a ratio or a
    fitted s̄ (the stream processor and the evaluations all apply it here)."""
    model = model or ErrorModel()
    if ratio is None or not model.holdout_sbar:
        return err, None
    f = model.holdout_scale(ratio, accel)
    return (np.asarray(err) * f).astype(np.float32), f


def holdout_error_ratio(residual: float, n_scored: int, std: np.ndarray, ksp: np.ndarray, maps: np.ndarray,
                        mask: np.ndarray, samples: int, accel: float, model: ErrorModel | None = None) -> float | None:
    """s = sqrt((residual − noise) / predicted) of one slice reconstructed without its held-out samples: `residual`
    = ‖M_s(F S x) − y‖² over the `n_scored` held-out k-space positions scored (`selfval.heldout_residual`, every
    coil), std (ny, nx) that run's spread over its K = `samples` posterior samples, ksp/maps (C, ny, nx) the scan's
    data and maps, mask (ny, nx) every measured sample (for the noise level); noise = σ²·n_scored·C with σ from the
    fully sampled centre (`kspace_sigma`); predicted = n_scored · Σ_c mean_x |S_c|²·e², e the run's own error
    estimate (independent pixel errors). None when σ is unknown or nothing is predicted."""
    maps = np.asarray(maps)
    sigma = float(kspace_sigma(np.asarray(ksp)[None], np.asarray(mask, bool))[0])
    e = error_estimate(std, samples, accel, model).astype(np.float64)
    predicted = float(n_scored * np.mean(np.sum(np.abs(maps) ** 2, axis=0) * e ** 2))
    if not np.isfinite(sigma) or predicted <= 0:
        return None
    return float(np.sqrt(max(float(residual) - sigma ** 2 * n_scored * maps.shape[0], 0.0) / predicted))


def expected_rmse(err: np.ndarray, region: np.ndarray | None = None) -> float:
    """The per-slice expected RMS error: the RMS of the error map over `region` (default: every pixel)."""
    e = np.asarray(err, np.float64)
    m = np.ones(e.shape, bool) if region is None else np.asarray(region, bool)
    if not m.any():
        return float("nan")
    return float(np.sqrt((e[m] ** 2).mean()))


def fit_factors(cases, coverage: float = COVERAGE) -> dict:
    """{K: {R: c}} from validation cases [(K, R, |error| in the region, σ_p in the region)]: per (K, R) the c with
    P(|e| ≤ 2cσ_p) = coverage over all pixels of its cases, i.e. c = quantile(|e|/σ_p, coverage) / 2."""
    groups: dict = {}
    for K, R, e, s in cases:
        groups.setdefault((int(K), float(R)), []).append(np.asarray(e, np.float64) / np.maximum(s, 1e-30))
    out: dict = {}
    for (K, R), ratios in sorted(groups.items()):
        out.setdefault(str(K), {})[f"{R:g}"] = float(np.quantile(np.concatenate(ratios), coverage) / 2.0)
    return out
