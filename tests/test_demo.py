"""`contextmri demo` with a tiny model and small sizes; a missing default model exits 2 with a clear line."""

import json
import os

import h5py
import pytest

from gadget.cli import main


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from recon_core.prior import build_prior

    d = tmp_path_factory.mktemp("model") / "tiny"
    build_prior("tiny", seed=0).save_pretrained(d)
    return str(d)


def test_demo_small(tmp_path, tiny_model, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--model", tiny_model, "--slices", "2", "--matrix", "64", "--coils", "4",
               "--nfe", "2", "--samples", "2", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    from recon_core.baselines import bart

    classical = "BART pics W" if bart.available() else "L1-wavelet (cycle spinning)"   # the strongest classical method here
    for label in ("zero-filled", classical, "DDS uncond", "DDS cond", "PSNR", "real scan pulseq_invivo_flash.h5"):
        assert label in text
    # no temp dirs left; the real-data panel of the committed in-vivo brain
    assert sorted(os.listdir(out)) == ["images.h5", "metrics.json", "panel.png", "raw.h5", "real_panel.png"]
    with h5py.File(out / "images.h5", "r") as f:
        g = f["dataset"]
        assert {"xml", "images", "zerofilled", "classical", "dds_uncond", "reference"} <= set(g)
        # DDS cond magnitude, its std and its calibrated error estimate (series 1, 3, 5) for 2 slices
        assert g["images"]["data"].shape[0] == 3 * 2
        assert g["reference"]["data"].shape[0] == 2
    with h5py.File(out / "raw.h5", "r") as f:
        assert f["dataset"]["data"].shape[0] > 0
    summary = json.loads((out / "metrics.json").read_text())
    sc = summary["scores"]
    assert set(sc) == {"zerofilled", "classical", "dds_uncond", "dds_cond"}
    assert all(len(v["psnr"]) == 2 and len(v["ssim"]) == 2 for v in sc.values())
    # the classical baseline must beat zero-filled on the simulated ×4 scan (a trained prior is not needed)
    assert sum(sc["classical"]["psnr"]) > sum(sc["zerofilled"]["psnr"])
    assert (out / "panel.png").read_bytes()[:4] == b"\x89PNG"
    assert summary["classical"]["label"] == classical
    real = summary["real"]["scores"]
    chosen = summary["real"]["self_validation"]
    assert set(real) == {"zero-filled", classical, "DDS cond", f"self-validated ({chosen})"}
    assert real[classical]["psnr"] > 15


def test_demo_without_default_model(tmp_path, capsys, monkeypatch):
    import recon_core.prior.manifest as ck

    monkeypatch.setattr(ck, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "default model is not installed" in err
    assert not out.exists()
