"""Tolerant reading and writing of the MRD (ISMRMRD streaming) protocol.

Built on `ismrmrd.serialization` (message ids, `ProtocolSerializer` for writing) with a reader that
checks every length before it allocates or reads, so a malformed or hostile stream ends in a
`ProtocolError` naming the problem instead of a crash, a hang or a multi-gigabyte allocation.

Wire format (little endian): uint16 message id, then
  CONFIG_FILE (1): 1024-byte NUL-padded name;  CONFIG_TEXT (2), HEADER (3), TEXT (5): uint32 length + bytes
  (trailing NULs and whitespace tolerated);  CLOSE (4): nothing;  ACQUISITION (1008): 340-byte header,
  float32 trajectory (samples x dims), complex64 data (channels x samples);  WAVEFORM (1026): 40-byte
  header, uint32 data (channels x samples);  IMAGE (1022): as `ismrmrd.Image.serialize_into`.
"""

from __future__ import annotations

import ctypes
import io
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import ismrmrd
import numpy as np
from ismrmrd.image import get_dtype_from_data_type
from ismrmrd.serialization import ConfigFile, ConfigText, ISMRMRDMessageID, ProtocolSerializer

from recon_core.errors import InputError
from recon_core.metadata.header import parse_header as _parse

MID = ISMRMRDMessageID
CONFIG_FILE_SIZE = 1024
_ACQ_HEADER_SIZE = ctypes.sizeof(ismrmrd.AcquisitionHeader)
_WAV_HEADER_SIZE = ctypes.sizeof(ismrmrd.WaveformHeader)

# Known message names, for error messages.
MESSAGE_NAMES = {int(m): m.name for m in MID if m != MID.UNPEEKED}


class ProtocolError(InputError):
    """A malformed MRD stream (unknown id, truncated message, bad header XML, bad sizes)."""


class ClientGone(ConnectionError):
    """The peer closed the connection (EOF where a new message could start)."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds applied before reading (protect the server from absurd or hostile sizes)."""

    max_text_bytes: int = 16 * 1024 * 1024       # CONFIG_TEXT, HEADER, TEXT
    max_channels: int = 1024                      # ISMRMRD channel masks hold 1024 channels
    max_trajectory_dims: int = 16
    max_acquisition_bytes: int = 256 * 1024 * 1024
    max_session_bytes: int = 8 * 1024 ** 3           # everything one connection may send (8 GiB)


@dataclass
class Message:
    """One decoded message: `mid` (int) and `value` (str, header, Acquisition, Waveform, Image or None)."""

    mid: int
    value: Any = None

    @property
    def name(self) -> str:
        return MESSAGE_NAMES.get(self.mid, f"id {self.mid}")


def _read_exactly(stream: BinaryIO, n: int, what: str) -> bytes:
    """Read exactly `n` bytes or raise ProtocolError('truncated <what>')."""
    if n == 0:
        return b""
    chunks = []
    got = 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            raise ProtocolError(f"truncated {what}: expected {n} bytes, stream ended after {got}")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _clean_text(raw: bytes, what: str) -> str:
    """Decode UTF-8, dropping trailing NULs/whitespace (some clients count a trailing NUL)."""
    try:
        return raw.rstrip(b"\x00").decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what} is not UTF-8 text ({exc})") from None


def parse_header(text: str | bytes):
    """ISMRMRD XML header (str/bytes, NUL-tolerant) -> `ismrmrd.xsd.ismrmrdHeader`; ProtocolError if not valid.

    The one header parser of every front door (`recon_core.metadata.header.parse_header`: elements outside
    the ISMRMRD schema are ignored with a warning, as in replay and the Gadgetron gadget)."""
    if isinstance(text, bytes):
        text = _clean_text(text, "ISMRMRD header")
    text = text.rstrip("\x00").strip()
    if not text.startswith("<"):
        snippet = text[:40].encode("unicode_escape").decode("ascii")
        raise ProtocolError(f"ISMRMRD header is not XML: expected '<?xml ...' or '<ismrmrdHeader', got {snippet!r}")
    try:
        header = _parse(text)
    except ValueError as exc:  # InputError
        raise ProtocolError(str(exc)[:300]) from None
    if not isinstance(header, ismrmrd.xsd.ismrmrdHeader):
        raise ProtocolError(f"ISMRMRD header XML has root {type(header).__name__}, expected ismrmrdHeader")
    return header


