"""MRD streaming server (OpenRecon/FIRE-style clients): `contextmri serve`.

Per connection: CONFIG_FILE (1) or CONFIG_TEXT (2), HEADER (3), optional TEXT (5) JSON parameters
(names of `gadget.params.ReconParams`), acquisitions (1008; waveforms 1026 accepted and ignored),
CLOSE (4). Images (1022) stream back as slices complete, then CLOSE. A malformed stream gets one TEXT
message "contextmri error: ..." and CLOSE where the socket still allows it; the server logs one line
per connection and keeps serving.

Threads: one accept thread feeds a queue; `workers` worker threads each handle one connection at a
time and keep their own loaded priors (a prior is loaded once per worker, never shared between
threads because the diffusion scheduler is stateful).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import socket
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from gadget.client_policy import ClientPolicy
from gadget.mrd_protocol import MID, ClientGone, Limits, MessageReader, MessageWriter, ProtocolError
from gadget.params import ReconParams, is_diffusion, properties_from_xml
from recon_core.errors import InputError
from recon_core.prior.cache import PriorCache
from recon_core.raw.writer import RawFileWriter

log = logging.getLogger("contextmri.serve")

DEFAULT_PORT = 9002


@dataclass
class SessionResult:
    """Outcome of one connection: counts, seconds, outcome ("ok" or "error: ..."), raw file if saved."""

    peer: str = "?"
    acquisitions: int = 0
    waveforms: int = 0
    images: int = 0
    seconds: float = 0.0
    outcome: str = "ok"
    config: str | None = None
    raw_file: str | None = None
    params: dict = field(default_factory=dict)

    def log_line(self) -> str:
        extra = f" raw={self.raw_file}" if self.raw_file else ""
        return (f"peer={self.peer} config={self.config!r} acquisitions={self.acquisitions} "
                f"images={self.images} seconds={self.seconds:.2f} outcome={self.outcome}{extra}")


class Worker:
    """Per-worker state: priors loaded once (keyed by model and device) and reused across connections."""

    def __init__(self, index: int = 0, prior_loader: Callable | None = None):

        self.index = index
        self._priors = PriorCache(loader=prior_loader, log=lambda m: log.info("worker %d %s", index, m))

    def prior_for(self, params):
        """The prior `params` needs (None unless a diffusion method: dds, scoremri, ldpm); loaded on first
        use by this worker."""
        if not is_diffusion(params.method):
            return None
        return self._priors.get(params.prior_model, params.device)


def params_from_text(text: str, what: str = "TEXT message") -> dict:
    """Parameters from a JSON object (or an XML with <property name= value=/>) -> dict of values.

    JSON may nest them under "parameters"; empty values mean "default". Raises ProtocolError otherwise.
    """
    s = text.strip()
    if not s:
        return {}
    if s.startswith("<"):
        try:
            root = ET.fromstring(s)
        except ET.ParseError as exc:
            raise ProtocolError(f"{what} looks like XML but does not parse: {exc}") from None
        return properties_from_xml(root)
    try:
        obj = json.loads(s)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"{what} must be a JSON object of reconstruction parameters, "
                            f"got {s[:40]!r} ({exc.msg})") from None
    if isinstance(obj, dict) and isinstance(obj.get("parameters"), dict):
        obj = obj["parameters"]
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object of reconstruction parameters, got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items() if not (v is None or (isinstance(v, str) and v.strip() == ""))}


def enforce_quota(directory, quota_bytes: int, keep: str | None = None) -> list[str]:
    """Delete the oldest saved raw files (*.h5, by modification time) until the directory holds at most
    `quota_bytes`; never the file `keep` (the one just written). Returns the deleted paths."""
    files = sorted(Path(directory).glob("*.h5"), key=lambda p: (p.stat().st_mtime, p.name))
    total = sum(p.stat().st_size for p in files)
    removed = []
    for p in files:
        if total <= quota_bytes:
            break
        if keep is not None and os.path.realpath(p) == os.path.realpath(keep):
            continue
        size = p.stat().st_size
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        removed.append(str(p))
    return removed


def private_dir(path) -> Path:
    """Create (or tighten) a directory for raw data: mode 0700, owner only."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


