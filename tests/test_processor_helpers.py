"""Helpers for the stream-processor tests: raw ISMRMRD streams built from known coil images.

Variants: readout oversampling (2× encodedSpace), correlated coil noise with noise readouts,
calibration lines flagged (CALIBRATION or CALIBRATION_AND_IMAGING) or not, repeated lines (averages).
The reference image is the object itself (maps normalised to Σ|S|² = 1 inside the object support).
"""

from __future__ import annotations

import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np


def fft_c(x, axes):
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


def make_header(nx, ny, n_slices=1, enc_nx=None, fov=(220.0, 220.0, 5.0), protocol="AX T2 brain",
                tr=4000.0, te=100.0, flip=150.0, n_coils=8, accel=4, body_part="BRAIN", field=3.0) -> str:
    """ISMRMRD XML header of a 2-D Cartesian multi-slice scan."""
    enc_nx = enc_nx or nx
    h = xsd.ismrmrdHeader(experimentalConditions=xsd.experimentalConditionsType(
        H1resonanceFrequency_Hz=int(42.58e6 * field)))
    h.measurementInformation = xsd.measurementInformationType(protocolName=protocol, patientPosition="HFS")
    h.studyInformation = xsd.studyInformationType(bodyPartExamined=body_part)
    h.acquisitionSystemInformation = xsd.acquisitionSystemInformationType(systemFieldStrength_T=field,
                                                                          receiverChannels=n_coils)
    lim = xsd.encodingLimitsType()
    lim.kspace_encoding_step_1 = xsd.limitType(minimum=0, maximum=ny - 1, center=ny // 2)
    lim.kspace_encoding_step_2 = xsd.limitType(minimum=0, maximum=0, center=0)
    lim.slice = xsd.limitType(minimum=0, maximum=n_slices - 1, center=0)
    enc = xsd.encodingType(
        trajectory=xsd.trajectoryType("cartesian"),
        encodedSpace=xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=enc_nx, y=ny, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=fov[0] * enc_nx / nx, y=fov[1], z=fov[2])),
        reconSpace=xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1),
                                         fieldOfView_mm=xsd.fieldOfViewMm(x=fov[0], y=fov[1], z=fov[2])),
        encodingLimits=lim)
    enc.parallelImaging = xsd.parallelImagingType(
        accelerationFactor=xsd.accelerationFactorType(kspace_encoding_step_1=accel, kspace_encoding_step_2=1))
    h.encoding.append(enc)
    h.sequenceParameters = xsd.sequenceParametersType(TR=[tr], TE=[te], flipAngle_deg=[flip],
                                                      sequence_type="TurboSpinEcho")
    return xsd.ToXML(h)


