"""The Gadgetron external gadget driven by the real gadgetron-python `Connection`.

(i) socketpair + ismrmrd ProtocolSerializer/Deserializer (reader thread); (ii) launched mode
(`python -m gadgetron PORT gadget.gadgetron_gadget recon_acquisitions`); (iii) the ReconData target fed
with a buffer written by gadgetron-python's own writer; plus error paths (no hang, clean CLOSE).
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading

import ismrmrd
import numpy as np
import pytest
from ismrmrd.serialization import ConfigText, ProtocolDeserializer, ProtocolSerializer

from test_server_support import make_scan

gadgetron = pytest.importorskip("gadgetron")
from gadgetron.external import Connection  # noqa: E402

from gadget import gadgetron_gadget as gg  # noqa: E402

TIMEOUT = 60


def chain_config(**props) -> str:
    body = "".join(f'<property name="{k}" value="{v}"/>' for k, v in props.items())
    return f'<?xml version="1.0"?><configuration>{body}</configuration>'


class Replies:
    """Reads the gadget's replies on its own thread until CLOSE/EOF."""

    def __init__(self, sock):
        self.items = []
        self.closed = False
        self.error = None
        self._f = sock.makefile("rb")
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            for item in ProtocolDeserializer(self._f).deserialize():
                self.items.append(item)
            self.closed = True
        except Exception as exc:  # EOF without CLOSE etc.
            self.error = exc

    def wait(self, timeout=TIMEOUT):
        self._t.join(timeout)
        assert not self._t.is_alive(), "gadget did not close the connection"
        return self

    @property
    def images(self):
        return [i for i in self.items if isinstance(i, ismrmrd.Image)]


def _send_stream(sock, config, header, items, close=True):
    f = sock.makefile("wb")
    ser = ProtocolSerializer(f)
    ser.serialize(ConfigText(config))
    ser.serialize(header)
    for it in items:
        ser.serialize(it)
    if close:
        ser.close()
    f.flush()


def _run_target_on_socketpair(target, config, header, items, close=True):
    ours, theirs = socket.socketpair()
    ours.settimeout(TIMEOUT)
    errors = []

    def gadget_side():
        try:
            with Connection(theirs) as conn:  # as gadgetron's __main__ does: CLOSE on exit
                target(conn)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=gadget_side, daemon=True)
    t.start()
    replies = Replies(ours)
    _send_stream(ours, config, header, items, close=close)
    if not close:
        ours.shutdown(socket.SHUT_WR)
    replies.wait()
    t.join(TIMEOUT)
    assert not t.is_alive()
    ours.close()
    assert not errors, errors
    return replies


def _truth_image(full):
    """Root-sum-of-squares of the fully sampled coil images (n, n)."""
    import sigpy as sp

    return np.sqrt((np.abs(sp.ifft(full[0], axes=(-2, -1))) ** 2).sum(0))


def _corr(a, b):
    a, b = np.abs(a).ravel(), np.abs(b).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _waveform():
    w = ismrmrd.Waveform.from_array(np.arange(20, dtype=np.uint32).reshape(2, 10))
    w.waveform_id = 7
    return w


def test_acquisition_target_socketpair_images_and_passthrough():
    header, acqs, full = make_scan(n=32, coils=4, slices=2)
    wav = _waveform()
    items = acqs[:5] + [wav] + acqs[5:]
    replies = _run_target_on_socketpair(gg.recon_acquisitions, chain_config(method="zerofilled"), header, items)
    assert replies.closed and replies.error is None
    assert len(replies.images) == 2                       # one magnitude image per slice
    img = replies.images[0]
    assert img.data.dtype == np.uint16 and img.data.shape[-2:] == (32, 32)     # the scanner's own convention
    assert _corr(img.data[0, 0], _truth_image(full)) > 0.9
    # the waveform is not ours: it came back unchanged
    wavs = [i for i in replies.items if isinstance(i, ismrmrd.Waveform)]
    assert len(wavs) == 1 and wavs[0].waveform_id == 7 and np.array_equal(wavs[0].data, wav.data)


def test_acquisition_target_extra_series_from_properties():
    header, acqs, _ = make_scan(n=32, coils=4)
    config = chain_config(method="sense", send_phase="true", send_zerofilled="true", anatomy="")
    replies = _run_target_on_socketpair(gg.recon_acquisitions, config, header, acqs)
    assert len(replies.images) == 3
    assert sorted(i.image_series_index for i in replies.images) == [1, 2, 4]      # distinct series
    assert all(i.data.dtype == np.uint16 for i in replies.images)
    # float on request (chain property), e.g. for quantitative post-processing
    floats = _run_target_on_socketpair(gg.recon_acquisitions, chain_config(method="sense", image_format="float"),
                                       header, acqs)
    assert all(i.data.dtype == np.float32 for i in floats.images)


