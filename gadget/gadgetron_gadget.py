"""Gadgetron external Python gadget: two targets over `gadget.processor.StreamProcessor`.

Gadgetron runs `python -m gadgetron PORT gadget.gadgetron_gadget <target>`; the target gets a
`gadgetron.external.Connection` (header in `connection.header`, the chain's
`<configuration><property name=… value=…/></configuration>` in `connection.config`).

- `recon_acquisitions(connection)`: raw `ismrmrd.Acquisition` streams (chains without accumulation).
- `recon_buffers(connection)`: `ReconData` from BucketToBufferGadget; buffer data [E0, E1, E2, CHA, N,
  S, LOC] complex64, headers [E1, E2, N, S, LOC]; `bit.ref` holds the calibration (ACS) data.

Properties are the `gadget.params.ReconParams` field names (`PROPERTY_NAMES`); an empty value means
the default. Items a target does not handle pass downstream unchanged (`connection.filter`). On an
exception the target logs it with context, drains the rest of the input (so Gadgetron is never left
writing into a dead socket) and returns, so the connection closes cleanly with CLOSE.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import quoteattr

import ismrmrd
import numpy as np

from gadget.mrd_protocol import exact_dtype_image
from gadget.params import ReconParams, is_diffusion, properties_from_xml
from gadget.processor import StreamProcessor
from recon_core.errors import InputError
from recon_core.prior.cache import get_prior

log = logging.getLogger("contextmri.gadget")

#: Property names the gadget reads from the chain (the ReconParams fields).
PROPERTY_NAMES = tuple(f.name for f in dataclasses.fields(ReconParams) if f.name != "extra")


def property_defaults() -> dict[str, str]:
    """{property name: default as the string written in xml_chains/} ('' = None = use the default)."""
    out = {}
    for name, value in ReconParams().to_dict().items():
        if value is None:
            out[name] = ""
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list):
            out[name] = ",".join(value) if value else "none"
        else:
            out[name] = str(value)
    return out


def chain_properties_xml(indent: str = "                ") -> str:
    """The `<property …/>` lines of every gadget property with its default and help (for xml_chains/)."""
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(ReconParams)}
    lines = []
    for name, value in property_defaults().items():
        choices = next((f.metadata.get("choices") for f in dataclasses.fields(ReconParams) if f.name == name), None)
        text = helps.get(name, "") + (f" ({' | '.join(choices)})" if choices else "")
        text = text.replace("--", "-")
        lines.append(f'{indent}<property name="{name}" value={quoteattr(value)}/> <!-- {text} -->')
    return "\n".join(lines)


def params_from_config(config) -> ReconParams:
    """ReconParams from the chain configuration (an ElementTree element, XML text or None)."""
    if isinstance(config, (str, bytes)):
        config = ET.fromstring(config)
    props = properties_from_xml(config)
    params = ReconParams.from_mapping(props)
    if params.extra:
        log.warning("ignoring unknown gadget properties %s (known: %s)", sorted(params.extra),
                    ", ".join(PROPERTY_NAMES))
    return params


def _harden(connection) -> None:
    """Make reads on this connection raise on EOF (gadgetron-python's reader spins forever on EOF)."""
    wrapper = getattr(connection, "socket", None)
    sock = getattr(wrapper, "socket", None)
    if sock is None:
        return

    def read(nbytes):
        buf = bytearray()
        while len(buf) < nbytes:
            chunk = sock.recv(nbytes - len(buf), socket.MSG_WAITALL)
            if not chunk:
                raise ConnectionError(f"Gadgetron closed the connection mid-message ({len(buf)}/{nbytes} bytes)")
            buf += chunk
        return bytes(buf)

    wrapper.read = read


def _drain(connection) -> int:
    """Consume the remaining input (filtered-out items still pass downstream); returns items dropped."""
    n = 0
    try:
        for _ in connection:
            n += 1
    except Exception as exc:  # the socket may be the thing that failed
        log.debug("drain stopped: %s", exc)
    return n


def _default_prior(params):
    if not is_diffusion(params.method):
        return None

    return get_prior(params.prior_model, params.device)


def _describe(header) -> str:
    try:
        e = header.encoding[0]
        m = e.encodedSpace.matrixSize
        seq = header.sequenceParameters
        return (f"encoded {m.x}x{m.y}x{m.z}, {header.acquisitionSystemInformation.receiverChannels if header.acquisitionSystemInformation else '?'} "
                f"channels, TR {seq.TR if seq else '?'}")
    except Exception:
        return "header without encoding"


def _run(connection, target: str, body) -> None:
    t0 = time.time()
    ctx = {"items": 0, "images": 0}
    params = None
    try:
        _harden(connection)
        params = params_from_config(connection.config)
        log.info("%s: method=%s model=%s (%s)", target, params.method, params.model, _describe(connection.header))
        prior = _default_prior(params)
        body(connection, params, prior, ctx)
        log.info("%s: done, %d items in, %d images out, %.2f s", target, ctx["items"], ctx["images"], time.time() - t0)
    except Exception as exc:  # noqa: BLE001 - never hang the chain
        kind = "bad input" if isinstance(exc, ValueError) else "failure"
        log.error("%s %s after %d items, %d images (params: %s; %s): %s", target, kind, ctx["items"], ctx["images"],
                  params.to_dict() if params else "unparsed", _describe(connection.header), exc,
                  exc_info=not isinstance(exc, ValueError))
        dropped = _drain(connection)
        if dropped:
            log.error("%s: dropped %d further items after the error", target, dropped)


def _send(connection, image, ctx) -> None:
    connection.send(exact_dtype_image(image))
    ctx["images"] += 1


def _acquisition_body(connection, params, prior, ctx) -> None:

    connection.filter(ismrmrd.Acquisition)
    processor = StreamProcessor(connection.header, params, prior)

    def acquisitions():
        for item in connection:
            ctx["items"] += 1
            yield item

    for image in processor.process(acquisitions()):
        _send(connection, image, ctx)


def recon_acquisitions(connection) -> None:
    """Target for raw `ismrmrd.Acquisition` streams: images go back as slices complete."""
    _run(connection, "recon_acquisitions", _acquisition_body)


def buffer_slices(buffer):
    """ReconBuffer -> list of ((n, s, loc), kspace (CHA, E1, E0) complex64, headers list of E1 AcquisitionHeader).

    Raises InputError for 3-D (E2 > 1) or malformed buffers.
    """
    data = np.asarray(buffer.data)
    if data.ndim != 7:
        raise InputError(f"ReconData buffer must be 7-D [E0, E1, E2, CHA, N, S, LOC], got shape {data.shape}")
    e0, e1, e2, cha, nn, ns, nloc = data.shape
    if e2 != 1:
        raise InputError(f"3-D encoding is not supported: ReconData buffer has E2 = {e2} (expected 1)")
    headers = np.asarray(buffer.headers, dtype=object)
    hshape = (e1, e2, nn, ns, nloc)
    if headers.shape != hshape:
        headers = headers.reshape(hshape) if headers.size == int(np.prod(hshape)) else None
    out = []
    for loc in range(nloc):
        for s in range(ns):
            for n in range(nn):
                ksp = np.ascontiguousarray(data[:, :, 0, :, n, s, loc].transpose(2, 1, 0)).astype(np.complex64, copy=False)
                acquired = np.abs(ksp).sum(axis=(0, 2)) > 0
                heads = [headers[i, 0, n, s, loc] for i in range(e1) if acquired[i]] if headers is not None else []
                out.append(((n, s, loc), ksp, heads))
    return out


def ref_like(ref: np.ndarray, ref_heads: list, shape: tuple) -> np.ndarray:
    """Calibration k-space (C, ny_ref, nx) -> (C, ny, nx) like the data buffer (rows placed by
    kspace_encode_step_1 when the ref buffer has its own E1 size)."""
    if ref.shape == tuple(shape):
        return ref
    C, ny, nx = shape
    if ref.shape[0] != C or ref.shape[2] != nx:
        raise InputError(f"ReconData ref buffer has shape (CHA, E1, E0) = {ref.shape}, data has {tuple(shape)}")
    out = np.zeros(shape, np.complex64)
    acquired = np.flatnonzero(np.abs(ref).sum(axis=(0, 2)) > 0)   # same order as ref_heads
    for i, h in zip(acquired, ref_heads):
        row = int(h.idx.kspace_encode_step_1)
        if 0 <= row < ny:
            out[:, row] = ref[:, i]
    return out


def _buffer_body(connection, params, prior, ctx) -> None:
    from gadgetron.types import ReconData

    connection.filter(ReconData)
    processor = StreamProcessor(connection.header, params, prior)
    for recon_data in connection:
        ctx["items"] += 1
        for b, bit in enumerate(recon_data.bits):
            refs = {}
            if bit.ref is not None:
                refs = {key: (ksp, heads) for key, ksp, heads in buffer_slices(bit.ref)}
            for key, ksp, heads in buffer_slices(bit.data):
                ref = refs.get(key, refs.get((0, key[1], key[2]), next(iter(refs.values()), None)))
                if ref is not None:
                    ref = ref_like(ref[0], ref[1], ksp.shape)
                try:
                    images = processor.process_buffer(ksp, heads, ref=ref)
                except Exception as exc:
                    where = f"ReconData #{ctx['items']} bit {b} (n, s, loc) = {key}: {exc}"
                    raise (InputError(where) if isinstance(exc, ValueError) else RuntimeError(where)) from exc
                for image in images:
                    _send(connection, image, ctx)


def recon_buffers(connection) -> None:
    """Target for `ReconData` (BucketToBufferGadget output): one image set per (N, S, LOC)."""
    _run(connection, "recon_buffers", _buffer_body)
