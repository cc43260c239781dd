"""Offline replay of simulator files: reproduces the direct recon_core result, writes ISMRMRD/PNG/DICOM,
never touches the input, tolerates other writers' group names."""

import os

import h5py
import numpy as np
import pydicom

from gadget.images import to_float
import pytest

from gadget.cli import main
from gadget.params import ReconParams
from gadget.replay import file_sha256, read_images_h5, replay
from recon_core import baselines
from recon_core.coils import espirit_maps
from recon_core.metrics import psnr
from recon_core.sim import read_scan, simulate_scan, write_scan

M, C, S = 64, 4, 2


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    plain = simulate_scan("T2", n_slices=S, matrix=M, coils=C, mask="uniform1d", accel=4, seed=3,
                          noise_readouts=0, oversampling=1)
    full = simulate_scan("T1", n_slices=S, matrix=M, coils=C, mask="uniform1d", accel=3, seed=4)  # 2× os, noise
    return write_scan(d / "plain.h5", plain), write_scan(d / "full.h5", full), plain, full


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from recon_core.prior import build_prior

    d = tmp_path_factory.mktemp("model") / "tiny"
    build_prior("tiny", seed=0).save_pretrained(d)
    return str(d)


def _direct_inputs(path):
    raw = read_scan(path)
    acs = np.zeros_like(raw.mask)
    acs[raw.acs_lines] = True
    return raw, acs


def _magnitudes(path, series=1):
    imgs = [im for im in read_images_h5(path) if im.image_series_index == series]
    return {im.slice: to_float(im) for im in imgs}, imgs


def test_replay_reproduces_direct_baseline(sim_files, tmp_path):
    plain_path = sim_files[0]
    out = tmp_path / "sense.h5"
    replay(plain_path, str(out), ReconParams(method="sense", device="cpu"), progress=False)
    got, imgs = _magnitudes(out)
    crops = {im.slice: float(im.meta["espirit_crop"]) for im in imgs}   # the crop the coverage rule chose
    raw, acs = _direct_inputs(plain_path)
    for s in range(S):
        maps = espirit_maps(raw.kspace[s], mask=acs, crop=crops[s])
        want = np.abs(baselines.reconstruct("sense", raw.kspace[s][None], maps[None], raw.mask))[0]
        q = float(next(i for i in imgs if i.slice == s).meta["FloatScale"])  # one 12-bit step (uint16)
        np.testing.assert_allclose(got[s], want, rtol=0, atol=0.5 * q + 1e-5 * want.max())


def test_replay_reproduces_direct_dds(sim_files, tiny_model, tmp_path):
    from recon_core.samplers.dds import dds_reconstruct
    from recon_core.metadata.header import record_from_header
    from recon_core.prior import load_prior
    from recon_core.uncertainty import error_estimate

    plain_path = sim_files[0]
    out = tmp_path / "dds.h5"
    params = ReconParams(method="dds", model=tiny_model, nfe=2, samples=2, seed=5, cfg=1.5, device="cpu", self_validate=False,
                         send_std=True, contrast="FLAIR")
    replay(plain_path, str(out), params, progress=False)
    got, imgs = _magnitudes(out)
    std, _ = _magnitudes(out, series=3)
    err, err_imgs = _magnitudes(out, series=5)
    raw, acs = _direct_inputs(plain_path)
    prior = load_prior(tiny_model, device="cpu")
    crops = {im.slice: float(im.meta["espirit_crop"]) for im in imgs}
    for s in range(S):
        maps = espirit_maps(raw.kspace[s], mask=acs, crop=crops[s])
        rec = record_from_header(raw.header, slice_index=s, overrides={"contrast": "FLAIR"})
        res = dds_reconstruct(prior, raw.kspace[s][None], maps[None], raw.mask, [rec], cfg=1.5, nfe=2, samples=2,
                              seed=5, device="cpu")
        q = float(next(i for i in imgs if i.slice == s).meta["FloatScale"])  # one 12-bit step (uint16)
        np.testing.assert_allclose(got[s], np.abs(res.image[0]), rtol=0, atol=0.5 * q + 1e-4 * got[s].max())
        np.testing.assert_allclose(std[s], res.std[0], rtol=0, atol=0.5 * q + 1e-4 * std[s].max())
        # series 5: the error estimate, pooled sample variance × c(R, K) (the tiny prior is uncalibrated: c = 1)
        want = error_estimate(res.std[0], 2, raw.mask.size / raw.mask.sum())
        np.testing.assert_allclose(err[s], want, rtol=0, atol=0.5 * q + 1e-4 * want.max())
        assert err[s].mean() > 0
    m = imgs[0].meta
    assert (m["method"], m["NFE"], m["CFG"], m["seed"], m["samples"]) == ("dds", "2", "1.5", "5", "2")
    assert m["model"] == tiny_model and "FLAIR" in m["prompt"]
    assert "uncalibrated" in m["error_estimate"] and float(m["expected_rmse"]) > 0
    assert float(m["expected_psnr_db"]) > 0 and err_imgs[0].meta["DataRole"] == "ErrorEstimate"
    # the sampler settings travel with the image; precision is what actually ran (auto → fp32 or bf16)
    assert m["precision"] in ("fp32", "bf16")
    from recon_core.prior.engine import engines_for

    assert m["engine"] in engines_for("cpu")     # and the engine that ran (auto: measured, cached)
    import json

    assert json.loads(m["sampler"])["nfe"] == 2


