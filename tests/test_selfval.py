"""Noise-aware data weight and per-scan self-validation (issue 26, item 2)."""

import numpy as np
import pytest

from recon_core.samplers import SamplerConfig

from test_dds import make_data, records, tiny_prior

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def prior():
    return tiny_prior()


def test_holdout_rows_spare_the_calibration_block():
    from recon_core.samplers.selfval import holdout_rows

    rows = np.zeros(64, bool)
    rows[::2] = True
    rows[26:38] = True
    h = holdout_rows(rows, (26, 38), 0.1, fold=0)
    assert len(h) == 4 and rows[h].all() and not ((h >= 26) & (h < 38)).any()
    assert np.array_equal(h, holdout_rows(rows, (26, 38), 0.1, fold=0))
    # the held-out lines are the free lines nearest the centre, every other one; the two folds are disjoint
    assert np.abs(h - 32).max() <= 16
    h1 = holdout_rows(rows, (26, 38), 0.1, fold=1)
    assert len(h1) == 4 and not set(h) & set(h1) and np.abs(h1 - 32).max() <= 16
    few = np.zeros(64, bool)
    few[26:38] = True
    few[[0, 2, 60]] = True
    assert len(holdout_rows(few, (26, 38), 0.1, fold=0)) == 0


def test_holdout_of_a_2d_mask_takes_points_not_rows():
    """A Poisson-like 2-D mask: single measured samples outside the calibration block are held out (two disjoint
    folds, nearest the centre); a line mask holds out whole lines, scored on the central half of the readout."""
    from recon_core.masks import make_mask
    from recon_core.samplers.selfval import holdout_mask, is_line_mask

    m = make_mask("poisson2d", (64, 64), 6, seed=0).mask.astype(bool)
    assert not is_line_mask(m)
    h0, s0, what = holdout_mask(m, 0.1, 0)
    h1, _, _ = holdout_mask(m, 0.1, 1)
    assert "samples" in what and h0.sum() >= 64 and (m[h0]).all() and not (h0 & h1).any()
    assert np.array_equal(h0, s0) and h0.any(axis=1).sum() > 4          # spread over many rows, not a few
    lines = make_mask("uniform1d", (64, 64), 3, seed=0).mask.astype(bool)
    assert is_line_mask(lines)
    hl, sl, what = holdout_mask(lines, 0.1, 0)
    assert "lines" in what and (hl.all(axis=1) == hl.any(axis=1)).all()
    assert sl.sum() == hl.any(axis=1).sum() * 32 and not sl[:, :16].any()


def test_spread_holdout_reaches_the_periphery_and_weights_it_by_inverse_density():
    """Rule "spread": the held-out samples of a variable-density mask are drawn over all free k-space (the centre rule
    takes the ring nearest the calibration block), the folds stay disjoint and fixed, and the residual weights are
    the inverse local sampling density: larger where the mask is sparse. The centre rule has no weights."""
    from recon_core.masks import make_mask
    from recon_core.samplers.selfval import heldout_residual, holdout_mask, holdout_weights

    m = make_mask("poisson2d", (64, 64), 6, seed=0).mask.astype(bool)
    r = np.hypot(*np.meshgrid(np.arange(64) - 32, np.arange(64) - 32, indexing="ij"))
    c0, _, _ = holdout_mask(m, 0.1, 0)
    s0, _, _ = holdout_mask(m, 0.1, 0, "spread")
    s1, _, _ = holdout_mask(m, 0.1, 1, "spread")
    assert s0.sum() == c0.sum() and (m[s0]).all() and not (s0 & s1).any()
    assert np.array_equal(s0, holdout_mask(m, 0.1, 0, "spread")[0])
    assert r[c0].max() < 16 < r[s0].max() and r[s0].mean() > 1.5 * r[c0].mean()
    assert holdout_weights(m, "centre") is None
    w = holdout_weights(m, "spread")
    assert w[r > 24].mean() > 2 * w[r < 8].mean()                       # the sparse periphery counts more
    lines = make_mask("regular1d", (64, 64), 2, seed=0, acs_lines=8).mask.astype(bool)
    wl = holdout_weights(lines, "spread")                              # every 2nd line: weight 2; the ACS block ~1
    assert np.allclose(wl[:, 0], wl[:, 17]) and abs(wl[0, 0] - 2) < 0.1 and wl[32, 0] < 1.5
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((2, 64, 64)) + 1j * rng.standard_normal((2, 64, 64))).astype(np.complex64)
    maps = np.ones((2, 64, 64), np.complex64) / np.sqrt(2)
    img = np.zeros((64, 64), np.complex64)
    plain, energy = heldout_residual(img, k, maps, s0)
    weighted, wenergy = heldout_residual(img, k, maps, s0, w)
    assert np.isclose(plain, energy) and np.isclose(weighted, (w[s0][None] * np.abs(k[:, s0]) ** 2).sum())


