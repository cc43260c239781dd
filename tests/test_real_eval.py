"""Real-data evaluation (issue 26, item 3) on the committed in-vivo brain (tests/data/real, MIT)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from training.evaluation.real import evaluate_real, format_markdown, load_real, object_region, undersample
from recon_core.metrics import masked_metrics

pytestmark = pytest.mark.usefixtures("one_thread")
REAL = os.path.join(os.path.dirname(__file__), "data", "real", "pulseq_invivo_flash.h5")


def test_reference_and_region_of_the_real_brain():
    (rs,) = load_real(REAL)
    assert rs.reference.shape == (128, 128) and rs.sd.kspace.shape == (16, 128, 128)
    frac = rs.region.mean()
    assert 0.3 < frac < 0.6                       # a head in a 256 mm FOV
    assert not rs.region[0].any() and not rs.region[:, 0].any()   # background corners excluded
    assert rs.reference[rs.region].mean() > 5 * rs.reference[~rs.region].mean()


def test_reference_is_in_the_units_of_the_reconstructions_with_noise_readouts(tmp_path):
    """A fully sampled file with noise readouts is prewhitened on reading; the reference must be the RSS of the
    unwhitened coil images, the units `scanner_units` brings every reconstruction to (before session 11 it was the
    whitened RSS: every method scored ~18 dB on such files while the RSS zero-filled scored 22)."""
    from recon_core import baselines
    from recon_core.raw.image import scanner_units, slice_maps
    from recon_core.sim.scan import simulate_scan, write_scan

    path = str(tmp_path / "full.h5")
    write_scan(path, simulate_scan(contrast="T1", matrix=64, coils=4, accel=1.0, seed=2, noise_readouts=8, snr=40))
    (rs,) = load_real(path)
    assert rs.sd.prewhitener is not None
    maps = slice_maps(rs.sd)
    img = np.asarray(baselines.reconstruct("sense", rs.sd.kspace[None], maps[None], rs.sd.mask))[0]
    assert masked_metrics(rs.reference, scanner_units(rs.sd, maps, img), rs.region)["psnr"] > 30


@pytest.mark.parametrize("noise_readouts", [8, 0])
def test_unbiased_reference_removes_the_noise_bias_of_the_rss(tmp_path, noise_readouts):
    """RSS = √Σ|x_c + n_c|² is biased upward by the coil noise; the default reference removes it: P (the noise
    power of a pixel of RSS²) matches the true σ²·tr Ψ, and the unbiased reference sits on the noiseless truth
    on average where the plain RSS does not (a low-SNR simulated scan, with and without noise readouts)."""
    from recon_core.raw.retrospective import rss_noise_power
    from recon_core.sim.scan import simulate_scan, write_scan

    scan = simulate_scan(contrast="T1", matrix=64, coils=4, accel=1.0, seed=2, noise_readouts=noise_readouts, snr=20)
    path = str(tmp_path / "full.h5")
    write_scan(path, scan)
    (plain,), (unb,) = load_real(path, "rss"), load_real(path)
    true_power = scan.sigma ** 2 * float(np.trace(scan.noise_cov).real)
    assert plain.noise_power == 0 and unb.reference_kind == "unbiased"
    assert unb.noise_power == pytest.approx(rss_noise_power(unb.sd)) == pytest.approx(true_power, rel=0.25)
    assert (unb.region == plain.region).all() and (unb.reference <= plain.reference + 1e-12).all()
    (exact,) = load_real(path, "truth")            # the noiseless image the simulated file carries
    assert exact.reference_kind == "truth" and (exact.region == plain.region).all()
    assert np.allclose(exact.reference, np.abs(scan.reference[0]))
    truth = np.abs(scan.reference[0]) * np.sqrt((np.abs(scan.maps[0]) ** 2).sum(0))
    head = plain.region
    bias_plain = (plain.reference - truth)[head].mean()
    bias_unb = (unb.reference - truth)[head].mean()
    assert bias_plain > 0 and abs(bias_unb) < 0.3 * bias_plain
    assert np.sqrt(((unb.reference - truth)[head] ** 2).mean()) < np.sqrt(((plain.reference - truth)[head] ** 2).mean())


def test_fully_sampled_sense_is_scored_near_the_noise_floor_only_against_the_unbiased_reference():
    """The real brain's measurement floor: SENSE from *all* lines (no undersampling error) against the plain RSS
    scored 37.4 dB, its error in the darkest head pixels — the RSS noise bias; against the unbiased reference
    41.3 dB. A reference name other than unbiased / rss is refused naming it."""
    from recon_core import baselines
    from recon_core.errors import InputError
    from recon_core.raw.image import scanner_units, slice_maps

    (plain,), (unb,) = load_real(REAL, "rss"), load_real(REAL)
    sd, _ = undersample(unb.sd, "regular1d:2:24")
    maps = slice_maps(sd)
    img = scanner_units(unb.sd, maps, np.asarray(baselines.reconstruct("sense", unb.sd.kspace[None], maps[None],
                                                                       unb.sd.mask))[0])
    p_plain = masked_metrics(plain.reference, img, plain.region)["psnr"]
    p_unb = masked_metrics(unb.reference, img, unb.region)["psnr"]
    assert p_unb > p_plain + 2, (p_plain, p_unb)
    with pytest.raises(InputError, match="nope"):
        load_real(REAL, "nope")
    with pytest.raises(InputError, match="no noiseless truth"):   # a real scan carries none
        load_real(REAL, "truth")


def test_masked_metrics_ignore_the_background():
    ref = np.zeros((32, 32))
    ref[8:24, 8:24] = 1.0
    region = object_region(ref)
    rec = ref.copy()
    rec[0, 0] = 50.0                              # a background artefact: not scored
    m = masked_metrics(ref, rec, region)
    assert m["psnr"] > 200 and m["ssim"] == pytest.approx(1.0)
    worse = masked_metrics(ref, ref * 0.9, region)
    # MSE over the region: 0.01 on the 256 object pixels, 0 on the dilated rim
    assert worse["psnr"] == pytest.approx(10 * np.log10(region.sum() / (0.01 * 256)), abs=1e-6)


def test_undersampling_keeps_the_scanner_pattern():
    (rs,) = load_real(REAL)
    sd, m = undersample(rs.sd, "regular1d:2:24")
    rows = np.nonzero(sd.mask[:, 0])[0]
    assert len(rows) == 76 and sd.acs_rows == (52, 76)
    assert np.abs(sd.kspace[:, ~sd.mask[:, 0]]).max() == 0
    assert np.abs(sd.calib[:, 52:76]).min() > 0 and np.abs(sd.calib[:, :52]).max() == 0


def test_classical_methods_on_real_data_rank_sensibly():
    """SENSE unfolds the every-2nd-line pattern that zero-filling (with the same maps) leaves aliased."""
    res = evaluate_real([REAL, "/nonexistent/missing.h5"], masks=("regular1d:3:24",), prior=None,
                        progress=False, methods=("zerofilled", "sense"), diffusion_methods=())
    assert len(res["skipped"]) == 1 and "missing.h5" in res["skipped"][0]
    cell = res["results"]["pulseq_invivo_flash.h5#0"]["cells"]["regular1d:3:24"]
    assert 1.9 < cell["_mask"]["accel"] < 2.4
    assert cell["sense"]["psnr"] > 25 and cell["sense"]["ssim"] > 0.5
    assert cell["sense"]["psnr"] > cell["zerofilled"]["psnr"] + 2


def test_cli_writes_results_and_skips_unreadable(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "gadget.cli", "evaluate-real", REAL, str(bad), "--out", str(out),
                        "--masks", "regular1d:2:24", "--methods", "sense", "--diffusion", "", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stdout and "bad.h5" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert "sense" in res["results"]["pulseq_invivo_flash.h5#0"]["cells"]["regular1d:2:24"]
    assert res["reference"] == "unbiased" and res["results"]["pulseq_invivo_flash.h5#0"]["rss_noise_power"] > 0
    assert (out / "results.md").read_text().startswith("# Real-data evaluation")
    r = subprocess.run([sys.executable, "-m", "gadget.cli", "evaluate-real", REAL, "--out", str(out), "--reference",
                        "rss", "--masks", "regular1d:2:24", "--methods", "sense", "--diffusion", "", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    plain = json.loads((out / "results.json").read_text())
    assert plain["reference"] == "rss" and "plain root-sum-of-squares" in (out / "results.md").read_text()
    cell = "pulseq_invivo_flash.h5#0"
    assert plain["results"][cell]["cells"]["regular1d:2:24"]["sense"]["psnr"] < \
        res["results"][cell]["cells"]["regular1d:2:24"]["sense"]["psnr"]
    r = subprocess.run([sys.executable, "-m", "gadget.cli", "evaluate-real", REAL, "--out", str(out),
                        "--methods", "nope", "--diffusion", ""], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope" in r.stderr


def test_posterior_samples_give_a_calibration_row():
    """With samples > 1 the diffusion method's std is scored against its actual error (issue 27)."""
    from recon_core.prior import build_prior
    from recon_core.samplers import SamplerConfig

    prior = build_prior("tiny")
    cfg = SamplerConfig(nfe=2, samples=2, precision="fp32", cfg=0.0)
    res = evaluate_real([REAL], masks=("uniform1d:4:0.08",), prior=prior, config=cfg, progress=False,
                        methods=("sense",))
    q = res["results"]["pulseq_invivo_flash.h5#0"]["cells"]["uniform1d:4:0.08"]["dds"]["calibration"]
    assert -1 <= q["spearman"] <= 1 and 0 <= q["coverage_1sigma"] <= q["coverage_2sigma"] <= 1
    assert q["std_over_rmse"] > 0 and sum(b["n"] for b in q["reliability"]) > 1000
    e = res["results"]["pulseq_invivo_flash.h5#0"]["cells"]["uniform1d:4:0.08"]["dds"]["error_estimate"]
    assert e["std_over_rmse"] > q["std_over_rmse"] and -1 <= e["spearman"] <= 1   # pooled, unbiased: larger
    assert "error estimate" in format_markdown(res, main="dds")
    json.dumps(res)   # the results stay JSON