def test_bad_input_is_logged_and_connection_closes_cleanly(caplog):
    header, acqs, _ = make_scan(n=32, coils=4)
    bad = ismrmrd.Acquisition.from_array(np.ones((3, 32), np.complex64))   # 3 coils, the rest have 4
    bad.idx.kspace_encode_step_1 = 1
    items = acqs[:4] + [bad] + acqs[4:10] + [_waveform()]
    with caplog.at_level("ERROR", logger="contextmri.gadget"):
        replies = _run_target_on_socketpair(gg.recon_acquisitions, chain_config(method="zerofilled"), header, items)
    assert replies.closed and not replies.images
    assert any("coil" in r.getMessage() and "recon_acquisitions" in r.getMessage() for r in caplog.records)


def test_bad_property_value_closes_cleanly(caplog):
    header, acqs, _ = make_scan(n=16, coils=2, acs=8)
    with caplog.at_level("ERROR", logger="contextmri.gadget"):
        replies = _run_target_on_socketpair(gg.recon_acquisitions, chain_config(method="magic"), header, acqs)
    assert replies.closed and not replies.images
    assert any("method must be one of" in r.getMessage() for r in caplog.records)


def test_eof_without_close_does_not_hang():
    header, acqs, _ = make_scan(n=16, coils=2, acs=8)
    replies = _run_target_on_socketpair(gg.recon_acquisitions, chain_config(method="zerofilled"), header,
                                        acqs[:6], close=False)
    assert not replies.images