def test_noise_weight_lowers_gamma_on_noisy_data(prior):
    from recon_core.samplers.dds import dds_reconstruct

    _, ksp, maps, mask = make_data(B=2, noise=0.05, accel=2)
    cfg = SamplerConfig(nfe=6, warm_start=None, data_weight="noise", prior_error=1e-3, gamma=20.0)
    res = dds_reconstruct(prior, ksp, maps, mask, records(2), config=cfg)
    sig, gam = res.timings["noise_sigma"], res.timings["gamma"]
    assert len(sig) == 2 and all(s > 0 for s in sig)
    assert all(g == pytest.approx(min(20.0, 1e-3 / s ** 2), rel=1e-3) for g, s in zip(gam, sig))
    assert max(gam) < 20.0
    quiet = dds_reconstruct(prior, make_data(B=2, noise=0.0005, accel=2)[1], maps, mask, records(2), config=cfg)
    assert min(quiet.timings["gamma"]) > max(gam)     # cleaner data → more weight on the data
    fixed = dds_reconstruct(prior, ksp, maps, mask, records(2), config=cfg.replace(data_weight="fixed"))
    assert "gamma" not in fixed.timings


def test_self_validation_falls_back_to_classical_when_the_prior_is_useless(prior):
    """An untrained prior predicts held-out lines worse than SENSE / L1-wavelet: the classical image is
    returned, and the info names the choice, the reason and every candidate's held-out error."""
    from recon_core.baselines import reconstruct
    from recon_core.samplers import diffusion_sampler

    _, ksp, maps, mask = make_data(B=2, noise=0.01, accel=2)
    cfg = SamplerConfig(nfe=6, self_validate=True)
    res = diffusion_sampler("dds")(prior, ksp, maps, mask, records=records(2), config=cfg)
    infos = res.timings["self_validation"]
    assert len(infos) == 2 and res.image.shape == ksp.shape[:1] + ksp.shape[2:]
    for b, info in enumerate(infos):
        assert set(info["heldout_nmse"]) == {"dds", "dds-sparse", "sense", "l1wavelet-shift"}
        assert len(info["heldout_nmse_folds"]) == 2 and "in 2 fold(s)" in info["heldout"]
        assert info["chosen"] in ("sense", "l1wavelet-shift") and "held-out samples better" in info["reason"]
        assert info["prior_unsure"] == info["reason"]
        direct = np.asarray(reconstruct(info["chosen"], ksp[b:b + 1], maps[b:b + 1], mask))[0]
        assert np.allclose(res.image[b], direct, atol=1e-3 * np.abs(direct).max())
    assert res.timings["total"] > 0      # the call's time, validation included, also with no DDS winner
    # off: the plain sampler, no self-validation entry
    plain = diffusion_sampler("dds")(prior, ksp, maps, mask, records=records(2), config=cfg.replace(self_validate=False))
    assert "self_validation" not in plain.timings


