"""The one raw reader (`recon_core.raw.reader`: file opening and dataset-group choice for replay, training,
the simulator's reader) and the one raw writer (`recon_core.raw.writer`: simulator, twix, the MRD server's
saved sessions)."""

from __future__ import annotations

import os
import stat

import h5py
import ismrmrd
import numpy as np
import pytest

from gadget.mrd_server import RawWriter
from gadget.replay import RawFile
from recon_core.errors import InputError
from recon_core.raw.reader import open_dataset, read_slices
from recon_core.raw.writer import RawFileWriter, write_raw
from recon_core.sim import simulate_scan, write_scan
from recon_core.sim.scan import read_scan


@pytest.fixture(scope="module")
def scan():
    return simulate_scan("T1", n_slices=1, matrix=32, coils=4, mask="uniform1d", accel=1, seed=0)


@pytest.fixture(scope="module")
def raw(scan, tmp_path_factory):
    return write_scan(str(tmp_path_factory.mktemp("raw") / "scan.h5"), scan)


def _copy_as(src, dst, *groups):
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        b.create_group("meta").attrs["writer"] = "someone else"
        for g in groups:
            if "/" in g:
                b.require_group(g.rsplit("/", 1)[0])
            a.copy("dataset", b, name=g)
    return str(dst)


def test_every_reader_finds_a_nested_group_with_another_name(raw, tmp_path):
    f = _copy_as(raw, tmp_path / "nested.h5", "study/scan_0001")
    a, b = read_slices(raw).slices[0], read_slices(f).slices[0]
    np.testing.assert_array_equal(a.kspace, b.kspace)
    with RawFile(f) as r:
        assert r.group == "study/scan_0001" and r.n_acquisitions == len(list(r.acquisitions()))
    np.testing.assert_array_equal(read_scan(f).kspace, read_scan(raw).kspace)


def test_ambiguous_and_empty_files_are_refused_naming_the_file_and_groups(raw, tmp_path):
    two = _copy_as(raw, tmp_path / "two.h5", "scan_1", "scan_2")
    for opener in (read_slices, RawFile, read_scan):
        with pytest.raises(InputError, match=r"two\.h5.*ambiguous.*'scan_1', 'scan_2'"):
            opener(two)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("notes")
    with pytest.raises(InputError, match=r"no ISMRMRD acquisitions found in .*empty\.h5.*\['notes'\]"):
        open_dataset(empty)
    with pytest.raises(InputError, match="does not exist"):
        RawFile(tmp_path / "missing.h5")


def test_writer_is_atomic_and_round_trips(scan, tmp_path):
    path = write_raw(tmp_path / "w.h5", scan.xml, scan.acquisitions)
    ds = open_dataset(path)
    try:
        assert ds.number_of_acquisitions() == len(scan.acquisitions)
        np.testing.assert_array_equal(ds.read_acquisition(5).data, scan.acquisitions[5].data)
    finally:
        ds.close()
    with pytest.raises(RuntimeError), RawFileWriter(tmp_path) as w:
        w.header(scan.xml)
        w.acquisition(scan.acquisitions[0])
        raise RuntimeError("client went away")
    assert sorted(os.listdir(tmp_path)) == ["w.h5"]                  # no temporary left behind
    with pytest.raises(InputError, match="output directory does not exist"):
        write_raw(tmp_path / "no" / "x.h5", scan.xml, scan.acquisitions)


def test_server_sessions_are_saved_by_the_one_writer(scan, tmp_path):
    w = RawWriter(tmp_path / "raw", "peer-1")
    w.header(ismrmrd.xsd.CreateFromDocument(scan.xml))
    for a in scan.acquisitions[:4]:
        w.acquisition(a)
    path = w.finish(complete=False)
    assert path.endswith("peer-1_incomplete.h5") and w.n == 4
    assert os.listdir(tmp_path / "raw") == ["peer-1_incomplete.h5"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with h5py.File(path, "r") as f:
        assert f["dataset/data"].shape == (4,)
