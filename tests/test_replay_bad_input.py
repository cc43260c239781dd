"""`contextmri replay` on bad input: exit 2, one line naming the problem, nothing written, input intact."""

import os
import subprocess
import sys

import h5py
import ismrmrd
import numpy as np

from gadget.cli import main
from gadget.replay import file_sha256
from test_processor_helpers import build_stream, line_mask, make_header, phantom_scan, write_raw

NY = NX = 32


def _stream(rows=None, n_slices=1, **kw):
    objs, maps = phantom_scan(n_slices=n_slices, ny=NY, nx=NX, n_coils=4)
    rows = line_mask(NY, accel=3, acs=10) if rows is None else rows
    return build_stream(objs, maps, rows, **kw)


def _raw(tmp_path, acqs=None, header=None, name="raw.h5"):
    path = tmp_path / name
    write_raw(path, header if header is not None else make_header(NX, NY, 1, n_coils=4),
              acqs if acqs is not None else _stream())
    return path


def _replay_fails(tmp_path, capsys, raw, *extra, expect=()):
    out = tmp_path / "out" / "images.h5"
    out.parent.mkdir(exist_ok=True)
    before = file_sha256(raw) if os.path.isfile(raw) else None
    rc = main(["replay", str(raw), "--out", str(out), "--method", "zerofilled", "--quiet",
               "--png", str(tmp_path / "out" / "m.png"), "--dicom", str(tmp_path / "out" / "dcm"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.count("\n") == 0 and err.startswith("contextmri replay: error:"), err
    assert "Traceback" not in err
    for word in expect:
        assert word.lower() in err.lower(), err
    assert os.listdir(out.parent) == [], os.listdir(out.parent)  # nothing written, no temp files left
    if before is not None:
        assert file_sha256(raw) == before
    return err


def test_truncated_h5(tmp_path, capsys):
    good = _raw(tmp_path)
    data = good.read_bytes()
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(data[: len(data) // 2])
    _replay_fails(tmp_path, capsys, bad, expect=("trunc",))


def test_corrupt_h5(tmp_path, capsys):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    _replay_fails(tmp_path, capsys, bad, expect=("hdf5",))


def test_file_without_acquisitions(tmp_path, capsys):
    bad = tmp_path / "empty.h5"
    with h5py.File(bad, "w") as f:
        f.create_group("dataset").create_dataset("xml", data=[make_header(NX, NY).encode()],
                                                 dtype=h5py.special_dtype(vlen=bytes))
    _replay_fails(tmp_path, capsys, bad, expect=("no ismrmrd acquisitions",))


def test_missing_header(tmp_path, capsys):
    raw = _raw(tmp_path)
    with h5py.File(raw, "a") as f:
        del f["dataset/xml"]
    _replay_fails(tmp_path, capsys, raw, expect=("xml header",))


def test_garbled_header(tmp_path, capsys):
    raw = _raw(tmp_path, header="<ismrmrdHeader><encoding><encodedSpace>garbage")
    _replay_fails(tmp_path, capsys, raw, expect=("header",))


def test_inconsistent_coil_counts(tmp_path, capsys):
    acqs = _stream()
    odd = acqs[5]
    small = ismrmrd.Acquisition.from_array(odd.data[:3].copy())
    small.setHead(odd.getHead())
    small.resize(odd.number_of_samples, 3)
    small.data[:] = odd.data[:3]
    acqs[5] = small
    _replay_fails(tmp_path, capsys, _raw(tmp_path, acqs), expect=("coil",))


def test_nan_samples(tmp_path, capsys):
    acqs = _stream()
    acqs[7].data[1, 3] = np.nan
    _replay_fails(tmp_path, capsys, _raw(tmp_path, acqs), expect=("nan",))


def test_inf_samples(tmp_path, capsys):
    acqs = _stream()
    acqs[-1].data[0, 0] = np.inf
    _replay_fails(tmp_path, capsys, _raw(tmp_path, acqs), expect=("inf",))


def test_no_acs_at_all(tmp_path, capsys):
    rows = np.zeros(NY, bool)
    rows[::3] = True  # regular undersampling, no fully sampled centre, no calibration flags
    _replay_fails(tmp_path, capsys, _raw(tmp_path, _stream(rows=rows)), expect=("acs",))


def test_matrix_above_cap(tmp_path, capsys):
    _replay_fails(tmp_path, capsys, _raw(tmp_path), "--max-matrix", "16", expect=("max_matrix", "32"))


def test_debug_shows_traceback_in_subprocess(tmp_path):
    raw = tmp_path / "corrupt.h5"
    raw.write_bytes(b"not an hdf5 file at all" * 10)
    out = tmp_path / "o.h5"
    cmd = [sys.executable, "-m", "gadget", "replay", str(raw), "--out", str(out), "--method", "zerofilled"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.strip().count("\n") == 0
    p = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" in p.stderr
    assert not out.exists()


def test_output_equal_to_input_refused(tmp_path, capsys):
    raw = _raw(tmp_path)
    before = file_sha256(raw)
    rc = main(["replay", str(raw), "--out", str(raw), "--method", "zerofilled", "--quiet"])
    assert rc == 2 and "input" in capsys.readouterr().err
    assert file_sha256(raw) == before
