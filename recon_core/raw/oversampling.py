"""Readout oversampling removal (centred image-domain crop of the readout axis)."""

from __future__ import annotations

import numpy as np


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