def _line_scan():
    """A 64×32 line mask (every other line + a 12-line centre) and unit 2-coil k-space: what the scripted tests of
    the decision rule hold lines out of."""
    m = np.zeros((64, 32), bool)
    m[::2] = True
    m[26:38] = True
    return m, np.ones((2, 64, 32), np.complex64)


def test_self_validation_decides_on_all_held_out_samples_pooled(monkeypatch):
    """The decision rule alone (held-out errors scripted): DDS has the lowest error over both folds pooled but
    L1-wavelet beats it in fold 1 → DDS kept, 'prior_unsure' names the fold; L1-wavelet lowest on the sum → the
    classical image with the reason; DDS winning both folds → no flag, and the better DDS candidate (here the
    sparse one, the prior weighed × 0.3) is kept with its settings."""
    from recon_core.samplers import selfval

    scripted = {0: {"dds": 0.10, "dds-sparse": 0.20, "sense": 0.50, "l1wavelet-shift": 0.30},
                1: {"dds": 0.50, "dds-sparse": 0.60, "sense": 0.90, "l1wavelet-shift": 0.40}}
    calls = []

    def fake_run(sampler, method, settings, prior, ksp, maps, mask, records, config, device, scale=None):
        calls.append((method, settings))
        return np.zeros(mask.shape, np.complex64), None

    order = iter([])

    def fake_err(image, k, s, scored, weights=None):   # (residual, energy): equal energies, so the pooled NMSE is the mean
        return next(order), 1.0

    monkeypatch.setattr(selfval, "_run", fake_run)
    monkeypatch.setattr(selfval, "heldout_residual", fake_err)
    m, k = _line_scan()
    cfg = SamplerConfig(self_validate=True, gamma=20.0, prior_weight=1.0, wavelet_lambda=1e-3)
    names = [n for n, _, _ in selfval.CANDIDATES]
    order = iter([scripted[f][n] for f in (0, 1) for n in names])
    info, (method, sets) = selfval._choose(None, None, k, k, m, None, cfg, "cpu", None)
    assert (method, sets) == ("dds", {}) and info["chosen"] == "dds" and "reason" not in info
    assert "folds disagree" in info["prior_unsure"] and "fold 1 of 2" in info["prior_unsure"]
    assert ("dds", {"prior_weight": 0.3, "wavelet_lambda": 1e-3}) in calls and ("dds", {}) in calls
    scripted[1]["l1wavelet-shift"] = 0.2
    order = iter([scripted[f][n] for f in (0, 1) for n in names])
    info, (method, sets) = selfval._choose(None, None, k, k, m, None, cfg, "cpu", None)
    assert (method, sets) == ("l1wavelet-shift", None) and info["prior_unsure"] == info["reason"]
    assert "predicts the held-out samples better" in info["reason"]
    scripted[1] = {"dds": 0.45, "dds-sparse": 0.35, "sense": 0.90, "l1wavelet-shift": 0.40}
    order = iter([scripted[f][n] for f in (0, 1) for n in names])
    info, (method, sets) = selfval._choose(None, None, k, k, m, None, cfg, "cpu", None)
    assert info["chosen"] == "dds" and (method, sets) == ("dds", {}) and "prior_unsure" not in info
    scripted[0]["dds-sparse"] = 0.05
    order = iter([scripted[f][n] for f in (0, 1) for n in names])
    info, (method, sets) = selfval._choose(None, None, k, k, m, None, cfg, "cpu", None)
    assert info["chosen"] == "dds-sparse" and sets == {"prior_weight": 0.3, "wavelet_lambda": 1e-3}
    # DDS configured without sparsity: the sparse candidate switches it on at the default λ
    assert selfval.candidate("dds-sparse", cfg.replace(wavelet_lambda=0.0))[1] == {"prior_weight": 0.3,
                                                                               "wavelet_lambda": 1e-3}