def phantom_scan(n_slices=2, ny=48, nx=48, n_coils=6, seed=0):
    """(objects (S, ny, nx) complex64, maps (C, ny, nx) complex64 with Σ|S|² = 1)."""
    import sigpy.mri

    rng = np.random.default_rng(seed)
    objs = []
    iy, ix = (ny * 3 // 4) // 2 * 2, (nx * 3 // 4) // 2 * 2  # object in the central ¾ of the FOV
    small = np.abs(np.asarray(__import__("sigpy").shepp_logan((iy, ix)), dtype=np.complex64))
    base = np.zeros((ny, nx), np.complex64)
    base[(ny - iy) // 2:(ny - iy) // 2 + iy, (nx - ix) // 2:(nx - ix) // 2 + ix] = small
    for s in range(n_slices):
        smooth = np.exp(1j * 0.3 * np.linspace(-1, 1, nx))[None, :] * (1 + 0.1 * s)
        objs.append((np.roll(base, s, axis=0) * smooth).astype(np.complex64))
    maps = np.asarray(sigpy.mri.birdcage_maps((n_coils, ny, nx), r=1.2), dtype=np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    del rng
    return np.stack(objs), maps


def line_mask(ny, accel=4, acs=12, seed=0):
    """(ny,) bool: every accel-th line plus a centred block of `acs` lines, with random jitter."""
    rng = np.random.default_rng(seed)
    m = np.zeros(ny, bool)
    m[rng.integers(accel):: accel] = True
    m[ny // 2 - acs // 2: ny // 2 - acs // 2 + acs] = True
    return m


def build_stream(objects, maps, rows, *, oversample=1, noise_std=0.0, noise_cov=None, n_noise=0,
                 calib_rows=None, calib_mode=None, averages=1, seed=0, positions=None):
    """Raw acquisitions (list of ismrmrd.Acquisition) for all slices.

    objects (S, ny, nx); maps (C, ny, nx); rows (ny,) bool imaging lines; oversample 1 or 2 (readout);
    noise_cov (C, C) coil noise covariance (times noise_std²); n_noise noise readouts first;
    calib_rows (ny,) bool lines flagged calibration; calib_mode None|"only"|"and_imaging"
    ("only": those lines sent separately as CALIBRATION, imaging lines keep `rows`);
    averages: each imaging line sent this many times with fresh noise.
    """
    rng = np.random.default_rng(seed)
    S, ny, nx = objects.shape
    C = maps.shape[0]
    L = np.linalg.cholesky(noise_cov) if noise_cov is not None else np.eye(C)
    enc_nx = nx * oversample

    def noise(shape):
        z = (rng.standard_normal((C,) + shape) + 1j * rng.standard_normal((C,) + shape)) / np.sqrt(2)
        return noise_std * np.tensordot(L, z, axes=(1, 0))

    acqs = []
    scan = 0

    def new_acq(data, e1, s, flags):
        nonlocal scan
        a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data.astype(np.complex64)))
        a.idx.kspace_encode_step_1 = int(e1)
        a.idx.slice = int(s)
        a.center_sample = enc_nx // 2
        a.sample_time_us = 5.0
        a.scan_counter = scan
        a.available_channels = C
        pos = positions[s] if positions is not None else (0.0, 0.0, 5.0 * s)
        a.position[:] = pos
        a.read_dir[:] = (1.0, 0.0, 0.0)
        a.phase_dir[:] = (0.0, 1.0, 0.0)
        a.slice_dir[:] = (0.0, 0.0, 1.0)
        for f in flags:
            a.set_flag(f)
        scan += 1
        return a

    for _ in range(n_noise):
        acqs.append(new_acq(noise((enc_nx,)), 0, 0, [ismrmrd.ACQ_IS_NOISE_MEASUREMENT]))
    for s in range(S):
        coil_img = maps * objects[s][None]
        if oversample > 1:
            pad = (enc_nx - nx) // 2
            coil_img = np.pad(coil_img, ((0, 0), (0, 0), (pad, enc_nx - nx - pad)))
        ksp = fft_c(coil_img, axes=(-2, -1))
        lines = []  # (row, flags)
        for r in range(ny):
            is_cal = calib_rows is not None and calib_rows[r] and calib_mode is not None
            if calib_mode == "only":
                if is_cal:
                    lines.append((r, [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION], 1))
                if rows[r]:
                    lines.append((r, [], averages))
            elif rows[r] or is_cal:
                flags = [ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING] if is_cal else []
                lines.append((r, flags, averages))
        for i, (r, flags, n_avg) in enumerate(lines):
            for a_i in range(n_avg):
                f = list(flags)
                if i == 0 and a_i == 0:
                    f.append(ismrmrd.ACQ_FIRST_IN_SLICE)
                if i == len(lines) - 1 and a_i == n_avg - 1:
                    f.append(ismrmrd.ACQ_LAST_IN_SLICE)
                acq = new_acq(ksp[:, r] + noise((enc_nx,)), r, s, f)
                acq.idx.average = a_i
                acqs.append(acq)
    return acqs


def write_raw(path, header_xml, acqs, group="dataset"):
    """Write a standard ISMRMRD file (group `group`)."""
    ds = ismrmrd.Dataset(str(path), group, create_if_needed=True)
    ds.write_xml_header(header_xml)
    for a in acqs:
        ds.append_acquisition(a)
    ds.close()


def psnr(ref, rec):
    ref, rec = np.abs(ref), np.abs(rec)
    return 10 * np.log10(ref.max() ** 2 / np.mean((ref - rec) ** 2))


def test_error_map_rescaled_by_the_holdout_ratio_of_the_slice_or_the_series():
    """The stream processor multiplies a slice's error map by ErrorModel.holdout_scale of its own self-validation's
    hold-out ratio, or — a slice reusing the series' choice — of the median ratio of the validating slices, and says
    so in the error estimate's description; a prior without the hold-out fit leaves the map as it is."""
    from types import SimpleNamespace

    from gadget.processor import StreamProcessor
    from recon_core.uncertainty import ErrorModel

    em = ErrorModel(factors={"2": {"4": 1.5}}, holdout_sbar={"4": 2.0}, holdout_alpha=1.0, holdout_fitted_on="val")
    proc = SimpleNamespace(_sv_ratios=[3.0, 5.0])
    errs, uncs = [np.ones((4, 4), np.float32)], [{"error_estimate": "pooled"}]
    StreamProcessor._holdout_rescale(proc, 0, errs, uncs, {"self_validation": {"holdout_error_ratio": 6.0}}, None,
                                     em, 4.0)
    assert np.allclose(errs[0], 3.0) and uncs[0]["holdout_scale"] == 3.0
    assert "× 3.00 from this slice's held-out k-space" in uncs[0]["error_estimate"]
    errs, uncs = [np.ones((4, 4), np.float32)], [{"error_estimate": "pooled"}]
    StreamProcessor._holdout_rescale(proc, 0, errs, uncs, {}, {"chosen": "dds", "reused": "…"}, em, 4.0)
    assert np.allclose(errs[0], 2.0) and "the series' first slices'" in uncs[0]["error_estimate"]   # median 4 / 2
    errs, uncs = [np.ones((4, 4), np.float32)], [{"error_estimate": "pooled"}]
    StreamProcessor._holdout_rescale(proc, 0, errs, uncs, {"self_validation": {"holdout_error_ratio": 6.0}}, None,
                                     ErrorModel(factors={"2": {"4": 1.5}}), 4.0)
    assert np.allclose(errs[0], 1.0) and uncs[0] == {"error_estimate": "pooled"}
