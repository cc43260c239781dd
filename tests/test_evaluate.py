"""`contextmri evaluate` on a tiny simulator export with a tiny untrained prior: outputs, honesty of the
numbers (recomputed independently), resume from the cache, ablation records, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from recon_core.errors import InputError
from recon_core.samplers import SamplerConfig

MATRIX, COILS = 32, 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from recon_core.sim.export import ExportConfig, simulate_dataset

    d = tmp_path_factory.mktemp("simdata")
    for split, n in (("test", 3), ("val", 2)):
        simulate_dataset(d, ExportConfig(n_slices=n, split=split, matrix=MATRIX, coils=COILS, calib=12,
                                         slices_per_subject=2, espirit_grid="full"), progress=False)
    return str(d)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from recon_core.prior import build_prior, load_preset

    d = tmp_path_factory.mktemp("models")
    build_prior("tiny").save_pretrained(d / "cond")
    cfg = load_preset("tiny")
    cfg["conditioned"] = False
    build_prior(cfg, seed=1).save_pretrained(d / "twin")
    return str(d / "cond"), str(d / "twin")


def _config(dataset, models, out, **kw):
    from training.evaluation import EvalConfig

    base = dict(model=models[0], data=dataset, out=str(out), masks=("uniform1d:4",), cfg=(0.0, 2.0), sampler=SamplerConfig(nfe=2),
                limit=2, batch=2, samples=2, twin=models[1], command="pytest")
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def first_run(dataset, models, tmp_path_factory):
    from training.evaluation import run_evaluation

    out = tmp_path_factory.mktemp("evalout")
    res = run_evaluation(_config(dataset, models, out), progress=False)
    return out, res


def test_outputs_and_layout(first_run):
    out, res = first_run
    for f in ("results.json", "results.md", "fig_psnr_vs_cfg.png", "examples_uniform1dx4.png"):
        assert (out / f).stat().st_size > 0, f
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["cells"][0]["mask"] == "uniform1d:4" and on_disk["data"]["n_slices"] == 2
    cell = on_disk["cells"][0]
    for m in ("zerofilled", "sense", "l1wavelet", "tv", "dds_w0", "dds_w2"):
        for metric in ("psnr", "ssim", "nmse"):
            s = cell["methods"][m][metric]
            assert s["n"] == 2 and np.isfinite(s["mean"]) and s["std"] >= 0, (m, metric)
    assert cell["methods"]["l1wavelet"]["lambda"] > 0 and cell["best_cfg"] == 2.0
    import shutil

    if shutil.which("bart"):   # the strongest classical peers are in the table, λ tuned like sigpy's
        assert cell["methods"]["bart-w"]["lambda"] > 0 and "bart-tv" in cell["methods"]
        classical = {b: cell["methods"][b]["psnr"]["mean"] for b in ("l1wavelet", "tv", "bart-w", "bart-tv")}
        assert on_disk["summary"][0]["best_cs"] == max(classical, key=classical.get)
    assert set(cell["ablations"]["variants"]) == {"all", "-mr", "-mr-contrast", "-mr-contrast-slice", "uncond"}
    assert set(cell["pathology"]["variants"]) == {"correct", "wrong", "unknown", "uncond"}
    assert "cond_minus_twin" in cell["twin"]
    md = (out / "results.md").read_text()
    assert "| Method | uniform1d ×4 PSNR | SSIM | NMSE |" in md
    for label in ("Zero-filled", "L1-wavelet", "DDS uncond (w = 0)", "DDS cond (w = 2)", "− MR params",
                  "wrong labels", "unconditional twin"):
        assert label in md, label
    # the uncond ablation row is the w = 0 column of the CFG sweep
    assert cell["ablations"]["variants"]["uncond"]["psnr"] == cell["methods"]["dds_w0"]["psnr"]
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_numbers_match_an_independent_computation(first_run, dataset):
    """Zero-filled and SENSE PSNR recomputed here from the export, the mask and the coil-map recipe."""
    from recon_core.baselines import reconstruct
    from recon_core.coils import coil_maps
    from recon_core.masks import make_mask
    from recon_core.metrics import psnr
    from recon_core.sim.export import load_split

    out, res = first_run
    d = load_split(dataset, "test")
    idx = res["data"]["slice_indices"]
    assert idx == [0, 2]  # --limit 2 spreads over the 3 slices
    masks = np.stack([make_mask("uniform1d", (MATRIX, MATRIX), 4, seed=i).mask for i in idx])
    ksp = (np.asarray(d.kspace[idx]) * masks[:, None]).astype(np.complex64)
    maps = coil_maps(ksp, mask=masks)
    cell = res["cells"][0]
    for method in ("zerofilled", "sense"):
        rec = reconstruct(method, ksp, maps, masks)
        p = psnr(np.asarray(d.reference[idx]), rec)
        np.testing.assert_allclose(cell["per_slice"][method]["psnr"], p, atol=1e-3)


def test_resume_uses_the_cache(first_run, dataset, models, monkeypatch):
    import dataclasses

    from recon_core import samplers
    from training.evaluation import run_evaluation

    out, res = first_run
    calls = []
    spec = samplers.SAMPLERS["dds"]

    def spy(*a, **k):
        calls.append(1)
        return spec.reconstruct(*a, **k)

    monkeypatch.setitem(samplers.SAMPLERS, "dds", dataclasses.replace(spec, reconstruct=spy))
    again = run_evaluation(_config(dataset, models, out), progress=False)
    assert calls == []  # everything came from OUTDIR/.cache
    assert again["cells"][0]["methods"] == res["cells"][0]["methods"]
    # an interrupted run: one DDS unit missing → only that one is recomputed
    cache = out / ".cache"
    dds_keys = [p for p in cache.glob("*.json") if json.loads(p.read_text())["stage"] == "dds"
                and json.loads(p.read_text())["variant"] == "-mr"]
    assert len(dds_keys) == 1
    os.unlink(str(dds_keys[0])[:-5] + ".npz")
    again = run_evaluation(_config(dataset, models, out), progress=False)
    assert len(calls) == 1
    new, old = again["cells"][0]["ablations"]["variants"]["-mr"], res["cells"][0]["ablations"]["variants"]["-mr"]
    assert {k: new[k] for k in ("psnr", "ssim", "nmse")} == {k: old[k] for k in ("psnr", "ssim", "nmse")}


def test_ablation_records():
    from training.evaluation import drop_fields, pathology_kind, wrong_pathology
    from recon_core.metadata.record import MetadataRecord

    r = MetadataRecord(anatomy="brain", slice=5, contrast="T2", sequence="TurboSpinEcho", tr=4000, te=90,
                       ti=None, flip_angle=150, field_strength=3.0, age=40, sex="F", pathology=[])
    a = drop_fields(r, "-mr")
    assert (a.tr, a.te, a.sequence, a.flip_angle, a.field_strength) == (None,) * 5 and a.contrast == "T2"
    b = drop_fields(r, "-mr-contrast-slice")
    assert b.contrast is None and b.slice is None and b.anatomy == "brain" and b.age == 40
    assert drop_fields(r, "all") == r
    assert pathology_kind(r) == "none" and pathology_kind(wrong_pathology(r)) == "tumour"
    t = r.replace(pathology=["Mass", "Edema"])
    assert pathology_kind(wrong_pathology(t)) == "wm_lesions"


def test_scale_estimate_close_to_truth(dataset):
    from recon_core.coils import espirit_maps
    from recon_core.samplers.base import estimate_scale
    from recon_core.masks import make_mask
    from recon_core.sim.export import load_split

    d = load_split(dataset, "test")
    m = make_mask("uniform1d", (MATRIX, MATRIX), 4, seed=0).mask
    k = torch.from_numpy(np.asarray(d.kspace) * m)
    maps = espirit_maps(k, mask=m)
    mt = torch.from_numpy(m.astype(np.float32))
    for method in ("sense", "zerofilled"):
        ratio = estimate_scale(k, maps, mt, method=method).numpy() / np.asarray(d.scale)
        assert np.all((ratio > 0.5) & (ratio < 1.3)), (method, ratio)


def test_bad_input(dataset, models, tmp_path):
    from gadget.cli import main
    from training.evaluation import EvalConfig, Evaluation

    with pytest.raises(InputError, match="cfg"):
        Evaluation(_config(dataset, models, tmp_path, cfg=(-1.0,)))
    with pytest.raises(InputError, match="mask"):
        Evaluation(_config(dataset, models, tmp_path, masks=("radial:4",)))
    with pytest.raises(InputError, match="info.json"):
        Evaluation(EvalConfig(model=models[0], data=str(tmp_path), out=str(tmp_path / "o")))
    rc = main(["evaluate", "--model", models[0], "--data", dataset, "--out", str(tmp_path / "o"), "--nfe", "0"])
    assert rc == 2


def test_other_samplers_paired_with_dds(dataset, models, tmp_path):
    """--methods scoremri,ldpm: each on the first methods_limit slices, paired with DDS on the same slices."""
    from training.evaluation import run_evaluation
    from recon_core.prior.vae import build_vae
    from recon_core.prior import build_prior, load_preset

    build_vae("vae-tiny").save_pretrained(tmp_path / "vae")
    build_prior({**load_preset("tiny"), "latent": {"vae": str(tmp_path / "vae")}}).save_pretrained(tmp_path / "latent")
    res = run_evaluation(_config(dataset, models, tmp_path / "out", methods=("scoremri", "ldpm"), methods_limit=1,
                                 latent_model=str(tmp_path / "latent"), sampler=SamplerConfig(nfe=2, scoremri_nfe=3),
                                 ablations=False, pathology=False, figures=False, twin=None), progress=False)
    s = res["cells"][0]["samplers"]
    assert s["slices"] == 1 and s["cfg"] == 2.0
    dds_slice0 = res["cells"][0]["per_slice"]["dds_w2"]["psnr"][0]
    assert s["dds"]["psnr"]["mean"] == pytest.approx(dds_slice0)
    for m in ("scoremri", "ldpm"):
        assert np.isfinite(s[m]["psnr"]["mean"])
        assert s[m]["minus_dds"]["mean"] == pytest.approx(s[m]["per_slice_psnr"][0] - dds_slice0)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Other samplers" in md and "ldpm" in md and "scoremri" in md
    with pytest.raises(InputError, match="methods: unknown"):
        _config(dataset, models, tmp_path / "o2", methods=("foo",)).check()


def test_calibration_stage(dataset, models, tmp_path):
    """--calibration K: per cell, DDS with K samples; its std scored against its error (issue 27), in JSON and md."""
    from training.evaluation import run_evaluation

    out = tmp_path / "cal"
    res = run_evaluation(_config(dataset, models, out, cfg=(2.0,), limit=3, twin=None, ablations=False,
                                 pathology=False, figures=False, calibration=(2,)), progress=False)
    cal = res["cells"][0]["calibration"]
    q = cal["2"]
    assert cal["cfg"] == 2.0 and q["spearman"]["n"] == 3
    assert 0 <= q["cov1"]["mean"] <= q["cov2"]["mean"] <= 1 and q["ratio"]["mean"] > 0
    assert q["slice_spearman"] is None or -1 <= q["slice_spearman"] <= 1
    assert "Uncertainty calibration" in (out / "results.md").read_text()
    assert len(q["reliability"]) >= 5 and all(b["std"] > 0 and b["rmse"] >= 0 for b in q["reliability"])
    # the calibrated error estimate is scored the same way (the tiny prior is uncalibrated: the pooled spread
    # × K/(K−1) is larger than the raw std)
    e = q["error_estimate"]
    assert e["spearman"]["n"] == 3 and e["ratio"]["mean"] > q["ratio"]["mean"] and e["cov2"]["mean"] >= q["cov2"]["mean"]
    assert "error estimate" in (out / "results.md").read_text()
    with pytest.raises(InputError, match="calibration"):
        _config(dataset, models, out, calibration=(1,)).check()


def test_calibration_summary_leaves_out_slices_without_a_std():
    """A self-validated chunk that returned a classical image has no posterior std: its slices are NaN and left out
    of every calibration number instead of failing the evaluation."""
    from training.evaluation.harness import _calibration, _calibration_summary, _no_calibration

    rng = np.random.default_rng(0)
    ref = np.zeros((4, 32, 32), np.float32)
    ref[:, 8:24, 8:24] = 1.0
    img = (ref + 0.05 * rng.standard_normal(ref.shape)).astype(np.complex64)
    std = np.abs(0.05 * rng.standard_normal(ref.shape)).astype(np.float32) + 0.01 * np.arange(1, 5)[:, None, None]
    a = {**_calibration(ref, img, std), **_calibration(ref, img, std, prefix="ecal_")}
    b = _no_calibration(2)
    merged = {k: np.concatenate([a[k], b[k]]) for k in a}
    s = _calibration_summary(merged)
    assert s["spearman"]["n"] == 4 and s["error_estimate"]["cov2"]["n"] == 4
    assert s["slice_spearman"] == _calibration_summary(a)["slice_spearman"]
    assert _calibration_summary(_no_calibration(3))["slice_spearman"] is None