class RawWriter:
    """A session's header + acquisitions (+ waveforms) saved as `<stem>.h5` in a private directory by the
    raw layer's one writer (`recon_core.raw.writer.RawFileWriter`: a temporary file until `finish()`)."""

    def __init__(self, directory: str | os.PathLike, stem: str):
        self.dir = private_dir(directory)
        self.final = self.dir / f"{stem}.h5"
        self._w = RawFileWriter(self.dir, mode=0o600)   # raw data may hold patient name and birth date: owner only

    @property
    def n(self) -> int:
        return self._w.n

    def header(self, header) -> None:
        self._w.header(header.toXML())

    def acquisition(self, acq) -> None:
        self._w.acquisition(acq)

    def waveform(self, wav) -> None:
        try:
            self._w.waveform(wav)
        except Exception:  # waveforms are optional extras; never lose acquisitions over them
            pass

    def finish(self, complete: bool) -> str:
        """Close the file and move it to its final name (suffix _incomplete if the stream broke)."""
        final = self.final if complete else self.final.with_name(self.final.stem + "_incomplete.h5")
        return self._w.commit(final)


def _stem(peer: str, counter: int) -> str:
    safe = "".join(c if c.isalnum() else "-" for c in peer)
    return f"{time.strftime('%Y%m%d-%H%M%S')}_{counter:05d}_{safe}"


def _read_preamble(reader: MessageReader, res: SessionResult):
    """CONFIG_FILE/CONFIG_TEXT, optional TEXT parameters, the HEADER, then TEXT until the first other
    message → (header, client parameters dict, that first other message)."""
    text_params: dict = {}
    header = None
    while header is None:
        msg = reader.read()
        if msg.mid in (MID.CONFIG_FILE, MID.CONFIG_TEXT):
            if msg.mid == MID.CONFIG_FILE:
                res.config = str(msg.value)
            else:
                res.config = "<config text>"
                s = str(msg.value).strip()
                if s.startswith("<") or s.startswith("{"):
                    text_params.update(params_from_text(s, "CONFIG_TEXT message"))
        elif msg.mid == MID.TEXT:
            text_params.update(params_from_text(str(msg.value)))
        elif msg.mid == MID.HEADER:
            header = msg.value
        elif msg.mid == MID.CLOSE:
            raise ProtocolError("CLOSE received before the ISMRMRD HEADER: nothing to reconstruct")
        else:
            raise ProtocolError(f"{msg.name} received before the ISMRMRD HEADER: expected "
                                "CONFIG_FILE/CONFIG_TEXT, HEADER, optional TEXT parameters, then acquisitions")
    # parameters may also follow the header, before the first acquisition
    pending = reader.read()
    while pending.mid == MID.TEXT:
        text_params.update(params_from_text(str(pending.value)))
        pending = reader.read()
    return header, text_params, pending


#: the reference server's reserved config names: consume the stream and return no images ("savedataonly"
#: also saves it, as --save-raw does)
RESERVED_CONFIGS = {"null": "null", "savedataonly": "savedataonly"}


def _session_params(defaults, text_params, policy, res: SessionResult, peer: str):
    """The session's ReconParams: the operator's defaults merged with the client's TEXT parameters as the
    policy allows (InputError naming a refused parameter)."""
    merged = (policy or ClientPolicy()).merge(defaults or {}, text_params)
    params = ReconParams.from_mapping(merged)
    res.params = dict(merged)
    if params.extra:
        log.warning("peer=%s ignoring unknown parameters %s", peer, sorted(params.extra))
    return params


def _acquisitions(reader: MessageReader, pending, res: SessionResult, raw, state: dict, peer: str):
    """Yield acquisitions from `pending` on until CLOSE (state["closed"] = True); waveforms are counted and
    saved with --save-raw but not reconstructed; TEXT after the first acquisition is ignored."""
    msg = pending
    while True:
        if msg.mid == MID.ACQUISITION:
            res.acquisitions += 1
            if raw is not None:
                raw.acquisition(msg.value)
            yield msg.value
        elif msg.mid == MID.WAVEFORM:
            res.waveforms += 1
            if raw is not None:
                raw.waveform(msg.value)
        elif msg.mid == MID.CLOSE:
            state["closed"] = True
            return
        elif msg.mid == MID.TEXT:
            log.warning("peer=%s TEXT after the first acquisition ignored: %.80r", peer, msg.value)
        else:
            raise ProtocolError(f"unexpected {msg.name} message among the acquisitions")
        msg = reader.read()


def _drain(stream) -> None:
    """Read a lazy acquisition stream to its end (CLOSE), ignoring errors: keeps the protocol in step."""
    try:
        for _ in stream:
            pass
    except Exception:
        pass