class MessageReader:
    """Reads MRD messages one at a time from a binary stream (socket file or BytesIO).

    `read()` -> Message; raises `ClientGone` on a clean EOF between messages and `ProtocolError`
    for anything malformed. Headers are parsed (`ismrmrd.xsd.ismrmrdHeader`), strings cleaned.
    """
    def __init__(self, stream: BinaryIO, limits: Limits | None = None):
        self.stream = stream
        self.limits = limits or Limits()
        self.bytes_read = 0

    def _take(self, n: int, what: str) -> bytes:
        """Read exactly n bytes, counted against Limits.max_session_bytes (ProtocolError beyond it)."""
        if self.bytes_read + n > self.limits.max_session_bytes:
            raise ProtocolError(f"the session exceeds the server's limit of {self.limits.max_session_bytes} bytes "
                                f"(at {what}); split the data into several sessions")
        data = _read_exactly(self.stream, n, what)
        self.bytes_read += n
        return data

    def _u32(self, what: str) -> int:
        return struct.unpack("<I", self._take(4, what + " length"))[0]

    def _string(self, what: str) -> str:
        n = self._u32(what)
        if n > self.limits.max_text_bytes:
            raise ProtocolError(f"{what} length {n} bytes exceeds the limit of {self.limits.max_text_bytes}")
        return _clean_text(self._take(n, what), what)

    def read(self) -> Message:
        first = self.stream.read(2)
        if not first:
            raise ClientGone("connection closed by peer")
        self.bytes_read += len(first)
        if len(first) < 2:
            first += self._take(2 - len(first), "message id")
        mid = struct.unpack("<H", first)[0]
        if mid == MID.CLOSE:
            return Message(mid)
        if mid == MID.CONFIG_FILE:
            raw = self._take(CONFIG_FILE_SIZE, "CONFIG_FILE message")
            return Message(mid, ConfigFile(_clean_text(raw.split(b"\x00", 1)[0], "CONFIG_FILE name")))
        if mid == MID.CONFIG_TEXT:
            return Message(mid, ConfigText(self._string("CONFIG_TEXT message")))
        if mid == MID.TEXT:
            return Message(mid, self._string("TEXT message"))
        if mid == MID.HEADER:
            return Message(mid, parse_header(self._string("HEADER message")))
        if mid == MID.ACQUISITION:
            return Message(mid, self._acquisition())
        if mid == MID.WAVEFORM:
            return Message(mid, self._waveform())
        if mid == MID.IMAGE:
            return Message(mid, self._image())
        raise ProtocolError(
            f"unknown message id {mid}: expected one of "
            + ", ".join(f"{v} ({k})" for v, k in sorted(MESSAGE_NAMES.items()) if v != MID.NDARRAY))

    def _acquisition(self) -> ismrmrd.Acquisition:
        head_bytes = self._take(_ACQ_HEADER_SIZE, "ACQUISITION header")
        head = ismrmrd.AcquisitionHeader.from_buffer_copy(head_bytes)
        ns, nc, nt = int(head.number_of_samples), int(head.active_channels), int(head.trajectory_dimensions)
        lim = self.limits
        if nc > lim.max_channels:
            raise ProtocolError(f"ACQUISITION with {nc} active channels (limit {lim.max_channels}); stream is corrupt")
        if nt > lim.max_trajectory_dims:
            raise ProtocolError(f"ACQUISITION with {nt} trajectory dimensions (limit {lim.max_trajectory_dims})")
        nbytes = ns * nt * 4 + ns * nc * 8
        if nbytes > lim.max_acquisition_bytes:
            raise ProtocolError(f"ACQUISITION payload of {nbytes} bytes exceeds the limit {lim.max_acquisition_bytes}")
        payload = self._take(nbytes, "ACQUISITION data")
        return ismrmrd.Acquisition.from_bytes(head_bytes + payload)

    def _waveform(self) -> ismrmrd.Waveform:
        head_bytes = self._take(_WAV_HEADER_SIZE, "WAVEFORM header")
        head = ismrmrd.WaveformHeader.from_buffer_copy(head_bytes)
        nbytes = int(head.number_of_samples) * int(head.channels) * 4
        if nbytes > self.limits.max_acquisition_bytes:
            raise ProtocolError(f"WAVEFORM payload of {nbytes} bytes exceeds the limit")
        payload = self._take(nbytes, "WAVEFORM data")
        return ismrmrd.Waveform.from_bytes(head_bytes + payload)

    def _image(self) -> ismrmrd.Image:

        head_bytes = self._take(ctypes.sizeof(ismrmrd.ImageHeader), "IMAGE header")
        head = ismrmrd.ImageHeader.from_buffer_copy(head_bytes)
        attr_len = struct.unpack("<Q", self._take(8, "IMAGE attribute length"))[0]
        if attr_len > self.limits.max_text_bytes:
            raise ProtocolError(f"IMAGE attribute string of {attr_len} bytes exceeds the limit")
        attrs = self._take(attr_len, "IMAGE attributes")
        try:
            itemsize = get_dtype_from_data_type(head.data_type).itemsize
        except Exception:
            raise ProtocolError(f"IMAGE with unknown data_type {head.data_type}") from None
        n = int(head.channels) * int(head.matrix_size[0]) * int(head.matrix_size[1]) * int(head.matrix_size[2])
        if n * itemsize > self.limits.max_acquisition_bytes:
            raise ProtocolError(f"IMAGE payload of {n * itemsize} bytes exceeds the limit")
        data = self._take(n * itemsize, "IMAGE data")
        blob = head_bytes + struct.pack("<Q", attr_len) + attrs + data

        return ismrmrd.Image.deserialize_from(io.BytesIO(blob).read)


class MessageWriter:
    """Writes MRD messages (thin wrapper over `ismrmrd.serialization.ProtocolSerializer`)."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self._ser = ProtocolSerializer(stream)

    def send(self, obj) -> None:
        """obj: ismrmrd.Image / Acquisition / Waveform / ismrmrdHeader / ConfigFile / ConfigText / str (TEXT)."""
        if isinstance(obj, ismrmrd.Image):
            obj = exact_dtype_image(obj)
        self._ser.serialize(obj)
        self.stream.flush()

    def text(self, message: str) -> None:
        self.send(str(message))

    def close(self) -> None:
        self._ser.close()


_EXACT = {"complex128": "complex64", "float64": "float32", "int64": "int32", "uint64": "uint32",
          "bool": "uint16"}


def exact_dtype_image(image: ismrmrd.Image) -> ismrmrd.Image:
    """Return `image` with data in an ISMRMRD-exact dtype (complex64/float32/...) and a matching header."""
    target = _EXACT.get(image.data.dtype.name)
    if target is None:
        return image
    new = ismrmrd.Image.from_array(np.ascontiguousarray(image.data.astype(target)))
    head = image.getHead()
    head.data_type = new.data_type
    new.setHead(head)
    new.attribute_string = image.attribute_string
    return new
