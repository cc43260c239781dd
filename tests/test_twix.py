"""Siemens twix → ISMRMRD (issue 15) on a real twix file (tests/data/twix, from twixtools, MIT)."""

from __future__ import annotations

import hashlib
import os

import ismrmrd
import numpy as np
import pytest

from gadget.cli import main

TWIX = os.path.join(os.path.dirname(__file__), "data", "twix", "gre.dat")


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("twix") / "gre.h5"
    before = _sha(TWIX)
    assert main(["convert", TWIX, "--out", str(out)]) == 0
    assert _sha(TWIX) == before                                   # the input is only read
    return str(out)


def _dataset(path):
    ds = ismrmrd.Dataset(path, "dataset", create_if_needed=False)
    try:
        header = ismrmrd.xsd.CreateFromDocument(ds.read_xml_header())
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    return header, acqs


def test_protocol_is_mapped_into_the_header(converted):
    h, acqs = _dataset(converted)
    seq = h.sequenceParameters
    assert seq.TR == [10.0] and seq.TE == [3.0] and seq.flipAngle_deg == [15.0] and seq.sequence_type == "Flash"
    assert h.acquisitionSystemInformation.systemFieldStrength_T == pytest.approx(2.89362)
    assert h.acquisitionSystemInformation.receiverChannels == 2
    assert h.measurementInformation.protocolName == "gre" and h.studyInformation.bodyPartExamined == "BRAIN"
    enc = h.encoding[0]
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (320, 160)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (160, 160)
    assert enc.encodedSpace.fieldOfView_mm.x == pytest.approx(400.0) and enc.reconSpace.fieldOfView_mm.y == 200.0
    lim = enc.encodingLimits.kspace_encoding_step_1
    assert (lim.minimum, lim.maximum, lim.center) == (0, 159, 80)
    assert h.experimentalConditions.H1resonanceFrequency_Hz == 123263034


def test_acquisitions_keep_counters_flags_and_geometry(converted):
    _, acqs = _dataset(converted)
    assert len(acqs) == 160 and sorted(a.idx.kspace_encode_step_1 for a in acqs) == list(range(160))
    assert all(a.data.shape == (2, 320) and a.center_sample == 160 for a in acqs)
    assert acqs[0].is_flag_set(ismrmrd.ACQ_FIRST_IN_SLICE) and acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    assert acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
    a = acqs[80]
    R = np.array([a.read_dir, a.phase_dir, a.slice_dir])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)                       # orthonormal
    np.testing.assert_allclose(a.slice_dir, (6.58e-9, 0.0383878, 0.9992630), atol=1e-5)  # protocol sNormal
    np.testing.assert_allclose(a.position, (-2.5897, 53.9224, -53.9995), atol=1e-3)     # protocol sPosition


def test_prompt_and_replay_work_like_on_a_scanner_stream(converted, tmp_path, capsys):
    from gadget.images import to_float
    from gadget.replay import read_images_h5
    from recon_core.fft import ifft2c_np

    assert main(["prompt", converted]) == 0
    out = capsys.readouterr().out
    assert "brain, Slice 0, Sequence: Flash, TR: 10, TE: 3, Flip angle: 15" in out
    img_path = tmp_path / "img.h5"
    assert main(["replay", converted, "--out", str(img_path), "--method", "sense", "--quiet"]) == 0
    [img] = read_images_h5(str(img_path))
    assert img.data.shape == (1, 1, 160, 160) and tuple(img.field_of_view) == pytest.approx((200, 200, 4))
    # an independent reconstruction: fully sampled → inverse FFT, oversampling cropped, root-sum-of-squares
    _, acqs = _dataset(converted)
    k = np.zeros((2, 160, 320), np.complex64)
    for a in acqs:
        k[:, a.idx.kspace_encode_step_1] = a.data
    coil = ifft2c_np(k)[:, :, 80:240]
    rss = np.sqrt((np.abs(coil) ** 2).sum(0))
    ours = to_float(img)
    c = np.corrcoef(ours.ravel(), rss.ravel())[0, 1]
    assert c > 0.98, c


@pytest.mark.parametrize("kind", ["garbage", "empty", "missing"])
def test_bad_twix_input_exits_2_with_one_line(tmp_path, capsys, kind):
    src = tmp_path / "bad.dat"
    if kind == "garbage":
        src.write_bytes(np.random.default_rng(0).bytes(50_000))
    elif kind == "empty":
        src.write_bytes(b"")
    out = tmp_path / "out.h5"
    assert main(["convert", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.dat" in err[0], err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".out.h5")]


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "x.h5"
    out.write_bytes(b"keep")
    assert main(["convert", TWIX, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep"


def test_truncated_twix_is_refused_with_one_line(tmp_path, capsys):
    src = tmp_path / "cut.dat"
    src.write_bytes(open(TWIX, "rb").read()[:900_000])
    out = tmp_path / "cut.h5"
    assert main(["convert", str(src), "--out", str(out)]) == 2
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and "truncated twix file" in err[0] and not cap.out.strip()
    assert not out.exists()


def test_protocol_without_tr_te_is_refused():
    import twixtools

    from recon_core.raw.twix import build_header

    meas = twixtools.read_twix(TWIX, verbose=False)[-1]
    hdr = {k: (dict(v) if isinstance(v, dict) else v) for k, v in meas["hdr"].items()}
    hdr["MeasYaps"] = {k: v for k, v in hdr["MeasYaps"].items() if k not in ("alTR", "alTE")}
    mdbs = [m for m in meas["mdb"] if m.is_image_scan()]
    with pytest.raises(Exception, match="no TR/TE"):
        build_header(hdr, mdbs, 2)


def test_grappa_without_enough_calibration_exits_2(tmp_path, capsys):
    """Fewer calibration lines than any parallel-imaging method accepts: one line, nothing written."""
    from recon_core.sim import simulate_scan, write_scan

    f = write_scan(str(tmp_path / "s.h5"), simulate_scan("T1", matrix=32, coils=4, accel=2, acs_lines=2, seed=0))
    out = tmp_path / "img.h5"
    assert main(["replay", f, "--out", str(out), "--method", "grappa", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ACS" in err[0] and not out.exists()