def test_launched_mode_python_m_gadgetron():
    header, acqs, full = make_scan(n=32, coils=4)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(TIMEOUT)
    port = lsock.getsockname()[1]
    env = dict(os.environ, GADGETRON_EXTERNAL_LOG_LEVEL="INFO")
    proc = subprocess.Popen([sys.executable, "-m", "gadgetron", str(port), "gadget.gadgetron_gadget",
                             "recon_acquisitions"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        conn, _ = lsock.accept()
        conn.settimeout(TIMEOUT)
        replies = Replies(conn)
        _send_stream(conn, chain_config(method="zerofilled"), header, acqs)
        replies.wait()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        lsock.close()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert replies.closed and len(replies.images) == 1
    assert _corr(replies.images[0].data[0, 0], _truth_image(full)) > 0.9
    assert b"recon_acquisitions: done" in err


# ---------------------------------------------------------------- ReconData target
def _recon_data(full, header, accel=2, acs=12):
    """A ReconData (one bit, data + ref) in Gadgetron layout, like BucketToBufferGadget builds it."""
    from gadgetron.types.recon_data import ReconBit, ReconBuffer, ReconData, SamplingDescription

    ksp = full[0]                                     # (C, ny, nx)
    C, ny, nx = ksp.shape
    rows = sorted(set(range(0, ny, accel)) | set(range(ny // 2 - acs // 2, ny // 2 + acs // 2)))
    acs_rows = list(range(ny // 2 - acs // 2, ny // 2 + acs // 2))

    def buffer(lines):
        data = np.zeros((nx, ny, 1, C, 1, 1, 1), np.complex64)       # [E0, E1, E2, CHA, N, S, LOC]
        heads = np.empty((ny, 1, 1, 1, 1), dtype=object)             # [E1, E2, N, S, LOC]
        for e1 in range(ny):
            heads[e1, 0, 0, 0, 0] = ismrmrd.AcquisitionHeader()
        for e1 in lines:
            data[:, e1, 0, :, 0, 0, 0] = ksp[:, e1, :].T
            h = ismrmrd.AcquisitionHeader()
            h.version = 1
            h.number_of_samples = nx
            h.active_channels = C
            h.center_sample = nx // 2
            h.idx.kspace_encode_step_1 = e1
            h.read_dir[:] = (1, 0, 0)
            h.phase_dir[:] = (0, 1, 0)
            h.slice_dir[:] = (0, 0, 1)
            heads[e1, 0, 0, 0, 0] = h
        s = SamplingDescription()
        for i, v in enumerate((nx, ny, 1)):
            s.encoded_matrix[i] = v
            s.recon_matrix[i] = v
        s.sampling_limits[1].min, s.sampling_limits[1].center, s.sampling_limits[1].max = 0, ny // 2, ny - 1
        return ReconBuffer(data, None, None, heads, s)

    return ReconData([ReconBit(buffer(rows), buffer(acs_rows))])


class _Sink:
    def __init__(self):
        self.buf = io.BytesIO()

    def write(self, b):
        self.buf.write(bytes(b))


def test_recon_data_target_with_gadgetron_writer():
    from gadgetron.types.recon_data import write_recon_data

    header, _, full = make_scan(n=32, coils=4)
    sink = _Sink()
    write_recon_data(sink, _recon_data(full, header))     # gadgetron-python's own writer
    blob = sink.buf.getvalue()

    ours, theirs = socket.socketpair()
    ours.settimeout(TIMEOUT)
    errors = []

    def gadget_side():
        try:
            with Connection(theirs) as conn:
                gg.recon_buffers(conn)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    t = threading.Thread(target=gadget_side, daemon=True)
    t.start()
    replies = Replies(ours)
    f = ours.makefile("wb")
    ser = ProtocolSerializer(f)
    ser.serialize(ConfigText(chain_config(method="sense")))
    ser.serialize(header)
    ser.serialize(_waveform())          # not ReconData: passes downstream unchanged
    f.write(blob)
    f.write(blob)                       # two buffers -> two image sets
    ser.close()
    f.flush()
    replies.wait()
    t.join(TIMEOUT)
    ours.close()
    assert not errors and replies.closed
    assert len(replies.images) == 2
    assert any(isinstance(i, ismrmrd.Waveform) for i in replies.items)
    assert _corr(replies.images[0].data[0, 0], _truth_image(full)) > 0.9
    np.testing.assert_array_equal(replies.images[0].data, replies.images[1].data)


def test_buffer_slices_layout():
    header, _, full = make_scan(n=16, coils=2, acs=8)
    rd = _recon_data(full, header, acs=8)
    [(key, ksp, heads)] = gg.buffer_slices(rd.bits[0].data)
    assert key == (0, 0, 0) and ksp.shape == (2, 16, 16) and ksp.dtype == np.complex64
    np.testing.assert_array_equal(ksp[:, 0], full[0][:, 0])
    rows = sorted(set(range(0, 16, 2)) | set(range(4, 12)))     # acquired lines only
    assert [h.idx.kspace_encode_step_1 for h in heads] == rows
    data3d = np.zeros((16, 16, 2, 2, 1, 1, 1), np.complex64)
    with pytest.raises(ValueError, match="E2 = 2"):
        gg.buffer_slices(type("B", (), {"data": data3d, "headers": np.empty((16, 2, 1, 1, 1), object)})())


def test_gadgetron_listen_command_connect_mode():
    """`contextmri gadgetron-listen` serves a `<connect port=…/>` chain: Gadgetron connects to it."""
    import time

    header, acqs, _ = make_scan(n=32, coils=4)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "gadget", "gadgetron-listen", "--port", str(port), "--once",
                             "--target", "acquisitions"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "waiting for Gadgetron" in proc.stdout.readline()
        deadline = time.time() + 30
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, "listener never came up"
                time.sleep(0.1)
        replies = Replies(conn)
        _send_stream(conn, chain_config(method="zerofilled"), header, acqs)
        replies.wait()
        conn.close()
        proc.wait(TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert replies.closed and len(replies.images) == 1


def test_ref_buffer_with_own_e1_size_is_placed_by_line_index():
    ref = np.zeros((2, 4, 8), np.complex64)
    ref[:, :, :] = np.arange(1, 5)[None, :, None]
    heads = []
    for e1 in (6, 7, 8, 9):
        h = ismrmrd.AcquisitionHeader()
        h.idx.kspace_encode_step_1 = e1
        heads.append(h)
    out = gg.ref_like(ref, heads, (2, 16, 8))
    assert out.shape == (2, 16, 8)
    np.testing.assert_array_equal(out[0, 6:10, 0], [1, 2, 3, 4])
    assert not out[:, :6].any() and not out[:, 10:].any()
    with pytest.raises(ValueError, match="ref buffer"):
        gg.ref_like(ref, heads, (3, 16, 8))


def test_images_go_out_with_exact_dtypes():
    from gadget.mrd_protocol import exact_dtype_image

    img = ismrmrd.Image.from_array(np.ones((4, 4), np.complex128))
    img.image_series_index = 3
    out = exact_dtype_image(img)
    assert out.data.dtype == np.complex64 and out.data_type == ismrmrd.DATATYPE_CXFLOAT
    assert out.image_series_index == 3
    f32 = ismrmrd.Image.from_array(np.ones((4, 4), np.float32))
    assert exact_dtype_image(f32) is f32
