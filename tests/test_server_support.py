"""Shared helpers for the Gadgetron / MRD server tests: a small real ISMRMRD scan and an MRD client.

`make_scan` builds a Cartesian 2-D multi-coil scan (sigpy Shepp-Logan, birdcage maps, a noise
readout, every 2nd line plus a calibration block flagged CALIBRATION_AND_IMAGING). `MRDClient` speaks
the protocol with `ismrmrd.serialization` over a real socket, its reader on its own thread.
"""

from __future__ import annotations

import io
import socket
import threading

import ismrmrd
import ismrmrd.xsd as x
import numpy as np


def make_header(n=32, coils=4, slices=1, accel=2, oversampling=1) -> x.ismrmrdHeader:
    def space(nx, ny):
        return x.encodingSpaceType(matrixSize=x.matrixSizeType(x=nx, y=ny, z=1),
                                   fieldOfView_mm=x.fieldOfViewMm(x=220.0 * nx / n, y=220.0, z=5.0))

    limits = x.encodingLimitsType(
        kspace_encoding_step_1=x.limitType(minimum=0, maximum=n - 1, center=n // 2),
        kspace_encoding_step_2=x.limitType(minimum=0, maximum=0, center=0),
        slice=x.limitType(minimum=0, maximum=slices - 1, center=0),
    )
    enc = x.encodingType(encodedSpace=space(n * oversampling, n), reconSpace=space(n, n), encodingLimits=limits,
                         trajectory=x.trajectoryType.CARTESIAN,
                         parallelImaging=x.parallelImagingType(
                             accelerationFactor=x.accelerationFactorType(kspace_encoding_step_1=accel,
                                                                         kspace_encoding_step_2=1),
                             calibrationMode=x.calibrationModeType.EMBEDDED))
    return x.ismrmrdHeader(
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=63500000),
        acquisitionSystemInformation=x.acquisitionSystemInformationType(receiverChannels=coils,
                                                                         systemFieldStrength_T=1.5),
        encoding=[enc],
        sequenceParameters=x.sequenceParametersType(TR=[500.0], TE=[15.0], flipAngle_deg=[90.0],
                                                    sequence_type="TurboSpinEcho"),
    )


def make_scan(n=32, coils=4, slices=1, accel=2, acs=12, seed=0, noise_level=0.01):
    """-> (header, list[ismrmrd.Acquisition], fully sampled k-space (slices, C, n, n) complex64)."""
    import sigpy as sp
    import sigpy.mri as mr

    rng = np.random.default_rng(seed)
    header = make_header(n, coils, slices, accel)
    maps = mr.birdcage_maps((coils, n, n)).astype(np.complex64)
    acqs = []
    noise = (rng.standard_normal((coils, n)) + 1j * rng.standard_normal((coils, n))).astype(np.complex64) * noise_level
    a = ismrmrd.Acquisition.from_array(noise)
    a.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    acqs.append(a)
    full = []
    lines = sorted(set(range(0, n, accel)) | set(range(n // 2 - acs // 2, n // 2 + acs // 2)))
    counter = 1
    for s in range(slices):
        img = sp.shepp_logan((n, n)).astype(np.complex64) * (1.0 + 0.2 * s)
        ksp = sp.fft(maps * img, axes=(-2, -1)).astype(np.complex64)
        ksp += (noise_level * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape))).astype(np.complex64)
        full.append(ksp)
        for i, ky in enumerate(lines):
            a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(ksp[:, ky, :]))
            a.idx.kspace_encode_step_1 = ky
            a.idx.slice = s
            a.center_sample = n // 2
            a.scan_counter = counter
            a.sample_time_us = 5.0
            a.read_dir[:] = (1.0, 0.0, 0.0)
            a.phase_dir[:] = (0.0, 1.0, 0.0)
            a.slice_dir[:] = (0.0, 0.0, 1.0)
            a.position[:] = (0.0, 0.0, 5.0 * s)
            counter += 1
            if n // 2 - acs // 2 <= ky < n // 2 + acs // 2:
                a.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            if i == 0:
                a.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
            if i == len(lines) - 1:
                a.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                if s == slices - 1:
                    a.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
            acqs.append(a)
    return header, acqs, np.stack(full)


def write_scan_h5(path, header, acqs) -> str:
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(header.toXML())
    for a in acqs:
        ds.append_acquisition(a)
    ds.close()
    return str(path)


def stream_bytes(header, acqs, params: str | None = None, config=None, close=True) -> bytes:
    """A complete client->server MRD byte stream."""
    from ismrmrd.serialization import ConfigFile, ProtocolSerializer

    buf = io.BytesIO()
    ser = ProtocolSerializer(buf)
    ser.serialize(config if config is not None else ConfigFile("contextmri"))
    ser.serialize(header)
    if params is not None:
        ser.serialize(str(params))
    for a in acqs:
        ser.serialize(a)
    if close:
        ser.close()
    return buf.getvalue()


def parse_reply(data: bytes):
    """Server->client bytes -> (images, texts, closed)."""
    from gadget.mrd_protocol import MID, ClientGone, MessageReader

    r = MessageReader(io.BytesIO(data))
    images, texts = [], []
    while True:
        try:
            m = r.read()
        except ClientGone:
            return images, texts, False
        if m.mid == MID.CLOSE:
            return images, texts, True
        if m.mid == MID.IMAGE:
            images.append(m.value)
        elif m.mid == MID.TEXT:
            texts.append(m.value)


class MRDClient:
    """Send raw bytes to a server and collect its reply on a reader thread (all with timeouts)."""

    def __init__(self, address, timeout=60.0):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.sock.settimeout(timeout)
        self.received = bytearray()
        self.error = None
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.received += chunk
        except OSError as exc:
            self.error = exc

    def send(self, data: bytes, shutdown=True):
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.error = exc
        if shutdown:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def result(self, timeout=60.0):
        self._t.join(timeout)
        assert not self._t.is_alive(), "server did not close the connection in time"
        self.sock.close()
        return parse_reply(bytes(self.received))


def test_make_scan_is_consistent():
    header, acqs, full = make_scan(n=16, coils=2, acs=6)
    assert acqs[0].is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    assert acqs[-1].is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE)
    assert full.shape == (1, 2, 16, 16)
    assert x.CreateFromDocument(header.toXML()).encoding[0].reconSpace.matrixSize.x == 16
