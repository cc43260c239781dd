"""Scanner-shaped acquisitions (issue 23, item 7): the simulator's scan edited the way clinical protocols send
data, each with the outcome the reconstruction must give.

`cases()` → list of `AcqCase`; `write_set(directory)` writes each as an ISMRMRD raw file (the one raw writer)
plus `expected.json`. Every case is small (64 lines, 4–32 coils) so the test suite runs them all with the
classical methods (`tests/test_acquisition_set.py`); the evaluation can replay the files with DDS.

Expected outcomes: `refuse` — one line naming the counter; else the image matrix (`shape`, the reconSpace one)
and a PSNR floor against the simulator's truth on that grid for the methods listed (`psnr_min`), plus meta
keys the images must carry. A case the product cannot yet reconstruct says so (`known_failure`): the test
expects the failure (strict xfail) so that a fix shows up.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field

import ismrmrd
import ismrmrd.xsd
import numpy as np

from recon_core.fft import fft2c_np, ifft2c_np
from recon_core.raw.writer import write_raw

from .acquisition import correlated_noise, oversampled_kspace
from .scan import simulate_scan

M = 64


@dataclass
class AcqCase:
    name: str
    header: object
    acquisitions: list
    truth: np.ndarray | None                 # (ny, nx) magnitude on the reconSpace grid, or None (refusals)
    expect: dict = field(default_factory=dict)


def _scan(**kw):

    args = dict(contrast="T2", n_slices=1, matrix=M, coils=4, accel=1, seed=21, snr=40.0, acs_lines=16)
    args.update(kw)
    return simulate_scan(**args)


def _copy(a):

    return ismrmrd.Acquisition(a.getHead(), a.data.copy())


def _is_noise(a) -> bool:

    return a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)


def _lines(acqs, keep) -> list:
    """Copies of the noise readouts and of the imaging lines whose phase line passes `keep`, the last one
    closing the slice."""
    out = [_copy(a) for a in acqs if _is_noise(a) or keep(int(a.idx.kspace_encode_step_1))]
    out[-1].set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    return out


def _central_lines(sc, n: int, recon_too: bool) -> tuple:
    """(header, acquisitions) keeping the central `n` of the scan's lines, renumbered 0..n−1 around centre n/2,
    over the same FOV; `recon_too`: the reconSpace matrix becomes n rows as well (else it stays)."""
    off = (sc.header.encoding[0].encodedSpace.matrixSize.y - n) // 2
    h = copy.deepcopy(sc.header)
    enc = h.encoding[0]
    for space in (enc.encodedSpace, enc.reconSpace) if recon_too else (enc.encodedSpace,):
        space.matrixSize.y = n
    enc.encodingLimits.kspace_encoding_step_1.maximum = n - 1
    enc.encodingLimits.kspace_encoding_step_1.center = n // 2
    acqs = _lines(sc.acquisitions, lambda ky: off <= ky < off + n)
    for a in acqs:
        if not _is_noise(a):
            a.idx.kspace_encode_step_1 = int(a.idx.kspace_encode_step_1) - off
    return h, acqs


def reduced_phase_resolution() -> AcqCase:
    """48 of 64 phase lines over the same FOV (75 % phase resolution): a 64² image, square pixels."""
    sc = _scan()
    h, acqs = _central_lines(sc, 48, recon_too=False)
    k = fft2c_np(sc.reference[0])
    k[:8], k[56:] = 0, 0
    truth = np.abs(ifft2c_np(k)) * np.sqrt(64 / 48)   # orthonormal FFTs: 48 lines read as 48 are √(64/48) brighter
    return AcqCase("reduced_phase_resolution", h, acqs, truth,
                   {"shape": [M, M], "psnr_min": {"sense": 35.0, "grappa": 35.0}})


def odd_matrix() -> AcqCase:
    """A 60-line phase matrix over the same FOV (not a multiple of the UNet's 8): every method runs at 60 × 64."""
    sc = _scan()
    h, acqs = _central_lines(sc, 60, recon_too=True)              # same FOV, 60 lines: 4 mm phase pixels
    truth = np.abs(ifft2c_np(fft2c_np(sc.reference[0])[2:62]))   # the same 60 lines, orthonormal on 60
    return AcqCase("odd_matrix", h, acqs, truth, {"shape": [60, M], "psnr_min": {"sense": 30.0}})


def partial_fourier_phase() -> AcqCase:
    """6/8 partial Fourier in phase: the missing lines by POCS (classical) — far closer than zero-filled."""
    sc = _scan()
    acqs = _lines(sc.acquisitions, lambda ky: ky >= 16)
    return AcqCase("partial_fourier_phase", sc.header, acqs, np.abs(sc.reference[0]),
                   {"shape": [M, M], "psnr_min": {"sense": 42.0, "zerofilled": 30.0},
                    "meta": {"partial_fourier": "phase 0.75"}})


def drop_first_samples(a, cut: int):
    """A copy of acquisition `a` without its first `cut` readout samples (an asymmetric echo), centre moved."""
    nx = a.data.shape[1]
    b = ismrmrd.Acquisition.from_array(np.ascontiguousarray(a.data[:, cut:]))
    b.setHead(a.getHead())
    b.resize(number_of_samples=nx - cut, active_channels=a.data.shape[0])
    b.data[:] = a.data[:, cut:]
    b.center_sample = a.center_sample - cut
    return b


def asymmetric_echo() -> AcqCase:
    """80 % readout (asymmetric echo): the unacquired samples masked and completed by POCS."""
    sc = _scan()
    acqs = []
    for a in sc.acquisitions:
        if _is_noise(a):
            acqs.append(_copy(a))
            continue
        acqs.append(drop_first_samples(a, a.data.shape[1] // 5))
    return AcqCase("asymmetric_echo", sc.header, acqs, np.abs(sc.reference[0]),
                   {"shape": [M, M], "psnr_min": {"sense": 38.0}, "meta": {"partial_fourier": "readout"}})


def outer_averages() -> AcqCase:
    """Two averages as outer passes, each closing the slice: one image, both passes combined."""
    sc = _scan(accel=2, snr=25.0)
    rng = np.random.default_rng(5)
    k = oversampled_kspace(sc.maps[0] * sc.reference[0][None], 2)
    noise = [_copy(a) for a in sc.acquisitions if _is_noise(a)]
    passes = []
    for avg in (0, 1):
        for a in sc.acquisitions:
            if _is_noise(a):
                continue
            b = _copy(a)
            n = correlated_noise((a.data.shape[0], 1, a.data.shape[1]), sc.noise_cov, sc.sigma, rng)[:, 0]
            b.data[:] = k[:, int(a.idx.kspace_encode_step_1)] + n
            b.idx.average = avg
            passes.append(b)
    h = copy.deepcopy(sc.header)
    h.encoding[0].encodingLimits.average.maximum = 1
    return AcqCase("outer_averages", h, noise + passes, np.abs(sc.reference[0]),
                   {"shape": [M, M], "images": 1, "psnr_min": {"sense": 28.0, "grappa": 29.0}})


def partition_counter() -> AcqCase:
    """kspace_encode_step_2 = 1 under a 2-D header (encodedSpace z = 1): refused, naming the counter."""
    sc = _scan()
    acqs = [_copy(a) for a in sc.acquisitions]
    for a in acqs[len(acqs) // 2:]:
        if not _is_noise(a):
            a.idx.kspace_encode_step_2 = 1
    return AcqCase("partition_counter", sc.header, acqs, None, {"refuse": "kspace_encode_step_2 = 1"})


def many_coils() -> AcqCase:
    """32 channels: SVD-compressed to virtual coils (meta says how many), image as good as uncompressed."""
    sc = _scan(coils=32, accel=2, snr=35.0)
    return AcqCase("many_coils", sc.header, [_copy(a) for a in sc.acquisitions], np.abs(sc.reference[0]),
                   {"shape": [M, M], "psnr_min": {"sense": 28.0}, "meta": {"coil_compression": "32 → "}})


def rectangular_fov_fold() -> AcqCase:
    """A 48-row phase FOV (3/4 of 64) that the head overlaps: the head folds in, as on a scanner without phase
    oversampling. Where two tissues overlap, both have ESPIRiT eigenvalue ≈ 1; the map must be the exact top
    eigenvector (issue 23 item 1: 12 power iterations left a mixture, SENSE 29.4 dB; exact 50.1)."""
    sc = _scan(accel=1)
    coil = sc.maps[0] * sc.reference[0][None]                    # (C, 64, nx) on the 64-row grid
    fold = np.zeros((coil.shape[0], 48, coil.shape[2]), np.complex64)
    for r in range(64):
        fold[:, (r - 8) % 48] += coil[:, r]
    kf = oversampled_kspace(fold, 2)                              # (C, 48, 2 nx)
    h = copy.deepcopy(sc.header)
    enc = h.encoding[0]
    for space in (enc.encodedSpace, enc.reconSpace):
        space.matrixSize.y = 48
        space.fieldOfView_mm.y = space.fieldOfView_mm.y * 48 / 64
    enc.encodingLimits.kspace_encoding_step_1.maximum = 47
    enc.encodingLimits.kspace_encoding_step_1.center = 24
    acqs = _lines(sc.acquisitions, lambda ky: ky < 48)
    for a in acqs:
        if not _is_noise(a):
            a.data[:] = kf[:, int(a.idx.kspace_encode_step_1)]
    undersampled = [a for a in acqs if _is_noise(a) or int(a.idx.kspace_encode_step_1) % 2 == 0
                    or 16 <= int(a.idx.kspace_encode_step_1) < 32]

    for a in undersampled:   # the ACS is the fully sampled centre here (the 64-line scan's flags do not apply)
        a.clear_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        a.clear_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    undersampled[-1].set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
    truth = np.sqrt((np.abs(fold) ** 2).sum(0))       # what the fully sampled 180 mm scan shows (RSS)
    return AcqCase("rectangular_fov_fold", h, undersampled, truth,
                   {"shape": [48, M], "psnr_min": {"grappa": 33.0, "sense": 40.0}})


def cases() -> list[AcqCase]:
    return [reduced_phase_resolution(), odd_matrix(), partial_fourier_phase(), asymmetric_echo(), outer_averages(),
            partition_counter(), many_coils(), rectangular_fov_fold()]


def write_set(directory) -> list[str]:
    """Each case as DIR/<name>.h5 (ISMRMRD raw) + DIR/expected.json ({name: expect}); truths as DIR/<name>_truth.npy."""
    os.makedirs(directory, exist_ok=True)
    out, expected = [], {}
    for c in cases():
        path = os.path.join(directory, f"{c.name}.h5")
        write_raw(path, ismrmrd.xsd.ToXML(c.header), c.acquisitions, {}, what="output")
        if c.truth is not None:
            np.save(os.path.join(directory, f"{c.name}_truth.npy"), c.truth.astype(np.float32))
        expected[c.name] = c.expect
        out.append(path)
    with open(os.path.join(directory, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=1)
    return out