def _reconstruct(processor, stream, send, res: SessionResult, state: dict) -> None:
    """Send every image the processor yields; on a reconstruction failure read the rest of the stream first
    (the client is not cut off mid-send), then re-raise."""
    lazy = not isinstance(stream, list)
    try:
        for image in processor.process(stream):
            send(image)
            res.images += 1
    except (ProtocolError, ClientGone, OSError):
        raise
    except Exception:
        if lazy and not state["closed"]:
            _drain(stream)
        raise
    if lazy and not state["closed"]:  # the processor stopped reading early
        for _ in stream:
            pass


def _tell_client(send, writer, text: str) -> None:
    """Best effort: an MRD TEXT error message and CLOSE (the client may already be gone)."""
    try:
        send(text)
        if writer is not None:
            writer.close()
    except Exception:
        pass


def _outcome_of(exc: BaseException, res: SessionResult, send, writer, peer: str) -> str:
    """The session's outcome line for a failure, after telling the client why where it can still hear."""
    if isinstance(exc, ClientGone):  # the client may only have half-closed its side
        _tell_client(send, writer, "contextmri error (bad input): the stream ended before CLOSE")
        return "error: client disconnected before CLOSE"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        _tell_client(send, writer, "contextmri error (timeout): no data from the client within the server's "
                                   "--timeout; session ended")
        return "error: timed out waiting for the client"
    if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
        return "error: connection lost"
    kind = "bad input" if isinstance(exc, ValueError) else type(exc).__name__
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, ValueError):
        log.exception("peer=%s reconstruction failed (%d acquisitions, %d images sent)",
                      peer, res.acquisitions, res.images)
    _tell_client(send, writer, f"contextmri error ({kind}): {msg}")
    return f"error: {msg}"


def handle_session(rfile: BinaryIO, wfile: BinaryIO | None, *, defaults: dict | None = None,
                   worker: Worker | None = None, save_raw: str | os.PathLike | None = None,
                   peer: str = "?", counter: int = 0, limits: Limits | None = None,
                   processor_factory: Callable | None = None, policy=None) -> SessionResult:
    """Run one MRD session over binary streams (socket files or BytesIO). Never raises for bad input.

    defaults: parameter strings from the command line; TEXT/CONFIG parameters override them only as
    `policy` (gadget.client_policy.ClientPolicy, default: the standard policy) allows.
    processor_factory(header, params, prior) -> object with `.process(iterable of Acquisition)`
    yielding ismrmrd.Image (default: `gadget.processor.StreamProcessor`). Returns a SessionResult.
    """
    t0 = time.time()
    res = SessionResult(peer=peer)
    worker = worker or Worker()
    reader = MessageReader(rfile, limits)
    writer = MessageWriter(wfile) if wfile is not None else None
    raw: RawWriter | None = None
    state = {"closed": False}

    def send(obj):
        if writer is not None:
            writer.send(obj)

    try:
        header, text_params, pending = _read_preamble(reader, res)
        reserved = RESERVED_CONFIGS.get((res.config or "").strip().lower())
        if reserved == "savedataonly" and save_raw is None:
            raise InputError("config 'savedataonly' needs a server started with --save-raw DIR")
        if reserved is not None:  # consume (and save) the stream, send no images
            if reserved == "savedataonly":
                raw = RawWriter(save_raw, _stem(peer, counter))
                raw.header(header)
            for _ in _acquisitions(reader, pending, res, raw, state, peer):
                pass
            if raw is not None:
                res.raw_file, raw = raw.finish(complete=True), None
            if writer is not None:
                writer.close()
            return res
        params = _session_params(defaults, text_params, policy, res, peer)
        if save_raw is not None:
            raw = RawWriter(save_raw, _stem(peer, counter))
            raw.header(header)
        stream = _acquisitions(reader, pending, res, raw, state, peer)
        if raw is not None:  # save everything before reconstruction: nothing is lost if the recon fails
            stream = list(stream)
            res.raw_file, raw = raw.finish(complete=True), None
        prior = worker.prior_for(params)
        if processor_factory is None:
            from gadget.processor import StreamProcessor as processor_factory  # noqa: N813
        _reconstruct(processor_factory(header, params, prior), stream, send, res, state)
        if writer is not None:
            writer.close()
    except Exception as exc:  # noqa: BLE001 - every failure ends this connection, never the server
        res.outcome = _outcome_of(exc, res, send, writer, peer)
    finally:
        if raw is not None:  # the stream broke off while being saved: keep what came, marked incomplete
            try:
                res.raw_file = raw.finish(complete=False)
            except Exception:
                log.exception("peer=%s could not finish the raw file", peer)
        res.seconds = time.time() - t0
    return res


