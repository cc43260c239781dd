"""Raw acquisitions → per-slice k-space: noise prewhitening, readout oversampling removal, line
placement with averaging of repeated lines, and the ACS (calibration) data.

Shapes: k-space `(C, ny, nx)` complex64, `ny` = phase encode (kspace_encode_step_1), `nx` = readout.
A slice is keyed by `SliceKey(slice, contrast, phase, repetition, set)`; averages are combined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import ismrmrd
import numpy as np

from recon_core.errors import InputError

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

MIN_ACS_LINES = 8  # fewer contiguous central lines than this is "no ACS"


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
class EncodingGeometry:
    """Matrix sizes and limits read from `header.encoding[0]`.

    enc_nx/enc_ny: encodedSpace matrix (readout incl. oversampling, phase); rec_nx/rec_ny: reconSpace
    matrix; fov_mm: reconSpace field of view (x, y, z) in mm; center_line: k-space centre line index.
    """

    enc_nx: int
    enc_ny: int
    rec_nx: int
    rec_ny: int
    fov_mm: tuple
    center_line: int
    n_slices: int
    acc_factor: tuple = (1, 1)

    @classmethod
    def from_header(cls, header, max_matrix: int = 512) -> "EncodingGeometry":
        try:
            enc = header.encoding[0]
            es, rs = enc.encodedSpace, enc.reconSpace
            enc_nx, enc_ny, enc_nz = int(es.matrixSize.x), int(es.matrixSize.y), int(es.matrixSize.z or 1)
            rec_nx, rec_ny = int(rs.matrixSize.x), int(rs.matrixSize.y)
            fov = (float(rs.fieldOfView_mm.x), float(rs.fieldOfView_mm.y), float(rs.fieldOfView_mm.z))
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise InputError(f"ISMRMRD header lacks encoding[0] encodedSpace/reconSpace matrix and FOV ({exc})") from None
        if min(enc_nx, enc_ny, rec_nx, rec_ny) < 1:
            raise InputError(f"ISMRMRD header has an empty matrix: encoded {enc_nx}x{enc_ny}, recon {rec_nx}x{rec_ny}")
        if enc_nz > 1:
            raise InputError(f"3-D encoding (encodedSpace z = {enc_nz}) is not supported; expected 2-D multi-slice")
        biggest = max(rec_nx, rec_ny, enc_ny)
        if biggest > max_matrix:
            raise InputError(f"matrix {rec_nx}x{max(rec_ny, enc_ny)} exceeds the cap max_matrix={max_matrix}")
        if enc_nx < rec_nx:
            raise InputError(f"encodedSpace readout {enc_nx} is smaller than reconSpace readout {rec_nx}")
        lim = enc.encodingLimits
        center = None
        n_slices = 1
        if lim is not None:
            if lim.kspace_encoding_step_1 is not None and lim.kspace_encoding_step_1.center is not None:
                center = int(lim.kspace_encoding_step_1.center)
            if lim.slice is not None and lim.slice.maximum is not None:
                n_slices = int(lim.slice.maximum) + 1
        if center is None or not (0 <= center < enc_ny):
            center = enc_ny // 2
        acc = (1, 1)
        pi = enc.parallelImaging
        if pi is not None and pi.accelerationFactor is not None:
            af = pi.accelerationFactor
            acc = (int(af.kspace_encoding_step_1 or 1), int(af.kspace_encoding_step_2 or 1))
        return cls(enc_nx, enc_ny, rec_nx, rec_ny, fov, center, n_slices, acc)

    @property
    def line_offset(self) -> int:
        """Row in the (enc_ny) matrix of kspace_encode_step_1 == 0 (partial Fourier shifts it)."""
        return self.enc_ny // 2 - self.center_line


# ---------------------------------------------------------------- noise
class NoiseAccumulator:
    """Collects noise readouts `(C, N)` and gives the prewhitening matrix `(C, C)` complex64."""

    def __init__(self):
        self._sum = None
        self._n = 0
        self.dwell_us = None

    def add(self, data: np.ndarray, dwell_us: float | None = None):
        data = np.asarray(data, dtype=np.complex128)
        if self._sum is None:
            self._sum = np.zeros((data.shape[0], data.shape[0]), np.complex128)
        if data.shape[0] != self._sum.shape[0]:
            raise InputError(f"inconsistent coil counts: noise readout has {data.shape[0]} coils, earlier ones {self._sum.shape[0]}")
        self._sum += data @ data.conj().T
        self._n += data.shape[1]
        if dwell_us:
            self.dwell_us = float(dwell_us)

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def n_coils(self) -> int | None:
        return None if self._sum is None else self._sum.shape[0]

    def covariance(self) -> np.ndarray | None:
        """Noise covariance `(C, C)` complex128 (per sample), or None without noise data."""
        if self._n < 2:
            return None
        return self._sum / (self._n - 1)

    def prewhitener(self, data_dwell_us: float | None = None) -> np.ndarray | None:
        """W `(C, C)` complex64 with W·cov·Wᴴ = (mean noise variance)·I, so scanner units are kept.

        When both dwell times are known the covariance is rescaled by noise_dwell / data_dwell
        (noise variance is proportional to bandwidth). Returns None without noise data.
        """
        cov = self.covariance()
        if cov is None:
            return None
        if self.dwell_us and data_dwell_us:
            cov = cov * (self.dwell_us / float(data_dwell_us))
        power = float(np.real(np.trace(cov))) / cov.shape[0]
        if not np.isfinite(power) or power <= 0:
            raise InputError("noise readouts have zero or non-finite power; cannot prewhiten")
        try:
            L = np.linalg.cholesky(cov / power)
        except np.linalg.LinAlgError:
            raise InputError("noise covariance is not positive definite (coils with identical or zero noise)") from None
        return np.linalg.inv(L).astype(np.complex64)


def prewhiten(ksp: np.ndarray, W: np.ndarray | None) -> np.ndarray:
    """Apply `W (C, C)` over the coil axis of `ksp (C, ...)`; identity when W is None."""
    if W is None:
        return ksp
    C = ksp.shape[0]
    return (W @ ksp.reshape(C, -1)).reshape(ksp.shape).astype(np.complex64)


def unwhitened_intensity(maps: np.ndarray, W: np.ndarray | None) -> np.ndarray | None:
    """Per-pixel factor (ny, nx) float32 that brings an image reconstructed from prewhitened data back
    to the usual convention (unit-norm coil maps of the *unwhitened* data), or None when W is None.

    Whitened data y_w = W y have maps W·S; ESPIRiT normalises them, S_w = W·S/‖W·S‖, so the
    reconstruction is x·‖W·S‖. With ‖S‖ = 1 (the MVUE convention), ‖W⁻¹·S_w‖ = 1/‖W·S‖, hence
    x = x_w·‖W⁻¹·S_w‖. Where the maps are zero (outside the ESPIRiT support) the median factor
    inside is used.
    """
    if W is None:
        return None
    C = maps.shape[0]
    unw = np.linalg.solve(W.astype(np.complex128), maps.reshape(C, -1).astype(np.complex128))
    f = np.sqrt((np.abs(unw) ** 2).sum(0)).reshape(maps.shape[1:])
    inside = (np.abs(maps) ** 2).sum(0) > 1e-6
    f[~inside] = float(np.median(f[inside])) if inside.any() else 1.0
    return f.astype(np.float32)


def remove_readout_oversampling(ksp: np.ndarray, nx: int) -> np.ndarray:
    """Crop the readout (last axis) of k-space to `nx` in the image domain (centred FFTs), complex64."""
    n = ksp.shape[-1]
    if n == nx:
        return ksp.astype(np.complex64, copy=False)
    img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(ksp, axes=-1), axis=-1, norm="ortho"), axes=-1)
    start = (n - nx) // 2
    img = img[..., start:start + nx]
    out = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(img, axes=-1), axis=-1, norm="ortho"), axes=-1)
    return out.astype(np.complex64)


# ---------------------------------------------------------------- per-slice buffers
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

    def __post_init__(self):
        shape = (self.n_coils, self.enc_ny, self.enc_nx)
        self.data_sum = np.zeros(shape, np.complex64)
        self.data_count = np.zeros(self.enc_ny, np.int32)

    def add(self, row: int, col0: int, data: np.ndarray, calibration: bool, imaging: bool, head):
        n = data.shape[1]
        if imaging:
            self.data_sum[:, row, col0:col0 + n] += data
            self.data_count[row] += 1
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
    in the final image (centre crop); prewhitener: the (C, C) W applied to kspace/calib, or None.
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


def central_block(rows: np.ndarray, center: int) -> tuple[int, int]:
    """Largest contiguous run of True in `rows (ny,)` containing `center` → (start, stop); (c, c) if none."""
    ny = rows.shape[0]
    if not rows[center]:
        return center, center
    lo = center
    while lo > 0 and rows[lo - 1]:
        lo -= 1
    hi = center + 1
    while hi < ny and rows[hi]:
        hi += 1
    return lo, hi


def finish_slice(buf: SliceBuffer, geom: EncodingGeometry, W: np.ndarray | None,
                 min_acs: int = MIN_ACS_LINES) -> SliceData:
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
    if buf.ref_count is not None and (buf.ref_count > 0).any():
        rcnt = np.maximum(buf.ref_count, 1).astype(np.float32)
        calib = remove_readout_oversampling(prewhiten(buf.ref_sum / rcnt[None, :, None], W), geom.rec_nx)
        ref_rows = buf.ref_count > 0
        lo, hi = central_block(ref_rows, centre)
        if hi - lo < min_acs:  # calibration lines not contiguous around the centre: take all of them
            idx = np.flatnonzero(ref_rows)
            lo, hi = int(idx.min()), int(idx.max()) + 1
            if not ref_rows[lo:hi].all() or hi - lo < min_acs:
                raise InputError(f"slice {key.slice}: the {int(ref_rows.sum())} calibration-flagged lines do not form a "
                                 f"contiguous block of at least {min_acs} lines")
        source = "calibration-lines"
    else:
        lo, hi = central_block(rows, centre)
        if hi - lo < min_acs:
            raise InputError(f"no ACS in slice {key.slice}: no calibration-flagged lines and only {hi - lo} fully "
                             f"sampled central k-space lines (need at least {min_acs})")
        calib = ksp
        source = "kspace-centre"
    mask = np.repeat(rows[:, None], geom.rec_nx, axis=1)
    head = min(buf.heads, key=lambda h: abs(int(h.idx.kspace_encode_step_1) + geom.line_offset - centre))
    return SliceData(key, ksp.astype(np.complex64), mask, calib.astype(np.complex64), (lo, hi), source, head,
                     geom.rec_ny, W)


class Assembler:
    """Feeds acquisitions into per-slice buffers; returns finished `SliceData` as slices complete.

    `add(acq)` → list of SliceData completed by this acquisition (LAST_IN_SLICE);
    `flush()` → the rest at end of stream. Validates coil counts, finite samples and line indices.
    """

    def __init__(self, geom: EncodingGeometry, min_acs: int = MIN_ACS_LINES):
        self.geom = geom
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
            buf = self.buffers[key] = SliceBuffer(key, data.shape[0], g.enc_ny, g.enc_nx)
        head = acq.getHead()
        buf.add(row, col0, data, calibration=calib_only or calib_img, imaging=not calib_only or calib_img, head=head)
        if not calib_only or calib_img:
            self.n_imaging += 1
        if acq.is_flag_set(ismrmrd.ACQ_LAST_IN_SLICE) and not calib_only:
            return [self._finish(key)]
        return []

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