def test_self_validation_reports_the_winners_holdout_error_ratio(monkeypatch):
    """With K ≥ 2 samples and DDS kept, the winner's fold-0 run (its image and std) gives `holdout_error_ratio`, the
    error estimate's per-scan rescaling; no ratio when K = 1 (no std) or a classical image is returned."""
    from types import SimpleNamespace

    from recon_core.samplers import selfval

    errs = {"dds": 0.3, "dds-sparse": 0.1, "sense": 0.5, "l1wavelet-shift": 0.4}
    tags = {}

    def fake_run(sampler, method, settings, prior, ksp, maps, mask, records, config, device, scale=None):
        name = "sense" if method == "sense" else "l1wavelet-shift" if settings is None else \
            ("dds-sparse" if settings else "dds")
        img = np.full(mask.shape, len(tags) + 1, np.complex64)        # a distinct image per run
        tags[int(img.real[0, 0])] = name
        std = np.ones((1,) + mask.shape, np.float32) if config.samples > 1 else None
        return img, (None if settings is None else SimpleNamespace(std=std))

    seen = []

    def fake_ratio(residual, n_scored, std, ksp, maps, mask, samples, accel, model):
        seen.append((names[residual], samples, n_scored > 0))
        return 2.5

    names = {}

    def fake_err(image, k, s, scored, weights=None):
        name = tags[int(image.real[0, 0])]
        names[errs[name]] = name
        return errs[name], 1.0

    monkeypatch.setattr(selfval, "_run", fake_run)
    monkeypatch.setattr(selfval, "heldout_residual", fake_err)
    monkeypatch.setattr(selfval, "holdout_error_ratio", fake_ratio)
    m, k = _line_scan()
    cfg = SamplerConfig(self_validate=True, samples=2)
    info, _ = selfval._choose(None, None, k, k, m, None, cfg, "cpu", None)
    assert info["chosen"] == "dds-sparse" and info["holdout_error_ratio"] == 2.5
    assert seen == [("dds-sparse", 2, True)]               # the winner's fold-0 residual, with the configured K
    tags.clear()
    info, _ = selfval._choose(None, None, k, k, m, None, cfg.replace(samples=1), "cpu", None)
    assert "holdout_error_ratio" not in info
    errs["sense"] = 0.01
    tags.clear()
    info, _ = selfval._choose(None, None, k, k, m, None, cfg, "cpu", None)
    assert info["chosen"] == "sense" and "holdout_error_ratio" not in info and len(seen) == 1
    # the spread rule chooses on its own hold-out, but the ratio (whose s̄ was fitted on the centre rule's fold 0)
    # comes from one more run of the winner on that centre fold
    errs["sense"] = 0.5
    tags.clear()
    info, _ = selfval._choose(None, None, k, k, m, None, cfg.replace(holdout_rule="spread"), "cpu", None)
    assert info["chosen"] == "dds-sparse" and info["holdout_error_ratio"] == 2.5 and "centre" in info["holdout_error_ratio_on"]
    assert len(tags) == 2 * 4 + 1 and list(tags.values())[-1] == "dds-sparse" and seen[-1] == ("dds-sparse", 2, True)


