"""`contextmri bench` smoke test (tiny untrained prior, 32², 4 coils) and BART .cfl I/O."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from training.evaluation.bench import read_cfl, run_bench, write_cfl

HAVE_BART = shutil.which("bart") is not None


pytestmark = pytest.mark.usefixtures("one_thread")


def test_cfl_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 3, 1, 2)) + 1j * rng.standard_normal((5, 3, 1, 2))).astype(np.complex64)
    write_cfl(str(tmp_path / "a"), a)
    assert (tmp_path / "a.hdr").read_text().splitlines()[1] == "5 3 1 2"
    np.testing.assert_array_equal(read_cfl(str(tmp_path / "a")), a)


@pytest.mark.skipif(not HAVE_BART, reason="bart not installed")
def test_cfl_layout_matches_bart_fft(tmp_path):
    """Our (C, ny, nx) → BART (nx, ny, 1, C) layout: `bart fft -iu 3` equals recon_core.fft.ifft2c_np."""
    from training.evaluation.bench import _to_bart
    from recon_core.fft import ifft2c_np

    rng = np.random.default_rng(1)
    k = (rng.standard_normal((3, 16, 20)) + 1j * rng.standard_normal((3, 16, 20))).astype(np.complex64)
    write_cfl(str(tmp_path / "k"), _to_bart(k))
    subprocess.run(["bart", "fft", "-iu", "3", str(tmp_path / "k"), str(tmp_path / "i")], check=True)
    img = np.transpose(read_cfl(str(tmp_path / "i")).reshape(20, 16, 3), (2, 1, 0))
    np.testing.assert_allclose(img, ifft2c_np(k), atol=1e-5)


def test_bench_smoke(tmp_path):
    from gadget.cli import main
    from recon_core.prior import build_prior
    from recon_core.prior.engine import engines_for

    model = tmp_path / "tiny"
    build_prior("tiny").save_pretrained(model)
    out = tmp_path / "bench.json"
    rc = main(["bench", "--model", str(model), "--coils", "4", "--nfe", "3", "--sweep", "2", "--repeat", "1",
               "--json", str(out), "--quiet"])
    assert rc == 0
    r = json.loads(out.read_text())
    t, f = r["time_s"], r["network_floor"]
    assert r["setup"]["matrix"] == 32 and r["setup"]["forward_batch"] == 2  # cfg 2: cond + uncond in one batch
    assert t["slice_total"] == pytest.approx(t["io"] + t["espirit"] + t["dds_total"])
    assert t["network"] + t["cg"] + t["dds_other"] == pytest.approx(t["dds_total"])
    # the default warm start (t0 0.3) keeps only the last step of a 3-step grid: the floor counts what ran
    assert r["setup"]["network_evaluations"] == 1 and r["setup"]["sampler"]["warm_start"] == 0.3
    assert f["floor_s"] == pytest.approx(1 * f["one_forward_s"])
    assert f["dds_over_floor"] == pytest.approx(t["dds_total"] / f["floor_s"])
    assert all(np.isfinite(v) for v in r["psnr"].values())
    assert r["psnr"]["l1wavelet_sigpy"] > r["psnr"]["zerofilled"] - 3
    assert [(s["precision"], s["nfe"]) for s in r["sweep"]] == [("fp32", 2), ("bf16", 2)]
    assert r["memory"]["peak_rss_mb"] > 0
    if HAVE_BART:
        assert r["bart"]["ecalib_s"] > 0 and np.isfinite(r["bart"]["psnr_pics"])
        assert r["bart"]["psnr_pics"] > r["psnr"]["zerofilled"]  # a sane BART recon (layout and maps right)
    else:
        assert r["bart"] is None
    assert r["setup"]["coil_compression"] is None          # 4 coils: nothing to compress
    # more coils than --compress-coils-above: compressed as the product does, timed inside the slice total
    if HAVE_BART:
        v = r["vs_bart"]
        assert v["dds_over_pics"] == pytest.approx(t["dds_total"] / r["bart"]["pics_s"])
    assert r["levers"] is None and r["setup"]["engine"] in engines_for("cpu")
    # --levers: every installed (engine, precision) timed on its own, PSNR change against eager fp32
    rc = main(["bench", "--model", str(model), "--coils", "6", "--compress-coils-above", "4", "--nfe", "3",
               "--sweep", "", "--repeat", "1", "--no-bart", "--levers", "--json", str(out), "--quiet"])
    r = json.loads(out.read_text())
    cc, t = r["setup"]["coil_compression"], r["time_s"]
    assert rc == 0 and cc["coils"] == 6 and 4 <= cc["virtual_coils"] <= 6 and cc["seconds"] >= 0
    assert t["slice_total"] == pytest.approx(t["io"] + t["espirit"] + t["dds_total"] + cc["seconds"])
    lv = {(x["engine"], x["precision"]): x for x in r["levers"]}
    assert ("torch", "fp32") in lv and lv[("torch", "fp32")]["psnr_delta_db"] == 0.0
    assert {e for e, _ in lv} == set(engines_for("cpu"))
    for x in lv.values():       # every engine computes the same reconstruction (bf16: within its rounding)
        assert abs(x["psnr_delta_db"]) < (0.05 if x["precision"] == "fp32" else 1.0) and x["forward_s"] > 0


def test_bench_series(tmp_path):
    """--series: a simulated raw file through the scanner's reader and per-slice path, every slice timed."""
    from gadget.cli import main
    from recon_core.prior import build_prior

    model = tmp_path / "tiny"
    build_prior("tiny").save_pretrained(model)
    out = tmp_path / "series.json"
    rc = main(["bench", "--series", "3", "--model", str(model), "--matrix", "32", "--coils", "4", "--json", str(out),
               "--quiet"] + ([] if HAVE_BART else ["--no-bart"]))
    r = json.loads(out.read_text())
    t = r["time_s"]
    assert rc == 0 and len(t["per_slice"]) == 3 and r["setup"]["slices"] == 3
    assert t["series_wall"] == pytest.approx(t["read"] + sum(t["per_slice"]))
    assert r["meets_target"] == (t["per_slice_wall"] <= 3.0) and r["setup"]["runtime"]["engine"]
    # the front doors' default: the first selfval_slices (1) slice self-validates, the others reuse its choice
    assert r["setup"]["sampler"]["self_validate"] and r["setup"]["sampler"]["selfval_slices"] == 1
    assert len(r["choices"]) == 3 and r["choices"][0] and r["choices"][1] == r["choices"][2] == r["choices"][0]
    if HAVE_BART:
        assert r["bart"]["series_s"] > 0
    assert main(["bench", "--series", "2", "--mask", "poisson2d:4", "--model", str(model), "--quiet"]) == 2
    # --slice-batch 2: slices 0-1 in one sampler call, slice 2 alone; each group's time shared by its slices
    rc = main(["bench", "--series", "3", "--slice-batch", "2", "--model", str(model), "--matrix", "32", "--coils", "4",
               "--json", str(out), "--quiet", "--no-bart", "--no-self-validate"])
    r = json.loads(out.read_text())
    p = r["time_s"]["per_slice"]
    assert rc == 0 and r["setup"]["slice_batch"] == 2 and len(p) == 3 and p[0] == p[1] != p[2]
    assert main(["bench", "--series", "2", "--slice-batch", "0", "--model", str(model), "--quiet"]) == 2
    # more than 16 coils: compressed per slice as the stream processor does; --memory replays the file through the
    # product in a child process and reports its peak memory
    rc = main(["bench", "--series", "2", "--model", str(model), "--matrix", "32", "--coils", "20", "--json", str(out),
               "--quiet", "--no-bart", "--no-self-validate", "--memory"])
    r = json.loads(out.read_text())
    m = r["memory"]
    assert rc == 0 and max(r["coils_reconstructed"]) < 20 and m["replay_peak_rss_mb"] > 50
    assert m["command"].startswith("contextmri replay") and "--self-validate false" in m["command"]