def test_uncertainty_calibration_on_known_errors():
    """A std that is the true scale of Gaussian errors covers ≈ 68 % / 95 % and ranks them; a constant one
    does not rank them; an over-confident one covers too little."""
    from recon_core.metrics import uncertainty_calibration

    rng = np.random.default_rng(0)
    ref = np.full((64, 64), 10.0)
    sigma = np.tile(np.linspace(0.1, 2.0, 64), (64, 1))
    rec = ref + sigma * rng.standard_normal(ref.shape)
    q = uncertainty_calibration(ref, rec, sigma)
    assert 0.64 < q["coverage_1sigma"] < 0.72 and 0.93 < q["coverage_2sigma"] < 0.97
    assert q["spearman"] > 0.4 and 0.9 < q["std_over_rmse"] / 0.8 < 1.6
    assert all(abs(b["rmse"] / b["std"] - 1) < 0.25 for b in q["reliability"])
    q2 = uncertainty_calibration(ref, rec, 0.3 * sigma)
    assert q2["coverage_2sigma"] < 0.6
    with pytest.raises(Exception, match="same"):
        uncertainty_calibration(ref, rec, sigma[:10])


def test_reliability_figure(tmp_path):
    from training.evaluation.figures import reliability_figure

    bins = [{"std": s, "rmse": 1.5 * s} for s in (0.1, 0.2, 0.4)]
    path = tmp_path / "rel.png"
    reliability_figure({"a": bins, "b": bins[:2]}, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_self_validated_error_estimate_is_rescaled_by_the_holdout_as_the_scanner_does(monkeypatch):
    """With self-validation on, the evaluation scores the error estimate the scanner sends: × the hold-out scale
    max(1, s / s̄(R))^α of the slice's own `holdout_error_ratio` (issue 27)."""
    import types

    import training.evaluation.real as real
    from recon_core import baselines
    from recon_core.raw.image import slice_maps
    from recon_core.samplers import SamplerConfig

    def fake_diffusion(sd, header, prior, config, method):
        maps = slice_maps(sd)
        img = np.asarray(baselines.reconstruct("sense", sd.kspace[None], maps[None], sd.mask))[0]
        info = {"std": (0.05 * np.abs(img) + 1e-3 * np.abs(img).max()).astype(np.float32)}
        if ratio is not None:
            info["self_validation"] = {"chosen": "dds", "holdout_error_ratio": ratio}
        return img, maps, info

    monkeypatch.setattr(real, "diffusion", fake_diffusion)
    unc = {"pool_px": 2.0, "factors": {"2": {"4": 1.5}}, "coverage": 0.92, "holdout_sbar": {"4": 2.0},
           "holdout_alpha": 0.5}
    prior = types.SimpleNamespace(manifest={"uncertainty": unc})
    cfg = SamplerConfig(samples=2)
    out = {}
    for ratio in (None, 8.0):
        res = evaluate_real([REAL], masks=("uniform1d:4:0.08",), prior=prior, config=cfg, progress=False,
                            methods=("sense",))
        out[ratio] = res["results"]["pulseq_invivo_flash.h5#0"]["cells"]["uniform1d:4:0.08"]["dds"]
    f = out[8.0]["error_holdout_scale"]
    assert f == pytest.approx(max(1.0, 8.0 / 2.0) ** 0.5)                  # s̄ clamped to the one fitted R
    assert "error_holdout_scale" not in out[None]
    assert out[8.0]["error_estimate"]["std_over_rmse"] == pytest.approx(f * out[None]["error_estimate"]["std_over_rmse"],
                                                                       rel=1e-4)
    assert out[8.0]["calibration"]["std_over_rmse"] == out[None]["calibration"]["std_over_rmse"]  # raw std as it is
    assert out[8.0]["error_estimate"]["coverage_2sigma"] > out[None]["error_estimate"]["coverage_2sigma"]
    assert "× 2.00 by the scan's hold-out" in format_markdown(res, main="dds")