def test_self_validation_skipped_with_a_note_when_too_few_lines(prior):
    from recon_core.samplers import diffusion_sampler

    _, ksp, maps, mask = make_data(B=1)
    ny = mask.shape[0]
    few = np.zeros_like(mask)
    few[ny // 2 - 6: ny // 2 + 6] = True
    few[[0, 3]] = True
    res = diffusion_sampler("dds")(prior, ksp, maps, few, records=records(1), config=SamplerConfig(nfe=4, self_validate=True))
    assert "skipped" in res.timings["self_validation"][0] and np.isfinite(res.image).all()


def test_series_reuses_the_choice_of_its_first_slices(prior):
    """Stream processor with self-validation: the first `selfval_slices` slices choose by their held-out lines,
    the rest reuse the majority choice (meta says so) without holding anything out (issue 25's amortisation)."""
    import json

    import ismrmrd

    from gadget.images import to_float
    from gadget.params import ReconParams
    from gadget.processor import StreamProcessor
    from recon_core.samplers.selfval import majority
    from test_processor_helpers import build_stream, line_mask, make_header, phantom_scan

    objs, maps = phantom_scan(n_slices=3, ny=32, nx=32, n_coils=4)
    acqs = build_stream(objs, maps, line_mask(32, accel=2, acs=10), noise_std=0.01)
    params = ReconParams(method="dds", device="cpu", nfe=4, self_validate=True, selfval_slices=1,
                         image_format="float")
    imgs = [im for im in StreamProcessor(make_header(32, 32, 3, n_coils=4), params, prior=prior).process(acqs)
            if im.image_series_index == 1]
    metas = {im.slice: ismrmrd.Meta.deserialize(im.attribute_string) for im in imgs}
    first = json.loads(metas[0]["self_validation"])
    assert "heldout_nmse" in first and "reused" not in first
    if first["chosen"] in ("sense", "l1wavelet-shift"):       # a classical image: the meta says the prior is unsure
        assert all("prior_unsure" in metas[s] for s in (0, 1, 2))
    for s in (1, 2):
        sv = json.loads(metas[s]["self_validation"])
        assert sv["chosen"] == first["chosen"] and "first 1 slices" in sv["reused"]
        assert metas[s]["reconstruction"] == first["chosen"]
    assert all(np.isfinite(to_float(im)).all() for im in imgs)
    assert majority(["sense", "dds", "dds"]) == "dds" and majority(["l1wavelet-shift", "sense"]) == "l1wavelet-shift"
    assert majority([]) is None


def test_slice_batch_reconstructs_completed_slices_together(prior):
    """slice_batch 3: the three slices of a series run as one sampler batch (per-slice noise, scale and CG) and
    give the images the slice-by-slice path gives (same order, same meta); the sampler is called once."""
    import ismrmrd

    from gadget import processor as proc_mod
    from gadget.images import to_float
    from gadget.params import ReconParams
    from gadget.processor import StreamProcessor
    from test_processor_helpers import build_stream, line_mask, make_header, phantom_scan

    objs, maps = phantom_scan(n_slices=3, ny=32, nx=32, n_coils=4)
    acqs = build_stream(objs, maps, line_mask(32, accel=2, acs=10), noise_std=0.01)
    calls = []
    real = proc_mod.sample_slices

    def counting(method, prior_, kspaces, *a, **kw):
        calls.append(len(kspaces))
        return real(method, prior_, kspaces, *a, **kw)

    out = {}
    for n in (1, 3):
        calls.clear()
        params = ReconParams(method="dds", device="cpu", nfe=4, engine="torch", precision="fp32", slice_batch=n,
                             image_format="float", self_validate=False)
        proc_mod.sample_slices = counting
        try:
            imgs = list(StreamProcessor(make_header(32, 32, 3, n_coils=4), params, prior=prior).process(acqs))
        finally:
            proc_mod.sample_slices = real
        out[n] = [im for im in imgs if im.image_series_index == 1]
        assert calls == ([1, 1, 1] if n == 1 else [3])
    assert [im.slice for im in out[3]] == [im.slice for im in out[1]] == [0, 1, 2]
    for a, b in zip(out[1], out[3]):
        x, y = to_float(a), to_float(b)
        assert np.abs(x - y).max() <= 1e-3 * np.abs(x).max()
        ma, mb = ismrmrd.Meta.deserialize(a.attribute_string), ismrmrd.Meta.deserialize(b.attribute_string)
        assert {k: ma[k] for k in ma} == {k: mb[k] for k in mb}
    assert StreamProcessor(make_header(32, 32, 3, n_coils=4), ReconParams(method="dds", device="cpu"),
                           prior=prior).slice_batch() == 1           # auto on a CPU
    assert StreamProcessor(make_header(32, 32, 3, n_coils=4), ReconParams(method="sense", slice_batch=8),
                           prior=prior).slice_batch() == 1           # classical: slice by slice
