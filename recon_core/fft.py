"""Centred orthonormal 2-D FFTs over the last two axes (fastMRI `fft2c` convention).

k-space = fftshift(fft2(ifftshift(image)), norm="ortho"); both directions preserve the L2 norm. (The 1-D centred
transform of `recon_core.operators.SenseOp.AHA` is written there with its shifts folded into maps and mask.)
"""

from __future__ import annotations

import numpy as np
import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Image (..., ny, nx) complex → k-space (..., ny, nx), centred, orthonormal."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """k-space (..., ny, nx) complex → image (..., ny, nx), centred, orthonormal."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    k = torch.fft.ifft2(k, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(k, dim=_DIMS)


def fft2c_np(x: np.ndarray) -> np.ndarray:
    """numpy version of `fft2c` (keeps complex64 for complex64 input)."""
    out = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_DIMS), axes=_DIMS, norm="ortho"), axes=_DIMS)
    return out.astype(np.complex64) if x.dtype in (np.complex64, np.float32) else out


def ifft2c_np(k: np.ndarray) -> np.ndarray:
    """numpy version of `ifft2c`."""
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=_DIMS), axes=_DIMS, norm="ortho"), axes=_DIMS)
    return out.astype(np.complex64) if k.dtype in (np.complex64, np.float32) else out