# ---------------------------------------------------------------------------------------------
@dataclass
class ServerConfig:
    """Server settings. defaults: parameter strings applied to every connection (TEXT overrides)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    defaults: dict = field(default_factory=dict)
    save_raw: str | None = None
    save_raw_quota_mb: float = 10240.0   # oldest saved raw files are deleted beyond this total
    timeout: float = 60.0           # seconds of client silence (per read) before the session is ended
    limits: Limits = field(default_factory=Limits)
    policy: object = None           # gadget.client_policy.ClientPolicy (None: the standard policy)


class MRDServer:
    """Threaded MRD server. `start()` binds and returns; `address` gives (host, port); `shutdown()`."""

    def __init__(self, config: ServerConfig, processor_factory: Callable | None = None,
                 prior_loader: Callable | None = None):
        self.config = config
        self.processor_factory = processor_factory
        self.prior_loader = prior_loader
        self.results: list[SessionResult] = []
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self._counter = 0
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        return self._sock.getsockname()[:2]

    def start(self) -> "MRDServer":
        if self.config.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.config.workers}")
        if self.config.save_raw:
            private_dir(self.config.save_raw)
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError as exc:
            sock.close()
            raise InputError(f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}") from None
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        for i in range(self.config.workers):
            t = threading.Thread(target=self._work, args=(Worker(i, self.prior_loader),), daemon=True,
                                 name=f"mrd-worker-{i}")
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._accept, daemon=True, name="mrd-accept")
        t.start()
        self._threads.append(t)
        log.info("listening on %s:%d with %d worker(s)%s", *self.address, self.config.workers,
                 f", saving raw data to {self.config.save_raw}" if self.config.save_raw else "")
        return self

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            self._queue.put((conn, addr))

    def _work(self, worker: Worker):
        while True:
            item = self._queue.get()
            if item is None:
                return
            conn, addr = item
            with self._lock:
                self._counter += 1
                counter = self._counter
            self.handle(conn, addr, worker, counter)

    def handle(self, conn: socket.socket, addr, worker: Worker, counter: int = 0) -> SessionResult:
        """Serve one accepted socket to the end; always closes it; logs one line."""
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
        conn.settimeout(self.config.timeout)
        rfile = conn.makefile("rb")
        wfile = conn.makefile("wb")
        try:
            res = handle_session(rfile, wfile, defaults=self.config.defaults, worker=worker, policy=self.config.policy,
                                 save_raw=self.config.save_raw, peer=peer, counter=counter,
                                 limits=self.config.limits, processor_factory=self.processor_factory)
        except Exception as exc:  # pragma: no cover - handle_session does not raise for bad input
            res = SessionResult(peer=peer, outcome=f"error: internal {type(exc).__name__}: {exc}")
            log.exception("peer=%s internal error", peer)
        try:
            wfile.flush()
        except Exception:
            pass
        if self.config.save_raw and res.raw_file:
            for gone in enforce_quota(self.config.save_raw, int(self.config.save_raw_quota_mb * 2 ** 20),
                                      keep=res.raw_file):
                log.info("save-raw quota %.0f MB: deleted the oldest raw file %s", self.config.save_raw_quota_mb, gone)
        (log.info if res.outcome == "ok" else log.warning)("%s", res.log_line())
        with self._lock:
            self.results.append(res)
        _close_quietly(conn, rfile, wfile)
        return res

    def stop(self):
        """Ask `serve_forever` to return (safe from a signal handler)."""
        self._stop.set()

    def serve_forever(self):
        """Start (if needed) and block until `shutdown()` or Ctrl-C."""
        if self._sock is None:
            self.start()
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.shutdown()

    def shutdown(self, timeout: float = 5.0):
        if self._stop.is_set() and self._sock is None:
            return
        self._stop.set()
        for _ in range(self.config.workers):
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()


def _close_quietly(conn: socket.socket, rfile, wfile, linger: float = 1.0):
    """Flush, half-close, drain briefly (so a final TEXT/CLOSE is not lost to a reset), then close."""
    for f in (wfile,):
        try:
            f.flush()
        except Exception:
            pass
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    try:
        conn.settimeout(0.05)
        deadline = time.time() + linger
        while time.time() < deadline:
            if not conn.recv(65536):
                break
    except OSError:
        pass
    for f in (rfile, wfile):
        try:
            f.close()
        except Exception:
            pass
    try:
        conn.close()
    except OSError:
        pass


def session_from_bytes(data: bytes, **kw) -> tuple[SessionResult, bytes]:
    """Run `handle_session` on an in-memory byte stream; returns (result, bytes the server wrote)."""
    out = io.BytesIO()
    res = handle_session(io.BytesIO(data), out, **kw)
    return res, out.getvalue()