def test_replay_full_scanner_stream_outputs(sim_files, tmp_path):
    """Oversampled, noise-prewhitened, calibration-flagged simulator stream → better than zero-filled;
    ISMRMRD + PNG + DICOM outputs with geometry and the prompt; input untouched; no temp files."""
    path, scan = sim_files[1], sim_files[3]
    before = file_sha256(path)
    out, png, dcm = tmp_path / "o.h5", tmp_path / "m.png", tmp_path / "dcm"
    rc = main(["replay", path, "--out", str(out), "--method", "l1wavelet", "--zerofilled", "--quiet",
               "--png", str(png), "--dicom", str(dcm), "--pathology", "none"])
    assert rc == 0
    assert file_sha256(path) == before
    assert sorted(os.listdir(tmp_path)) == ["dcm", "m.png", "o.h5"]
    rec, imgs = _magnitudes(out)
    zf, _ = _magnitudes(out, series=4)
    for s in range(S):
        ref = scan.reference[s]
        assert psnr(ref, rec[s]) > psnr(ref, zf[s]) + 1.0
        assert imgs[s].meta["acs_source"] == "calibration-lines"
    with h5py.File(out, "r") as f:
        assert "xml" in f["dataset"] and "images" in f["dataset"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    files = sorted(os.listdir(dcm))
    assert len(files) == 2 * S  # magnitude + zero-filled series
    d = pydicom.dcmread(dcm / files[0])
    im = imgs[0]
    assert d.Modality == "MR" and d.SeriesNumber == 1
    assert im.meta["prompt"] in d.ImageComments
    assert [float(v) for v in d.ImageOrientationPatient] == pytest.approx(list(im.read_dir) + list(im.phase_dir))
    dx = im.field_of_view[0] / M
    dy = im.field_of_view[1] / M
    assert [float(v) for v in d.PixelSpacing] == pytest.approx([dy, dx])
    centre = np.asarray(d.ImagePositionPatient) + (M / 2 - 0.5) * dx * np.asarray(im.read_dir) \
        + (M / 2 - 0.5) * dy * np.asarray(im.phase_dir)
    assert centre == pytest.approx(np.asarray(im.position), abs=1e-3)
    pix = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
    np.testing.assert_allclose(pix, to_float(im), atol=2e-4 * to_float(im).max())


def test_other_writers_group_name(sim_files, tmp_path):
    src = tmp_path / "other.h5"
    with h5py.File(sim_files[0], "r") as a, h5py.File(src, "w") as b:
        b.create_group("meta").attrs["writer"] = "someone else"
        a.copy("dataset", b, name="scan_0001")
    ref, other = tmp_path / "ref.h5", tmp_path / "other_out.h5"
    replay(sim_files[0], str(ref), ReconParams(method="zerofilled", device="cpu"), progress=False)
    replay(str(src), str(other), ReconParams(method="zerofilled", device="cpu"), progress=False)
    a, _ = _magnitudes(ref)
    b, _ = _magnitudes(other)
    for s in range(S):
        np.testing.assert_array_equal(a[s], b[s])


def test_missing_default_model_is_reported(sim_files, tmp_path, capsys, monkeypatch):
    import recon_core.prior.manifest as ck

    monkeypatch.setattr(ck, "DEFAULT_MODEL_DIR", tmp_path / "no-model-here")
    rc = main(["replay", sim_files[0], "--out", str(tmp_path / "x.h5"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "default model" in err and err.count("\n") == 1
    assert not (tmp_path / "x.h5").exists()


def test_replay_ldpm_with_a_latent_prior(sim_files, tmp_path):
    """--method ldpm through the replay front door (the stream processor every front door shares)."""
    from recon_core.prior.vae import build_vae
    from recon_core.prior import build_prior, load_preset

    build_vae("vae-tiny").save_pretrained(tmp_path / "vae")
    build_prior({**load_preset("tiny"), "latent": {"vae": str(tmp_path / "vae")}}).save_pretrained(tmp_path / "lat")
    out = tmp_path / "ldpm.h5"
    replay(sim_files[0], str(out), ReconParams(method="ldpm", model=str(tmp_path / "lat"), nfe=3, device="cpu"),
           progress=False)
    got, imgs = _magnitudes(out)
    assert len(got) == S and all(np.isfinite(v).all() and v.max() > 0 for v in got.values())
    m = imgs[0].meta
    assert m["method"] == "ldpm" and m["NFE"] == "3" and "CTXMRI_LDPM" in m["SequenceDescriptionAdditional"]
    # a pixel prior with --method ldpm: one clear error, nothing written
    from recon_core.errors import InputError

    bad = tmp_path / "bad.h5"
    with pytest.raises(InputError, match="ldpm needs a latent prior"):
        replay(sim_files[0], str(bad), ReconParams(method="ldpm", model=_pixel_model(tmp_path), nfe=2, device="cpu"),
               progress=False)
    assert not bad.exists()


def _pixel_model(tmp_path):
    from recon_core.prior import build_prior

    build_prior("tiny").save_pretrained(tmp_path / "pix")
    return str(tmp_path / "pix")