def test_reconstruct_slices_batch_equals_one_by_one():
    """reconstruct_slices (one sampler call for several raw slices) gives each slice the image it gets alone."""
    import tempfile

    from recon_core.prior import build_prior
    from recon_core.raw.reader import read_slices
    from recon_core.samplers import SamplerConfig, reconstruct_slice, reconstruct_slices
    from recon_core.sim.scan import simulate_scan, write_scan

    prior = build_prior("tiny")
    with tempfile.TemporaryDirectory() as d:
        write_scan(f"{d}/s.h5", simulate_scan("T2", n_slices=3, matrix=32, coils=4, mask="uniform1d", accel=4, seed=1))
        raw = read_slices(f"{d}/s.h5")
    cfg = SamplerConfig(nfe=4, engine="torch", precision="fp32")
    together = reconstruct_slices(raw.slices, raw.header, prior, cfg)
    for sd, (img, maps, info) in zip(raw.slices, together):
        alone, maps1, _ = reconstruct_slice(sd, raw.header, prior, cfg)
        np.testing.assert_allclose(maps, maps1)
        assert np.abs(img - alone).max() <= 1e-3 * np.abs(alone).max()


def test_bench_reference_slice_in_the_same_run(tmp_path):
    """--reference MATRIX:COILS times a second, reference slice in the same process and reports the ratio issue 23
    names (a 256² 32-coil slice against a 128² 8-coil one; here 64² 4 coils against 32² 2 coils on the tiny prior)."""
    from gadget.cli import main
    from recon_core.prior import build_prior

    model = tmp_path / "tiny"
    build_prior("tiny").save_pretrained(model)
    out = tmp_path / "bench.json"
    rc = main(["bench", "--model", str(model), "--matrix", "64", "--coils", "4", "--nfe", "3", "--sweep", "",
               "--repeat", "3", "--no-bart", "--reference", "32:2", "--json", str(out), "--quiet"])
    r = json.loads(out.read_text())
    ref = r["reference"]
    assert rc == 0 and r["setup"]["matrix"] == 64 and (ref["matrix"], ref["coils"]) == (32, 2)
    # the DDS slice is the median of --repeat runs, every run kept
    for t in (r["time_s"], ref["time_s"]):
        assert len(t["dds_runs"]) == 3 and t["dds_total"] == t["dds_runs"][1]
    assert ref["slice_ratio"] == pytest.approx(r["time_s"]["slice_total"] / ref["time_s"]["slice_total"])
    assert ref["network_ratio"] == pytest.approx(r["time_s"]["network"] / ref["time_s"]["network"])
    # then --repeat interleaved pairs (slice, reference, slice, …), each ratio within its pair, and their median
    p = ref["paired"]
    assert len(p["slice_s"]) == len(p["reference_s"]) == len(p["ratios"]) == 3
    assert p["ratios"] == pytest.approx([x / y for x, y in zip(p["slice_s"], p["reference_s"])])
    assert p["median_ratio"] == pytest.approx(sorted(p["ratios"])[1]) and min(p["reference_s"]) > 0
    assert main(["bench", "--model", str(model), "--reference", "128x8", "--quiet"]) == 2


def test_bench_bad_input():
    from recon_core.errors import InputError

    with pytest.raises(InputError):
        run_bench(preset="tiny", nfe=0)
    with pytest.raises(InputError):
        run_bench(preset="tiny", cfg=-1.0)
