"""The calibrated error estimate (recon_core.uncertainty) and its fit (training/calibrate.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recon_core.errors import InputError
from recon_core.uncertainty import ErrorModel, error_estimate, expected_rmse, fit_factors, pooled_std


def test_pooled_std_is_the_unbiased_spread_smoothed():
    std = np.full((16, 16), 0.5, np.float32)
    np.testing.assert_allclose(pooled_std(std, 2, 2.0), 0.5 * np.sqrt(2.0), rtol=1e-5)   # K/(K−1) = 2
    np.testing.assert_allclose(pooled_std(std, 4, 0.0), 0.5 * np.sqrt(4 / 3), rtol=1e-5)
    spike = np.zeros((2, 21, 21), np.float32)
    spike[:, 10, 10] = 1.0
    p = pooled_std(spike, 2, 2.0)
    assert p.shape == spike.shape and p[0, 10, 10] < 1.0 and p[0, 10, 13] > 0       # spread over neighbours
    assert ((p[0] ** 2).sum() == pytest.approx(2.0, rel=1e-3))                      # variance is conserved
    np.testing.assert_allclose(p[0], p[1])                                           # per image, not across
    with pytest.raises(InputError, match="≥ 2 posterior samples"):
        pooled_std(std, 1)


def test_factor_interpolates_in_log_accel_and_picks_the_nearest_k():
    em = ErrorModel(factors={"2": {"4": 1.0, "8": 2.0}, "4": {"4": 3.0}})
    assert em.factor(2, 4) == pytest.approx(1.0) and em.factor(2, 8) == pytest.approx(2.0)
    assert em.factor(2, np.sqrt(32)) == pytest.approx(np.sqrt(2.0))                  # geometric midpoint
    assert em.factor(2, 2) == pytest.approx(1.0) and em.factor(2, 16) == pytest.approx(2.0)   # clamped
    assert em.factor(8, 4) == pytest.approx(3.0) and em.factor(3, 8) == pytest.approx(3.0)    # nearest K (log)
    assert ErrorModel().factor(2, 4) == 1.0 and not ErrorModel().calibrated
    assert "uncalibrated" in ErrorModel().describe(2, 4) and "c = 1.41" in em.describe(2, np.sqrt(32))
    assert ErrorModel.from_json(em.to_json()) == em
    with pytest.raises(InputError, match="malformed"):
        ErrorModel.from_json({"factors": {"2": 5}})


def test_fitted_factor_gives_the_asked_coverage_on_fresh_errors():
    rng = np.random.default_rng(0)
    s = np.exp(rng.standard_normal(20000))            # a true error scale that varies over the pixels
    sig = 0.5 * s                                     # the estimate: right shape, half the size
    cases = [(2, 4.0, np.abs(s * rng.standard_normal(s.shape)), sig)]
    f = fit_factors(cases, coverage=0.92)
    c = f["2"]["4"]
    assert c == pytest.approx(2 * 1.751 / 2, rel=0.05)             # quantile(|z|, 0.92) / 2 × 2 (the half size)
    fresh = np.abs(s * rng.standard_normal(s.shape))
    assert np.mean(fresh <= 2 * c * sig) == pytest.approx(0.92, abs=0.01)
    err = error_estimate(np.full((8, 8), 1.0), 2, 4.0, ErrorModel(pool_px=0, factors=f))
    np.testing.assert_allclose(err, c * np.sqrt(2.0), rtol=1e-5)
    assert expected_rmse(err, np.eye(8, dtype=bool)) == pytest.approx(c * np.sqrt(2.0), rel=1e-5)


def test_calibrate_command_writes_the_manifest_and_the_scanner_uses_it(tmp_path):
    from gadget.cli import main
    from recon_core.prior import build_prior, load_prior
    from recon_core.uncertainty import error_model_of

    model = tmp_path / "tiny"
    build_prior("tiny").save_pretrained(model)
    assert not error_model_of(load_prior(str(model))).calibrated
    rc = main(["calibrate-uncertainty", "--model", str(model), "--slices", "1", "--accels", "4", "--samples", "2",
               "--matrix", "32", "--coils", "4", "--threads", "1"])
    assert rc == 0
    manifest = json.loads((model / "contextmri.json").read_text())
    em = error_model_of(load_prior(str(model)))
    assert em.calibrated and em.factor(2, 4) > 0 and "validation" in em.fitted_on
    assert manifest["uncertainty"]["factors"]["2"]["4"] == pytest.approx(em.factor(2, 4), rel=1e-3)
    assert main(["calibrate-uncertainty", "--model", str(model), "--samples", "1", "--matrix", "32"]) == 2


def test_holdout_scale_is_up_only_damped_and_round_trips():
    """max(1, s / s̄(R))^α, s̄ log-linear in log R between the fitted R (clamped); off without a fit, a ratio or α;
    the fields survive the manifest's JSON and an older manifest without them loads with the rescaling off."""
    em = ErrorModel(factors={"4": {"4": 1.5}}, holdout_sbar={"4": 2.0, "8": 1.0}, holdout_alpha=0.5)
    assert em.holdout_scale(8.0, 4) == pytest.approx(2.0)                     # (8 / 2)^0.5
    assert em.holdout_scale(1.0, 4) == 1.0                                    # below s̄: never scaled down
    assert em.holdout_scale_ref(np.sqrt(32)) == pytest.approx(np.sqrt(2))     # halfway in log R
    assert em.holdout_scale_ref(16) == pytest.approx(1.0)                     # clamped beyond the fitted R
    assert em.holdout_scale(None, 4) == em.holdout_scale(float("nan"), 4) == 1.0
    assert ErrorModel(holdout_sbar={"4": 2.0}).holdout_scale(8.0, 4) == 1.0  # α 0: off
    back = ErrorModel.from_json(json.loads(json.dumps(em.to_json())))
    assert back.holdout_scale(8.0, 4) == pytest.approx(2.0) and back.holdout_alpha == 0.5
    old = ErrorModel.from_json({"factors": {"4": {"4": 1.5}}})
    assert old.holdout_sbar == {} and old.holdout_scale(8.0, 4) == 1.0


