"""The MRD server gives the same images as `contextmri replay` on the same simulator file and seed
(baseline and DDS with a tiny prior), and a worker loads its prior once."""

from __future__ import annotations

import json
import struct

import ismrmrd
import numpy as np
import pytest

from gadget.cli import main
from gadget.mrd_server import MRDServer, ServerConfig, Worker, session_from_bytes
from gadget.replay import read_images_h5
from test_server_support import MRDClient, parse_reply


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    from recon_core.sim.scan import simulate_scan, write_scan

    scan = simulate_scan(contrast="T2", n_slices=2, matrix=32, coils=4, accel=2, seed=3)
    return str(write_scan(tmp_path_factory.mktemp("sim") / "scan.h5", scan))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from recon_core.prior import build_prior

    d = tmp_path_factory.mktemp("tiny") / "model"
    build_prior("tiny").save_pretrained(d)
    return str(d)


def client_bytes(path, params: dict) -> bytes:
    """What an MRD client sends for a raw file: CONFIG_FILE, the file's HEADER text, TEXT params, acquisitions, CLOSE."""
    ds = ismrmrd.Dataset(path, "dataset", create_if_needed=False)
    try:
        xml = ds.read_xml_header()
        xml = xml if isinstance(xml, bytes) else xml.encode()
        acqs = [ds.read_acquisition(i) for i in range(ds.number_of_acquisitions())]
    finally:
        ds.close()
    text = json.dumps(params).encode()
    out = [struct.pack("<H", 1), b"contextmri".ljust(1024, b"\0"), struct.pack("<HI", 3, len(xml)), xml,
           struct.pack("<HI", 5, len(text)), text]
    out += [struct.pack("<H", 1008) + a.to_bytes() for a in acqs]
    out.append(struct.pack("<H", 4))
    return b"".join(out)


def replay_images(path, out, *args):
    assert main(["replay", path, "--out", str(out), "--quiet", *args]) == 0
    return read_images_h5(str(out))


def assert_identical(served, replayed):
    assert len(served) == len(replayed) > 0
    for a, b in zip(served, replayed):
        np.testing.assert_array_equal(a.data, b.data)
        assert (a.slice, a.image_series_index, a.image_index) == (b.slice, b.image_series_index, b.image_index)
        assert tuple(a.matrix_size) == tuple(b.matrix_size)


def test_server_matches_replay_sense(sim_file, tmp_path):
    with MRDServer(ServerConfig(port=0, workers=1, timeout=60)) as srv:
        c = MRDClient(srv.address, timeout=60)
        c.send(client_bytes(sim_file, {"method": "sense", "seed": 3, "send_phase": True}))
        images, texts, closed = c.result(60)
    assert closed and not texts
    assert len(images) == 4                                  # 2 slices x (magnitude, phase)
    assert_identical(images, replay_images(sim_file, tmp_path / "r.h5", "--method", "sense", "--seed", "3",
                                           "--phase"))


def test_server_matches_replay_dds_tiny_prior(sim_file, tiny_model, tmp_path):
    params = {"method": "dds", "nfe": 2, "seed": 5}                   # what a client may choose
    operator = {"model": tiny_model, "device": "cpu"}                 # what only the operator sets
    worker = Worker()
    res1, out1 = session_from_bytes(client_bytes(sim_file, params), worker=worker, defaults=operator)
    res2, out2 = session_from_bytes(client_bytes(sim_file, params), worker=worker, defaults=operator)
    assert res1.outcome == res2.outcome == "ok"
    assert len(worker._priors) == 1                          # loaded once, reused by the next connection
    served = parse_reply(out1)[0]
    assert_identical(served, parse_reply(out2)[0])
    assert_identical(served, replay_images(sim_file, tmp_path / "d.h5", "--method", "dds", "--model", tiny_model,
                                           "--nfe", "2", "--seed", "5", "--device", "cpu"))
    assert served[0].attribute_string and "NFE" in served[0].attribute_string
