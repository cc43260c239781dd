"""GRAPPA (Griswold et al., MRM 2002): what the scanner itself would show, as a reconstruction method.

The missing k-space of every coil is synthesised from acquired neighbours with kernels fitted on the
fully sampled calibration (ACS) block, by `pygrappa.mdgrappa` (one kernel per sampling pattern, so any
Cartesian pattern works: equispaced, random 1-D, 2-D). The coil images are then combined with the same
coil maps every other method gets (x = Σ_c S_c* x_c over unit-norm maps: the intensity convention of
SENSE and DDS; sum-of-squares would differ by the map norm outside the support).

Defaults (kernel 7 × 9 (ky × kx), Tikhonov λ 0.1 relative to the calibration matrix's norm) were chosen
on the simulator's *validation* split (8 slices, the evaluation's equispaced masks, ≈ 10 ACS lines), mean
PSNR against SENSE with the same maps: ×2 36.27 vs 36.18, ×3 27.98 vs 26.99, ×4 24.77 vs 24.94
(5 × 7: 35.16 / 28.01 / 25.00, below SENSE at ×2 where SENSE is well posed; smaller λ was worse at
every factor). Results on the test split: results/grappa/.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..coils import calib_region
from ..errors import InputError
from ..fft import ifft2c_np
from .spec import BaselineSpec

KERNEL = (7, 9)
LAMBDA = 0.1


def calibration_block(ksp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(C, cy, cx) the largest centred fully sampled block of ksp (C, ny, nx) under mask (ny, nx)."""
    cy, cx = calib_region(mask)
    ny, nx = mask.shape
    if cy < 3 or cx < 3:
        raise InputError(f"GRAPPA needs a fully sampled calibration block; the sampled k-space centre is {cy}×{cx}")
    y0, x0 = ny // 2 - cy // 2, nx // 2 - cx // 2
    return ksp[:, y0:y0 + cy, x0:x0 + cx]


def _odd_at_most(n: int) -> int:
    return n if n % 2 else n - 1


def grappa_kspace(ksp: np.ndarray, mask: np.ndarray, kernel=KERNEL, lamda: float = LAMBDA) -> np.ndarray:
    """Fill the un-acquired k-space of one slice: ksp (C, ny, nx) complex (zeros where not sampled),
    mask (ny, nx) bool → (C, ny, nx) complex64 (acquired samples kept as measured)."""
    ksp = np.asarray(ksp)
    mask = np.asarray(mask, bool)
    if ksp.ndim != 3 or mask.shape != ksp.shape[-2:]:
        raise InputError(f"GRAPPA: expected k-space (C, ny, nx) and mask (ny, nx), got {ksp.shape} and {mask.shape}")
    if not np.isfinite(lamda) or lamda < 0:
        raise InputError(f"GRAPPA: lambda must be ≥ 0, got {lamda}")
    k = (ksp * mask[None]).astype(np.complex128)
    calib = calibration_block(k, mask)
    # the kernel must fit in the calibration block (odd sides, at most the block's)
    ky, kx = (min(int(kernel[0]), _odd_at_most(calib.shape[1])), min(int(kernel[1]), _odd_at_most(calib.shape[2])))
    from pygrappa import mdgrappa  # heavy (≈1 s): loaded only when GRAPPA runs

    with warnings.catch_warnings():  # pygrappa divides 0/0 for patterns without neighbours (they stay 0)
        warnings.simplefilter("ignore", RuntimeWarning)
        out = mdgrappa(k, calib=calib, kernel_size=(ky, kx), coil_axis=0, lamda=float(lamda))
    out = np.nan_to_num(np.asarray(out))
    out[:, mask] = k[:, mask]
    return out.astype(np.complex64)


def grappa_image(ksp: np.ndarray, maps: np.ndarray, mask: np.ndarray, kernel=KERNEL, lamda: float = LAMBDA) -> np.ndarray:
    """GRAPPA then coil combination with `maps`: ksp, maps (C, ny, nx) → image (ny, nx) complex64."""
    coils = ifft2c_np(grappa_kspace(ksp, mask, kernel, lamda))
    return (np.conj(maps) * coils).sum(axis=0).astype(np.complex64)


def solve(k: np.ndarray, s: np.ndarray, mask: np.ndarray, lamda: float, n_iter=None) -> np.ndarray:
    """GRAPPA per slice: k, s (B, C, ny, nx), mask (ny, nx) or (B, ny, nx) → (B, ny, nx) complex64."""
    if k.ndim != 4 or s.shape != k.shape:
        raise InputError(f"k-space (B, C, ny, nx) and maps of the same shape expected, got {k.shape} and {s.shape}")
    masks = np.broadcast_to(mask.astype(bool), (k.shape[0],) + k.shape[-2:])
    return np.stack([grappa_image(k[b], s[b], masks[b], lamda=lamda) for b in range(k.shape[0])])


SPECS = (BaselineSpec("grappa", solve, backend="numpy", lamda=LAMBDA, regularised=True,
                      real_grid=(0.01, 0.1), summary="GRAPPA (pygrappa kernels 7×9 from the ACS block; λ = the "
                      "kernel fit's relative Tikhonov weight), coil images combined with the same maps"),)