def test_holdout_error_ratio_is_one_when_the_estimate_is_the_true_error():
    """An image whose error is independent per pixel with exactly the std the estimate says: the held-out residual
    (noise removed) is what the estimate predicts, s ≈ 1; twice the error, s ≈ 2."""
    from recon_core.fft import fft2c_np
    from recon_core.samplers.selfval import heldout_residual
    from recon_core.uncertainty import holdout_error_ratio

    rng = np.random.default_rng(0)
    C, n, K = 4, 64, 4
    yy, xx = np.mgrid[:n, :n] / n
    maps = np.stack([np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) * 2) * np.exp(1j * c)
                     for c, (cy, cx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)])]).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    truth = (np.hypot(yy - 0.5, xx - 0.5) < 0.35).astype(np.complex64)
    sigma0 = 1e-4
    ksp = fft2c_np(maps * truth[None]) + sigma0 * (rng.standard_normal((C, n, n)) + 1j * rng.standard_normal((C, n, n)))
    mask = np.zeros((n, n), bool)
    mask[::2] = True
    mask[n // 2 - 8:n // 2 + 8] = True                   # a fully sampled centre for the noise level
    scored = np.zeros((n, n), bool)
    scored[1:n // 2 - 8:4, n // 4: 3 * n // 4] = True     # "held out": lines outside the measured set
    e = 0.02
    std = np.full((n, n), e * np.sqrt((K - 1) / K), np.float32)   # the spread whose unbiased, pooled value is e
    model = ErrorModel(pool_px=0)
    for mult in (1.0, 2.0):
        err = mult * e * (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) / np.sqrt(2)
        residual, _ = heldout_residual(truth + err, ksp, maps, scored)
        s = holdout_error_ratio(residual, int(scored.sum()), std, ksp, maps, mask, K, 4.0, model)
        assert s == pytest.approx(mult, rel=0.12)


def test_holdout_rescaled_is_the_scanners_scale_or_nothing():
    from recon_core.uncertainty import holdout_rescaled

    em = ErrorModel(factors={"2": {"4": 1.5}}, holdout_sbar={"4": 2.0}, holdout_alpha=0.5)
    err = np.ones((4, 4), np.float32)
    out, f = holdout_rescaled(err, 8.0, 4.0, em)
    assert f == pytest.approx(2.0) and np.allclose(out, 2.0)
    assert holdout_rescaled(err, None, 4.0, em) == (err, None)                # no ratio: unchanged
    assert holdout_rescaled(err, 8.0, 4.0, ErrorModel())[1] is None           # no s̄ fitted
