"""MRD streaming server: sessions in-process and over loopback sockets, robustness against malformed
streams (the server keeps serving the next client correctly), parallel clients, --save-raw, CLI."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import time

import ismrmrd
import numpy as np
import pytest
from ismrmrd.serialization import ConfigText, ProtocolSerializer

from gadget.mrd_protocol import MessageReader, ProtocolError
from gadget.mrd_server import MRDServer, ServerConfig, session_from_bytes
from test_server_support import MRDClient, make_scan, parse_reply, stream_bytes

ZF = {"method": "zerofilled"}


@pytest.fixture(scope="module")
def scan():
    return make_scan(n=32, coils=4, slices=2)


@pytest.fixture(scope="module")
def expected(scan):
    """Images of a correct session, computed in-process (the reference for socket sessions)."""
    header, acqs, _ = scan
    res, out = session_from_bytes(stream_bytes(header, acqs), defaults=ZF)
    assert res.outcome == "ok", res.outcome
    images, texts, closed = parse_reply(out)
    assert closed and not texts and len(images) == 2
    return images


@pytest.fixture
def server(tmp_path):
    srv = MRDServer(ServerConfig(host="127.0.0.1", port=0, workers=2, defaults=ZF, timeout=20)).start()
    yield srv
    srv.shutdown()


def _same_images(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.data, y.data, err_msg=f"max diff {np.abs(x.data - y.data).max()}, "
                                                              f"max {np.abs(y.data).max()}")
        assert x.image_series_index == y.image_series_index and x.slice == y.slice


def _wait_results(server, n, timeout=10):
    deadline = time.time() + timeout
    while len(server.results) < n and time.time() < deadline:
        time.sleep(0.02)
    assert len(server.results) >= n, [r.outcome for r in server.results]
    return server.results


def _good_client(server, scan, expected):
    header, acqs, _ = scan
    c = MRDClient(server.address, timeout=30)
    c.send(stream_bytes(header, acqs))
    images, texts, closed = c.result(30)
    assert closed and not texts
    _same_images(images, expected)


# ---------------------------------------------------------------- in-process sessions
def test_session_in_process(scan, expected):
    header, _, full = scan
    img = expected[0]
    assert img.data.dtype == np.uint16 and img.data.shape[-2:] == (32, 32)    # OpenRecon/FIRE convention
    assert img.meta["DataRole"] == "Image" and int(img.meta["WindowWidth"]) >= 1
    assert img.slice == 0 and expected[1].slice == 1


def test_nul_terminated_strings_and_text_params(scan, expected):
    header, acqs, _ = scan
    xml = header.toXML().encode() + b"\x00"
    params = json.dumps({"method": "zerofilled", "seed": "3"}).encode() + b"\x00"
    cfg = b"<configuration/>\x00"
    data = (struct.pack("<HI", 2, len(cfg)) + cfg + struct.pack("<HI", 3, len(xml)) + xml
            + struct.pack("<HI", 5, len(params)) + params)
    buf = io.BytesIO()
    ser = ProtocolSerializer(buf)
    for a in acqs:
        ser.serialize(a)
    ser.close()
    res, out = session_from_bytes(data + buf.getvalue(), defaults={"method": "sense"})
    assert res.outcome == "ok" and res.params["seed"] == "3"
    images, texts, closed = parse_reply(out)
    _same_images(images, expected)   # TEXT's method=zerofilled overrode the server default "sense"


def test_waveforms_are_ignored_and_config_text_json(scan, expected):
    header, acqs, _ = scan
    w = ismrmrd.Waveform.from_array(np.ones((1, 8), np.uint32))
    res, out = session_from_bytes(stream_bytes(header, acqs[:3] + [w] + acqs[3:],
                                               config=ConfigText(json.dumps(ZF))))
    assert res.outcome == "ok" and res.waveforms == 1 and res.acquisitions == len(acqs)
    _same_images(parse_reply(out)[0], expected)


MALFORMED = {
    "unknown_id": lambda h, a: stream_bytes(h, a[:3], close=False) + struct.pack("<H", 12345),
    "truncated": lambda h, a: stream_bytes(h, a[:3], close=False) + struct.pack("<H", 1008) + a[3].to_bytes()[:400],
    "garbage": lambda h, a: bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8)),
    "header_not_xml": lambda h, a: struct.pack("<H", 1) + b"x" * 1024 + struct.pack("<HI", 3, 5) + b"hello",
    "acq_before_header": lambda h, a: stream_bytes(h, [], close=False)[:1026] + b"".join(
        struct.pack("<H", 1008) + x.to_bytes() for x in a[:2]),
    "bad_json": lambda h, a: stream_bytes(h, a, params="{method: sense"),
    "bad_param": lambda h, a: stream_bytes(h, a, params='{"method": "magic"}'),
    "close_before_header": lambda h, a: struct.pack("<H", 4),
}
MESSAGES = {
    "unknown_id": "unknown message id 12345", "truncated": "truncated ACQUISITION",
    "garbage": "", "header_not_xml": "not XML", "acq_before_header": "before the ISMRMRD HEADER",
    "bad_json": "JSON object", "bad_param": "method must be one of", "close_before_header": "CLOSE received",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_in_process(scan, kind):
    header, acqs, _ = scan
    res, out = session_from_bytes(MALFORMED[kind](header, acqs), defaults=ZF)
    assert res.outcome.startswith("error")
    images, texts, closed = parse_reply(out)
    assert closed and not images and len(texts) == 1
    assert texts[0].startswith("contextmri error") and MESSAGES[kind] in texts[0]


# ---------------------------------------------------------------- over sockets
@pytest.mark.parametrize("kind", ["unknown_id", "truncated", "garbage", "header_not_xml", "acq_before_header"])
def test_malformed_over_socket_then_next_client_ok(server, scan, expected, kind, caplog):
    header, acqs, _ = scan
    c = MRDClient(server.address, timeout=30)
    c.send(MALFORMED[kind](header, acqs))
    images, texts, closed = c.result(30)
    assert not images and len(texts) == 1 and MESSAGES[kind] in texts[0] and closed
    _good_client(server, scan, expected)
    outcomes = [r.outcome for r in _wait_results(server, 2)]
    assert outcomes[0].startswith("error") and outcomes[1] == "ok"


def test_client_disconnects_mid_stream(server, scan, expected):
    header, acqs, _ = scan
    data = stream_bytes(header, acqs, close=False)
    s = socket.create_connection(server.address, timeout=10)
    s.sendall(data[: len(data) // 2])
    s.close()                                              # gone without CLOSE
    _good_client(server, scan, expected)
    bad = [r for r in _wait_results(server, 2) if r.outcome != "ok"]
    assert len(bad) == 1 and ("truncated" in bad[0].outcome or "disconnect" in bad[0].outcome
                              or "lost" in bad[0].outcome)


def test_two_clients_at_once(server, scan, expected):
    header, acqs, _ = scan
    data = stream_bytes(header, acqs)
    clients = [MRDClient(server.address, timeout=60) for _ in range(2)]
    for c in clients:
        c.send(data[:2000], shutdown=False)                # both connections open and mid-stream
    for c in clients:
        c.send(data[2000:])
    for c in clients:
        images, texts, closed = c.result(60)
        assert closed and not texts
        _same_images(images, expected)
    assert [r.outcome for r in _wait_results(server, 2)] == ["ok", "ok"]


def test_one_log_line_per_connection(server, scan, expected, caplog):
    with caplog.at_level("INFO", logger="contextmri.serve"):
        _good_client(server, scan, expected)
        _wait_results(server, 1)
    lines = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    assert len(lines) == 1
    assert "acquisitions=" in lines[0] and "seconds=" in lines[0] and "outcome=ok" in lines[0] and "peer=127.0.0.1" in lines[0]


def test_save_raw_before_recon_even_if_recon_fails(tmp_path, scan):
    header, acqs, _ = scan
    # max_matrix=16 makes the reconstruction refuse the 32x32 scan after the raw file is written
    res, out = session_from_bytes(stream_bytes(header, acqs, params='{"max_matrix": 16}'), defaults=ZF,
                                  save_raw=tmp_path)
    assert res.outcome.startswith("error") and "max_matrix" in res.outcome
    assert res.raw_file and os.path.exists(res.raw_file) and not res.raw_file.endswith("_incomplete.h5")
    ds = ismrmrd.Dataset(res.raw_file, "dataset", create_if_needed=False)
    try:
        assert ds.number_of_acquisitions() == len(acqs)
        np.testing.assert_array_equal(ds.read_acquisition(5).data, acqs[5].data)
        assert ismrmrd.xsd.CreateFromDocument(ds.read_xml_header()).encoding[0].reconSpace.matrixSize.x == 32
    finally:
        ds.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp files left


def test_save_raw_incomplete_stream(tmp_path, scan):
    header, acqs, _ = scan
    data = stream_bytes(header, acqs, close=False)[:-10]
    res, _ = session_from_bytes(data, defaults=ZF, save_raw=tmp_path)
    assert res.outcome.startswith("error") and res.raw_file.endswith("_incomplete.h5")
    ds = ismrmrd.Dataset(res.raw_file, "dataset", create_if_needed=False)
    assert ds.number_of_acquisitions() == len(acqs) - 1
    ds.close()


# ---------------------------------------------------------------- CLI
def test_serve_cli_subprocess(scan, expected, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "gadget", "serve", "--port", "0", "--method", "zerofilled",
                             "--workers", "1", "--save-raw", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "listening on 127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(line.rsplit(":", 1)[1])
        header, acqs, _ = scan
        c = MRDClient(("127.0.0.1", port), timeout=60)
        c.send(stream_bytes(header, acqs))
        images, texts, closed = c.result(60)
        assert closed and not texts
        _same_images(images, expected)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0                    # SIGTERM -> clean shutdown
    assert len(list(tmp_path.glob("*.h5"))) == 1
    assert "outcome=ok" in proc.stderr.read()


def test_serve_cli_bad_setting_exits_2():
    proc = subprocess.run([sys.executable, "-m", "gadget", "serve", "--port", "0", "--set", "bogus=1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bogus" in proc.stderr and "Traceback" not in proc.stderr


def test_reader_limits_reject_absurd_sizes():
    head = ismrmrd.AcquisitionHeader()
    head.number_of_samples, head.active_channels = 65535, 60000
    with pytest.raises(ProtocolError, match="active channels"):
        MessageReader(io.BytesIO(struct.pack("<H", 1008) + bytes(head))).read()
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        MessageReader(io.BytesIO(struct.pack("<HI", 5, 2 ** 31))).read()
