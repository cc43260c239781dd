"""Partial Fourier for the classical methods (issue 23, item 4): phase-constrained POCS in the SENSE model.

A partial-Fourier acquisition (6/8, 7/8 in phase, an asymmetric echo in readout) leaves one side of k-space
unacquired; a real-valued image times a smooth phase has conjugate-symmetric k-space, so the missing side
follows from the acquired one. POCS (Haacke et al. 1991), here with the coil maps:

    φ = angle of the low-resolution image from the symmetric, Hann-windowed centre of the data
    repeat: x ← |x| e^{iφ}                     (the phase constraint)
            x ← x + Aᴴ(y − A x)                 (back onto the measured data; A = M F S, ‖AᴴA‖ ≤ 1)

starting from the classical reconstruction. DDS needs none of this: its prior fills the missing side under
the data consistency.
"""

from __future__ import annotations

import numpy as np
import torch

from .fft import ifft2c
from .operators import SenseOp

N_ITER = 10


def reflect(mask: np.ndarray) -> np.ndarray:
    """m'[k] = m[−k] on the centred FFT grid (index i ↔ (n − i) mod n on each axis)."""
    m = np.asarray(mask)
    return np.roll(np.roll(m[::-1, ::-1], 1, axis=0), 1, axis=1)


def pocs(image: np.ndarray, ksp: np.ndarray, maps: np.ndarray, mask: np.ndarray, n_iter: int = N_ITER) -> np.ndarray:
    """Phase-constrained completion of one slice: image (ny, nx) complex, ksp/maps (C, ny, nx), mask (ny, nx)
    bool (acquired samples). Returns the image (ny, nx) complex64."""
    m = np.asarray(mask, bool)
    sym = m & reflect(m)
    ny, nx = m.shape
    win = np.outer(np.hanning(ny), np.hanning(nx)).astype(np.float32)
    k = torch.from_numpy(np.asarray(ksp, np.complex64))[None]
    s = torch.from_numpy(np.asarray(maps, np.complex64))[None]
    low = (s.conj() * ifft2c(k * torch.from_numpy(sym * win))).sum(1)
    ph = torch.exp(1j * torch.angle(low))
    op = SenseOp(s, torch.from_numpy(m))
    y = op.mask * k
    x = torch.from_numpy(np.asarray(image, np.complex64))[None]
    for _ in range(int(n_iter)):
        x = x.abs() * ph
        x = x + op.AH(y - op.A(x))
    return x[0].numpy().astype(np.complex64)
