"""Raw acquisitions → per-slice k-space: noise prewhitening, readout oversampling removal, line
placement with averaging of repeated lines, and the ACS (calibration) data.

Shapes: k-space `(C, ny, nx)` complex64, `ny` = phase encode (kspace_encode_step_1), `nx` = readout.
A slice is keyed by `SliceKey(slice, contrast, phase, repetition, set)`; averages are combined.
Used by every path that reads raw data: the stream processor (gadget, MRD server, replay), training's
ISMRMRD datasets and the simulator's reader (`recon_core.raw.reader`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import ismrmrd
import numpy as np

from ..errors import InputError
from .acs import MIN_CALIB_LINES, locate_acs
from .geometry import EncodingGeometry
from .noise import NoiseAccumulator, prewhiten
from .oversampling import remove_readout_oversampling

# Acquisitions that carry no imaging/calibration data for a Cartesian 2-D reconstruction.
_SKIP_FLAGS = (
    ismrmrd.ACQ_IS_NAVIGATION_DATA,
    ismrmrd.ACQ_IS_PHASECORR_DATA,
    ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA,
    ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
    ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION,
)


class SliceKey(NamedTuple):
    slice: int
    contrast: int
    phase: int
    repetition: int
    set: int


def slice_key(head) -> SliceKey:
    """Key of an acquisition (header or Acquisition)."""
    i = head.idx
    return SliceKey(int(i.slice), int(i.contrast), int(i.phase), int(i.repetition), int(i.set))


@dataclass
class SliceBuffer:
    """Running sums of imaging and calibration lines of one slice key (encoded readout size)."""

    key: SliceKey
    n_coils: int
    enc_ny: int
    enc_nx: int
    data_sum: np.ndarray = None   # (C, ny, nx) complex128
    data_count: np.ndarray = None  # (ny,) int
    ref_sum: np.ndarray = None
    ref_count: np.ndarray = None
    heads: list = field(default_factory=list)  # AcquisitionHeader of imaging lines
    dwell_us: float | None = None
    col_lo: int | None = None     # readout extent (encoded samples) covered by the imaging lines
    col_hi: int | None = None

    def __post_init__(self):
        shape = (self.n_coils, self.enc_ny, self.enc_nx)
        self.data_sum = np.zeros(shape, np.complex64)
        self.data_count = np.zeros(self.enc_ny, np.int32)

    def add(self, row: int, col0: int, data: np.ndarray, calibration: bool, imaging: bool, head):
        n = data.shape[1]
        if imaging:
            self.data_sum[:, row, col0:col0 + n] += data
            self.data_count[row] += 1
            self.col_lo = col0 if self.col_lo is None else min(self.col_lo, col0)
            self.col_hi = col0 + n if self.col_hi is None else max(self.col_hi, col0 + n)
            self.heads.append(head)
            if head.sample_time_us:
                self.dwell_us = float(head.sample_time_us)
        if calibration:
            if self.ref_sum is None:
                self.ref_sum = np.zeros_like(self.data_sum)
                self.ref_count = np.zeros(self.enc_ny, np.int32)
            self.ref_sum[:, row, col0:col0 + n] += data
            self.ref_count[row] += 1

    @property
    def n_lines(self) -> int:
        return int((self.data_count > 0).sum())


@dataclass
class SliceData:
    """One assembled slice ready to reconstruct (readout oversampling removed, prewhitened).

    kspace (C, ny, nx) complex64; mask (ny, nx) bool (sampled rows); calib (C, ny, nx) complex64
    k-space whose rows `acs_rows` are the ACS lines (either calibration-flagged lines or the fully
    sampled centre of `kspace`); acs_source "calibration-lines" | "kspace-centre"; head: the
    AcquisitionHeader closest to the k-space centre (geometry and counters); rec_ny: rows to keep
    in the final image (centre crop); prewhitener: the (C, C) W applied to kspace/calib, or None;
    rec_shape: the reconSpace matrix the cropped image is Fourier-interpolated to (`raw.image.to_recon_space`).
    """

    key: SliceKey
    kspace: np.ndarray
    mask: np.ndarray
    calib: np.ndarray
    acs_rows: tuple
    acs_source: str
    head: object
    rec_ny: int
    prewhitener: np.ndarray | None = None
    rec_shape: tuple | None = None   # reconSpace (ny, nx) the cropped image is interpolated to; None: as cropped
    coil_lift: np.ndarray | None = None  # (C, n): virtual → unwhitened physical coils after coil compression
    partial_fourier: dict | None = None  # {"phase": fraction, "readout": fraction} of an asymmetric k-space, or None


def finish_slice(buf: SliceBuffer, geom: EncodingGeometry, W: np.ndarray | None,
                 min_acs: int = MIN_CALIB_LINES) -> SliceData:
    """Average repeated lines, prewhiten, remove oversampling, locate ACS. Raises InputError on no data/ACS."""
    key = buf.key
    if buf.n_lines == 0:
        raise InputError(f"slice {key.slice} (contrast {key.contrast}, repetition {key.repetition}) has calibration "
                         f"lines but no imaging lines")
    cnt = np.maximum(buf.data_count, 1).astype(np.float32)
    ksp = buf.data_sum / cnt[None, :, None]
    ksp = remove_readout_oversampling(prewhiten(ksp, W), geom.rec_nx)
    rows = buf.data_count > 0
    centre = geom.enc_ny // 2
    ref_rows = None
    calib = ksp
    if buf.ref_count is not None and (buf.ref_count > 0).any():
        rcnt = np.maximum(buf.ref_count, 1).astype(np.float32)
        calib = remove_readout_oversampling(prewhiten(buf.ref_sum / rcnt[None, :, None], W), geom.rec_nx)
        ref_rows = buf.ref_count > 0
    lo, hi, source = locate_acs(rows, centre, ref_rows, min_acs, where=f"slice {key.slice}")
    mask = np.repeat(rows[:, None], geom.rec_nx, axis=1)
    cols, pf = _partial_fourier(buf, geom, rows)
    mask &= cols[None, :]
    head = min(buf.heads, key=lambda h: abs(int(h.idx.kspace_encode_step_1) + geom.line_offset - centre))
    return SliceData(key, ksp.astype(np.complex64), mask, calib.astype(np.complex64), (lo, hi), source, head,
                     geom.keep_rows, W, geom.rec_shape, partial_fourier=pf)


def _partial_fourier(buf: SliceBuffer, geom: EncodingGeometry, rows: np.ndarray) -> tuple[np.ndarray, dict | None]:
    """(acquired readout columns (rec_nx,) bool, partial-Fourier fractions or None).

    Readout (asymmetric echo): the imaging lines cover encoded samples [col_lo, col_hi) only; after the
    readout-oversampling removal the same fraction of the reconSpace columns is acquired, so the rest is
    masked out (not treated as measured zeros). Phase: the acquired lines reach the edge on one side of the
    centre line and stop short of 85 % of that on the other (6/8, 7/8 ...; random undersampling does not)."""
    n = geom.rec_nx
    cols = np.ones(n, bool)
    pf = {}
    if buf.col_lo is not None and buf.col_hi - buf.col_lo < geom.enc_nx:
        lo = int(np.floor(buf.col_lo * n / geom.enc_nx))
        hi = int(np.ceil(buf.col_hi * n / geom.enc_nx))
        cols[:] = False
        cols[lo:hi] = True
        if min(n // 2 - lo, hi - n // 2) < max(n // 2 - lo, hi - n // 2) - 2:
            pf["readout"] = round((hi - lo) / n, 3)
    acq = np.nonzero(rows)[0]
    c = geom.enc_ny // 2
    if len(acq):
        below, above = c - int(acq.min()), int(acq.max()) - c
        if min(below, above) < 0.85 * max(below, above) and max(below, above) >= c - 2:
            pf["phase"] = round((int(acq.max()) - int(acq.min()) + 1) / geom.enc_ny, 3)
    return cols, (pf or None)


class Assembler:
    """Feeds acquisitions into per-slice buffers; returns finished `SliceData` as slices complete.

    `add(acq)` → list of SliceData completed by this acquisition (LAST_IN_SLICE);
    `flush()` → the rest at end of stream. Validates coil counts, finite samples and line indices.
    """

    #: at most this many slices buffered at once, and this many bytes (a stream that never closes its
    #: slices cannot grow the process without bound)
    MAX_BUFFERS = 256
    MAX_BUFFER_BYTES = 2 << 30

    def __init__(self, geom: EncodingGeometry, min_acs: int = MIN_CALIB_LINES, max_buffers: int | None = None,
                 max_bytes: int | None = None):
        self.geom = geom
        self.max_buffers = int(max_buffers or self.MAX_BUFFERS)
        self.max_bytes = int(max_bytes or self.MAX_BUFFER_BYTES)
        self.min_acs = min_acs
        self.noise = NoiseAccumulator()
        self.buffers: dict[SliceKey, SliceBuffer] = {}
        self.n_coils: int | None = None
        self.n_acquisitions = 0
        self.n_imaging = 0
        self.n_noise = 0
        self._W = None
        self._W_dwell = None

    def _check_coils(self, n: int, what: str):
        if n > self.geom.max_channels:
            raise InputError(f"{what} has {n} channels, more than the cap max_channels={self.geom.max_channels}")
        if self.n_coils is None:
            self.n_coils = n
        elif n != self.n_coils:
            raise InputError(f"inconsistent coil counts: {what} has {n} coils, earlier acquisitions {self.n_coils}")

    def add(self, acq) -> list[SliceData]:
        self.n_acquisitions += 1
        data = acq.data
        if data.ndim != 2 or data.size == 0:
            raise InputError(f"acquisition {self.n_acquisitions} has no samples (data shape {data.shape})")
        if not np.isfinite(data).all():
            raise InputError(f"acquisition {self.n_acquisitions} (scan counter {acq.scan_counter}) contains NaN/Inf samples")
        if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            self._check_coils(data.shape[0], f"noise acquisition {self.n_acquisitions}")
            self.noise.add(data, acq.sample_time_us)
            self.n_noise += 1
            return []
        if any(acq.is_flag_set(f) for f in _SKIP_FLAGS):
            return []
        if acq.trajectory_dimensions and acq.trajectory_dimensions > 0:
            raise InputError(f"acquisition {self.n_acquisitions} has a trajectory; only Cartesian data is supported")
        self._check_coils(data.shape[0], f"acquisition {self.n_acquisitions}")
        g = self.geom
        centre_sample = int(acq.center_sample)
        pre, post = int(acq.discard_pre), int(acq.discard_post)
        if pre or post:
            if pre + post >= data.shape[1]:
                raise InputError(f"acquisition {self.n_acquisitions} discards {pre}+{post} of {data.shape[1]} samples")
            data = data[:, pre:data.shape[1] - post]
            centre_sample -= pre
        if acq.is_flag_set(ismrmrd.ACQ_IS_REVERSE):
            data = data[:, ::-1]
            centre_sample = data.shape[1] - 1 - centre_sample
        nsamp = data.shape[1]
        if nsamp > g.enc_nx:
            raise InputError(f"acquisition {self.n_acquisitions} has {nsamp} readout samples, more than the encoded "
                             f"matrix {g.enc_nx}")
        e2 = int(acq.idx.kspace_encode_step_2)
        if e2 != 0:   # the header's encodedSpace has z = 1 (3-D encodings are refused with the header)
            raise InputError(f"acquisition {self.n_acquisitions} has kspace_encode_step_2 = {e2}, outside the header's "
                             f"encoded space (z = 1): 3-D or multi-partition data is not supported")
        row = int(acq.idx.kspace_encode_step_1) + g.line_offset
        if not 0 <= row < g.enc_ny:
            raise InputError(f"acquisition {self.n_acquisitions} has phase-encode line {acq.idx.kspace_encode_step_1} "
                             f"outside the encoded matrix of {g.enc_ny} lines")
        col0 = g.enc_nx // 2 - centre_sample if nsamp < g.enc_nx else 0
        col0 = min(max(col0, 0), g.enc_nx - nsamp)
        calib_only = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        calib_img = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        key = slice_key(acq)
        buf = self.buffers.get(key)
        if buf is None:
            self._check_new_buffer(key, data.shape[0])
            buf = self.buffers[key] = SliceBuffer(key, data.shape[0], g.enc_ny, g.enc_nx)
        head = acq.getHead()
        buf.add(row, col0, data, calibration=calib_only or calib_img, imaging=not calib_only or calib_img, head=head)
        if not calib_only or calib_img:
            self.n_imaging += 1
        if acq.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE) and not calib_only and self._last_average(acq):
            return [self._finish(key)]
        return []

    def _last_average(self, acq) -> bool:
        """Averages acquired as outer passes flag LAST_IN_SLICE on every pass: the slice is complete (its
        repeated lines averaged in the buffer) only with the header's last average; a counter beyond the
        header's averages is refused. Without an average limit in the header every LAST_IN_SLICE closes."""
        lim = self.geom.limits or {}
        if "average" not in lim:   # the header does not say: each LAST_IN_SLICE closes the slice
            return True
        n_avg, a = lim["average"], int(acq.idx.average)
        if a >= n_avg or a < 0:
            raise InputError(f"acquisition {self.n_acquisitions} has average index {a}, outside the header's "
                             f"encoding limits (0..{n_avg - 1})")
        return a == n_avg - 1

    def _check_new_buffer(self, key: SliceKey, n_coils: int) -> None:
        """Refuse counters outside the header's encoding limits and more buffered data than the caps."""
        lim = self.geom.limits or {}
        for name in ("slice", "contrast", "phase", "repetition", "set"):
            v = getattr(key, name)
            if v < 0 or (name in lim and v >= lim[name]):
                top = f"0..{lim[name] - 1}" if name in lim else "≥ 0"
                raise InputError(f"acquisition {self.n_acquisitions} has {name} index {v}, outside the header's "
                                 f"encoding limits ({top})")
        if len(self.buffers) >= self.max_buffers:
            raise InputError(f"more than {self.max_buffers} slices open at once (none completed with LAST_IN_SLICE)")
        need = (len(self.buffers) + 1) * self.geom.buffer_bytes(n_coils)
        if need > self.max_bytes:
            raise InputError(f"buffering slice {key.slice} would hold {need / 2**20:.0f} MiB of k-space, more than "
                             f"the cap of {self.max_bytes / 2**20:.0f} MiB")

    def _finish(self, key: SliceKey) -> SliceData:
        buf = self.buffers.pop(key)
        return finish_slice(buf, self.geom, self.prewhitener(buf.dwell_us), self.min_acs)

    def prewhitener(self, dwell_us=None):
        """Current prewhitening matrix (None without noise readouts)."""
        if self.noise.n_samples < 2:
            return None
        if self._W is None or self._W_dwell != dwell_us:
            self._W = self.noise.prewhitener(dwell_us)
            self._W_dwell = dwell_us
        return self._W

    def flush(self) -> list[SliceData]:
        """Finish every slice still buffered (end of stream), in key order."""
        if self.n_acquisitions == 0:
            raise InputError("no acquisitions in the stream")
        if self.n_imaging == 0 and not self.buffers:
            raise InputError(f"no imaging acquisitions in the stream ({self.n_acquisitions} acquisitions, "
                             f"{self.n_noise} noise readouts)")
        return [self._finish(k) for k in sorted(self.buffers)]
