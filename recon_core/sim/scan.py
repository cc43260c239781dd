"""`simulate_scan`: one multi-slice 2-D Cartesian brain scan as a scanner would send it, and its file I/O.

Acquisition order: `noise_readouts` noise-only readouts (ACQ_IS_NOISE_MEASUREMENT) first; then slice
by slice: (calibration-only ACS lines, in "separate" mode) and the imaging lines in ascending
kspace_encode_step_1. Every readout is 2× oversampled (encodedSpace x = 2·reconSpace x; center_sample
= nx), carries idx.slice / idx.kspace_encode_step_1, position (slice centre, LPS mm), read/phase/slice
directions, sample_time_us and the scan counter/time stamp; FIRST_IN_SLICE / LAST_IN_SLICE mark the
slice's first and last readout, LAST_IN_MEASUREMENT the final one. Nothing is discarded (discard 0).

ACS (`acs_mode`):
- "embedded" (ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING): the mask's central ACS lines are ordinary
  imaging lines flagged as calibration too; each line is sent once.
- "separate" (ACQ_IS_PARALLEL_CALIBRATION): the ACS block is acquired additionally as a separate
  calibration scan (own noise) before the imaging lines; the imaging lines are the full mask (its
  centre included), so the imaging data alone has the nominal acceleration.

Masks: uniform1d, equispaced1d, gaussian1d select whole phase-encode lines (same pattern for all
slices). poisson2d undersamples *within* the readout, which a 2-D Cartesian scanner does not do (a
readout is always fully sampled; skipping samples saves no time), so `simulate_scan` refuses it with
an InputError; use poisson2d retrospectively (simulate-dataset k-space + `recon_core.masks`).

Reference: the noiseless complex image x (reconSpace, scanner units) with the coil maps Σ|S|² = 1 and
phase relative to coil 0: the fully sampled data satisfy y_c = F(S_c x) + n_c, so an ideal
ESPIRiT/SENSE reconstruction of fully sampled data returns x up to noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ismrmrd
import numpy as np

from recon_core.errors import InputError
from recon_core.masks import MIN_ACS_LINES, make_mask
from recon_core.metadata.header import record_from_header

from ..metadata.header import parse_header
from ..raw.reader import image_group, open_dataset
from ..raw.writer import write_raw
from . import acquisition as acqmod
from .contrast import draw_protocol, render
from .header import build_header, header_xml
from .pathology import canonical
from .phantom import Z_RANGE_MM, make_subject, render_slab, slice_positions
from .tissues import INDEX
from .variety import ORIENTATIONS, SLICE_RANGE_MM

MASKS_1D = ("uniform1d", "equispaced1d", "gaussian1d")
ACS_MODES = ("embedded", "separate")


@dataclass
class SimulatedScan:
    """A simulated scan. Shapes: S slices, C coils, (ny, nx) = reconSpace matrix (ny phase, nx readout).

    header: ismrmrd.xsd.ismrmrdHeader; acquisitions: list[ismrmrd.Acquisition] in send order;
    reference (S, ny, nx) complex64 noiseless ground truth (scanner units); kspace (S, C, ny, nx)
    complex64 fully sampled noisy k-space (oversampling removed); maps (S, C, ny, nx) complex64 true
    coil maps; mask (ny, nx) bool imaging lines; acs_lines (int array of ky); noise_cov (C, C) Ψ;
    sigma (noise std per complex sample); tissue (S, ny, nx) uint8 dominant tissue index
    (recon_core.sim.tissues.TISSUES order, 255 = air); records: per-slice MetadataRecord.
    """
    header: object
    acquisitions: list
    reference: np.ndarray
    kspace: np.ndarray
    maps: np.ndarray
    mask: np.ndarray
    acs_lines: np.ndarray
    noise_cov: np.ndarray
    sigma: float
    protocol: object
    subject: object
    tissue: np.ndarray
    pathology: list = field(default_factory=list)
    records: list = field(default_factory=list)
    acs_mode: str = "embedded"
    accel: float = 1.0
    seed: int = 0

    @property
    def xml(self) -> str:
        return header_xml(self.header)


def _check_int(name, v, lo, hi):
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected an integer, got {v!r}") from None
    if iv != v or not lo <= iv <= hi:
        raise InputError(f"{name}: expected an integer in [{lo}, {hi}], got {v!r}")
    return iv


def validate_geometry(matrix, n_slices, coils, accel, acs_lines=None, thickness_mm=4.0, fov_mm=240.0, snr=30.0):
    """Check scan geometry; impossible combinations → InputError naming the problem."""
    M = _check_int("matrix", matrix, 16, 1024)
    if M % 2:
        raise InputError(f"matrix must be even (centred FFT convention), got {M}")
    _check_int("slices", n_slices, 1, 256)
    _check_int("coils", coils, 1, acqmod.MAX_COILS)
    if accel is None or not np.isfinite(accel) or accel < 1:
        raise InputError(f"acceleration must be ≥ 1, got {accel}")
    if accel > M:
        raise InputError(f"acceleration {accel:g} exceeds the {M} phase-encode lines")
    need = MIN_ACS_LINES if acs_lines is None else _check_int("acs lines", acs_lines, 1, 100000)
    if need > M:
        raise InputError(f"matrix {M} is too small for {need} ACS lines")
    if accel > 1 and int(round(M / accel)) < need:
        raise InputError(f"matrix {M} is too small for the ACS at R={accel:g}: {int(round(M / accel))} sampled "
                         f"lines < {need} ACS lines (ESPIRiT needs ≥ {MIN_ACS_LINES}); use a larger matrix or lower R")
    if not np.isfinite(thickness_mm) or thickness_mm <= 0:
        raise InputError(f"slice thickness must be > 0 mm, got {thickness_mm}")
    if not np.isfinite(fov_mm) or not 150 <= fov_mm <= 400:
        raise InputError(f"FOV must be within 150–400 mm (the head is ~210 mm), got {fov_mm}")
    if snr is None or not np.isfinite(snr) or not -20 <= snr <= 100:
        raise InputError(f"SNR must be a number of dB in [-20, 100], got {snr}")


def _bandwidth_dwell_us(protocol, n_samples: int, rng) -> float:
    lo, hi = (200.0, 400.0) if protocol.sequence == "Flash" else (130.0, 260.0)
    bw = rng.uniform(lo, hi)                         # Hz/pixel of the reconstructed readout
    return float(1e6 / (bw * n_samples))            # oversampled dwell time (µs)


def _check_scan_args(mask, acs_mode, matrix, n_slices, coils, accel, acs_lines, thickness_mm, fov_mm, snr, field,
                     oversampling) -> None:
    """InputError naming the first impossible simulate_scan argument."""
    if mask == "poisson2d":
        raise InputError("mask poisson2d undersamples within the readout, which a 2-D Cartesian scan cannot do "
                         "(every readout is fully sampled); use uniform1d, equispaced1d or gaussian1d, or apply "
                         "poisson2d retrospectively to simulate-dataset k-space")
    if mask not in MASKS_1D:
        raise InputError(f"mask: expected one of {', '.join(MASKS_1D)} (poisson2d: retrospective only), got {mask!r}")
    if acs_mode not in ACS_MODES:
        raise InputError(f"ACS mode: expected embedded or separate, got {acs_mode!r}")
    validate_geometry(matrix, n_slices, coils, accel, acs_lines, thickness_mm, fov_mm, snr)
    if field is not None and float(field) not in (1.5, 3.0):
        raise InputError(f"field strength: expected 1.5 or 3 (T), got {field}")
    if oversampling not in (1, 2):
        raise InputError(f"readout oversampling: expected 1 or 2, got {oversampling}")


def _acquisition_stream(k_os, calib, rows, acs, acs_mode, z_mm, protocol, psi, sigma, noise_readouts, rng,
                        dirs=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))) -> list:
    """The scan as ISMRMRD acquisitions, in scanner order: noise readouts, then per slice the separate
    calibration lines (if any) and the imaging lines (ACS flagged when embedded); k_os (S, C, M, nos)
    oversampled k-space; dirs: LPS (read, phase, slice) direction cosines. Draws the dwell time, the measurement
    uid and the noise from `rng`."""
    S, C, _, nos = k_os.shape
    dwell = _bandwidth_dwell_us(protocol, nos, rng)
    acqs = []
    counter = [0]
    t_step = max(protocol.tr / max(protocol.etl, 1) / 2.5, 1.0)   # 2.5 ms ticks per readout (approximate)
    uid = int(rng.integers(1, 2 ** 31))
    chan_mask = [(2 ** C - 1) & (2 ** 64 - 1)] + [0] * 15 if C <= 64 else [0] * 16

    def make(data, flags, ky=0, sl=0, z=0.0):
        a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
        a.version = 1
        a.measurement_uid = uid
        a.scan_counter = counter[0]
        a.acquisition_time_stamp = int(counter[0] * t_step) % (2 ** 32)
        a.available_channels = C
        a.center_sample = nos // 2
        a.sample_time_us = dwell
        a.encoding_space_ref = 0
        a.discard_pre = a.discard_post = 0
        for i, v in enumerate(chan_mask):
            a.channel_mask[i] = v
        a.position[:] = tuple(float(z) * np.asarray(dirs[2], float))
        a.read_dir[:] = tuple(dirs[0])
        a.phase_dir[:] = tuple(dirs[1])
        a.slice_dir[:] = tuple(dirs[2])
        a.idx.kspace_encode_step_1 = int(ky)
        a.idx.slice = int(sl)
        for f in flags:
            a.set_flag(f)
        counter[0] += 1
        acqs.append(a)
        return a

    for _ in range(max(int(noise_readouts), 0)):
        make(acqmod.noise_samples(nos, psi, sigma, rng), [ismrmrd.ACQ_IS_NOISE_MEASUREMENT])
    acs_set = set(acs.tolist())
    for s in range(S):
        first = len(acqs)
        if calib is not None:
            for j, ky in enumerate(acs):
                make(calib[s, :, j], [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION], ky, s, z_mm[s])
        for ky in rows:
            flags = [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING] if (acs_mode == "embedded" and ky in acs_set) else []
            make(k_os[s, :, ky], flags, ky, s, z_mm[s])
        acqs[first].set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
        acqs[-1].set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    acqs[-1].set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)

    return acqs


def simulate_scan(contrast: str = "T2", n_slices: int = 1, matrix: int = 128, coils: int = 8,
                  mask: str = "equispaced1d", accel: float = 4.0, seed: int = 0, field: float | None = None,
                  pathology: str | None = None, snr: float = 30.0, tr=None, te=None, ti=None, flip=None,
                  sequence: str | None = None, acs_mode: str = "embedded", acs_lines: int | None = None,
                  fov_mm: float = 240.0, thickness_mm: float = 4.0, oversampling: int = 2, noise_readouts: int = 4,
                  subject_seed: int | None = None, render_oversample: int = 1, orientation: str = "axial",
                  phase_rl: bool = False) -> SimulatedScan:
    """Simulate one scan (see the module docstring). Field None → random 1.5/3 T from the seed.

    Times in ms, flip in degrees, field in T, SNR in dB (σ = mean brain |x| / 10^(SNR/20)). orientation: axial,
    sagittal or coronal slices from the 3-D head (`recon_core.sim.variety.ORIENTATIONS`; non-axial slices are placed
    around the middle of that orientation's range); phase_rl: the in-plane image transposed so the phase-encoding
    direction is the orientation's column axis (R→L for axial), with the acquisitions' direction cosines to match.
    """
    if orientation not in ORIENTATIONS:
        raise InputError(f"orientation: expected one of {', '.join(ORIENTATIONS)}, got {orientation!r}")

    _check_scan_args(mask, acs_mode, matrix, n_slices, coils, accel, acs_lines, thickness_mm, fov_mm, snr, field,
                     oversampling)
    pathology = canonical(pathology)
    M, S, C = int(matrix), int(n_slices), int(coils)
    seed = int(seed)
    rng = np.random.default_rng([seed, 0xC0FFEE])

    span = Z_RANGE_MM[1] - Z_RANGE_MM[0]
    z_mm, _ = slice_positions(S, rng, spacing_mm=min(thickness_mm * 1.25, span / S))
    if orientation != "axial":   # the middle of the orientation's range (the rng draw above kept for seeding)
        lo, hi = SLICE_RANGE_MM[orientation]
        sp = min(thickness_mm * 1.25, (hi - lo) / S)
        z_mm = (lo + hi) / 2 + sp * (np.arange(S) - (S - 1) / 2)
    subj = make_subject(seed if subject_seed is None else int(subject_seed), field=field, pathology=pathology,
                        slab_mm=(float(z_mm.min()), float(z_mm.max())) if orientation == "axial" else None)
    protocol = draw_protocol(contrast, rng, field=subj.field, sequence=sequence, tr=tr, te=te, ti=ti, flip=flip,
                             t1_csf=float(subj.table.t1[INDEX["csf"]]))
    slab = render_slab(subj, z_mm, matrix=M, fov_mm=fov_mm, thickness_mm=thickness_mm, oversample=render_oversample,
                       orientation=orientation)
    x = image_from_slab(slab, subj, protocol, rng)                       # (S, M, M) complex64, scanner units
    brain, head = slab.brain > 0.5, slab.fractions.sum(0) > 0.5
    col, row, normal = ORIENTATIONS[orientation]
    dirs = (col, row, normal)
    if phase_rl:
        x, brain, head = (np.ascontiguousarray(np.swapaxes(a, -1, -2)) for a in (x, brain, head))
        dirs = (row, col, normal)
    maps = acqmod.coil_maps(C, M, rng)
    psi = acqmod.noise_covariance(C, rng)
    sigma = acqmod.noise_sigma(x, brain, head, snr)

    mres = make_mask(mask, (M, M), accel, seed=seed, acs_lines=acs_lines)
    rows = np.nonzero(mres.mask[:, 0])[0]
    acs = np.asarray(mres.acs_lines, dtype=int)
    k_os = acqmod.oversampled_kspace(maps[None] * x[:, None], oversampling)  # (S, C, M, oversampling·M)
    k_os += acqmod.correlated_noise(k_os.shape, psi, sigma, rng)
    kspace = acqmod.remove_oversampling(k_os, M)
    calib = None
    if acs_mode == "separate":
        calib = acqmod.oversampled_kspace(maps[None] * x[:, None], oversampling)[:, :, acs]
        calib += acqmod.correlated_noise(calib.shape, psi, sigma, rng)

    header = build_header(protocol=protocol, subject=subj, matrix=M, n_slices=S, n_coils=C, fov_mm=fov_mm,
                          thickness_mm=thickness_mm, accel=accel, calibration_mode=acs_mode,
                          oversampling=oversampling, pathology_labels=subj.labels, seed=seed, acs_lines=len(acs))
    acqs = _acquisition_stream(k_os, calib, rows, acs, acs_mode, z_mm, protocol, psi, sigma, noise_readouts, rng,
                               dirs=tuple(tuple(float(v) for v in d) for d in dirs))

    records = slice_records(header, S, subj.labels)
    return SimulatedScan(header=header, acquisitions=acqs, reference=x, kspace=kspace,
                         maps=np.broadcast_to(maps, (S,) + maps.shape).copy(), mask=mres.mask, acs_lines=acs,
                         noise_cov=psi, sigma=sigma, protocol=protocol, subject=subj, tissue=np.swapaxes(slab.dominant(), -1, -2) if phase_rl else slab.dominant(),
                         pathology=list(subj.labels), records=records, acs_mode=acs_mode, accel=float(mres.accel),
                         seed=seed)


def image_from_slab(slab, subj, protocol, rng) -> np.ndarray:
    """Complex image (S, ny, nx) complex64 in scanner units: signal equation × bias × e^{iφ} × receiver gain."""
    mag = render(slab.fractions, subj.table, protocol) * slab.bias
    gain = np.float32(10 ** rng.uniform(-4.5, -3.5))
    return (mag * gain * np.exp(1j * slab.phase)).astype(np.complex64)


def slice_records(header, n_slices: int, labels) -> list:
    """Per-slice MetadataRecord from the header (recon_core.metadata), pathology from the simulator's labels."""
    base = record_from_header(header, 0, overrides={"pathology": list(labels)})
    return [base.replace(slice=s) for s in range(n_slices)]


# ------------------------------------------------------------------------------------------ file I/O
def write_scan(path, scan: SimulatedScan) -> str:
    """Write an ISMRMRD .h5 (group `dataset`: xml header, acquisitions, image group `reference`) with the
    one raw-file writer (`recon_core.raw.writer.write_raw`: atomic, no partial file on error)."""
    return write_raw(path, scan.xml, scan.acquisitions, {"reference": reference_images(scan)}, what="output")


def reference_images(scan: SimulatedScan) -> list:
    """The ground truth as complex ISMRMRD images (one per slice, reconSpace, IMTYPE_COMPLEX)."""
    enc = scan.header.encoding[0]
    fov = enc.reconSpace.fieldOfView_mm
    first_acq = {}
    for a in scan.acquisitions:
        if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
            first_acq.setdefault(int(a.idx.slice), a)
    out = []
    for s in range(scan.reference.shape[0]):
        img = ismrmrd.Image.from_array(np.ascontiguousarray(scan.reference[s][None]), acquisition=first_acq[s],
                                       transpose=False)
        img.image_type = ismrmrd.IMTYPE_COMPLEX
        img.image_index = s
        img.image_series_index = 0
        img.slice = s
        img.field_of_view[:] = (float(fov.x), float(fov.y), float(fov.z))
        out.append(img)
    return out


@dataclass
class RawScan:
    """A raw ISMRMRD file read back (see `read_scan`). Shapes as in SimulatedScan; `kspace` holds zeros
    at unsampled lines; `calib` (S, C, n_acs, nx) for separate-mode calibration lines or None."""

    header: object
    kspace: np.ndarray
    mask: np.ndarray
    reference: np.ndarray | None
    noise: np.ndarray | None
    calib: np.ndarray | None
    acs_lines: np.ndarray


def read_scan(path) -> RawScan:
    """Read a Cartesian ISMRMRD raw file (as written by `write_scan`) into arrays (no prewhitening).

    Readout oversampling is removed (encodedSpace x → reconSpace x). Missing file → InputError.
    """

    ds = open_dataset(path)   # the raw layer's reader and the one header parser
    try:
        header = parse_header(ds.read_xml_header())
        n = ds.number_of_acquisitions()
        acqs = [ds.read_acquisition(i) for i in range(n)]
        images = image_group(ds, "reference")
        ref = np.stack([im.data[0, 0] for im in images]) if images else None
    finally:
        ds.close()
    enc = header.encoding[0]
    nx, ny = enc.reconSpace.matrixSize.x, enc.encodedSpace.matrixSize.y
    S = enc.encodingLimits.slice.maximum + 1 if enc.encodingLimits.slice is not None else 1
    data = [a for a in acqs if not a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    noise = [a.data for a in acqs if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    C = data[0].active_channels
    nos = data[0].number_of_samples
    k = np.zeros((S, C, ny, nos), dtype=np.complex64)
    mask = np.zeros((ny,), dtype=bool)
    cal_rows = {}
    for a in data:
        s, ky = int(a.idx.slice), int(a.idx.kspace_encode_step_1)
        if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION):
            cal_rows.setdefault(s, []).append((ky, a.data.copy()))
            continue
        k[s, :, ky] = a.data
        mask[ky] = True
    k = acqmod.remove_oversampling(k, nx)
    calib = None
    acs = np.array(sorted({ky for v in cal_rows.values() for ky, _ in v}), dtype=int)
    if cal_rows:
        calib = np.stack([acqmod.remove_oversampling(np.stack([d for _, d in sorted(cal_rows[s], key=lambda t: t[0])],
                                                               axis=1), nx) for s in sorted(cal_rows)])
    else:
        acs = np.array(sorted({int(a.idx.kspace_encode_step_1) for a in data
                               if a.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)}), dtype=int)
    return RawScan(header=header, kspace=k, mask=np.repeat(mask[:, None], nx, axis=1), reference=ref,
                   noise=np.concatenate(noise, axis=1) if noise else None, calib=calib, acs_lines=acs)
