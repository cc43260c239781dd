"""Centred orthonormal FFTs (fastMRI `fft2c` convention): 2-D over the last two axes, 1-D over one axis.

k-space = fftshift(fft2(ifftshift(image)), norm="ortho"); both directions preserve the L2 norm. The 2-D transform
is the 1-D one along y then along x (`fftc(fftc(x, -2), -1)`).
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


def fftc(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Centred orthonormal 1-D FFT of complex x along `dim` (fastest along the contiguous last axis)."""
    x = torch.fft.ifftshift(x, dim=dim)
    x = torch.fft.fft(x, dim=dim, norm="ortho")
    return torch.fft.fftshift(x, dim=dim)


def ifftc(k: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Inverse of `fftc` along `dim`."""
    k = torch.fft.ifftshift(k, dim=dim)
    k = torch.fft.ifft(k, dim=dim, norm="ortho")
    return torch.fft.fftshift(k, dim=dim)


def fft2c_np(x: np.ndarray) -> np.ndarray:
    """numpy version of `fft2c` (keeps complex64 for complex64 input)."""
    out = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_DIMS), axes=_DIMS, norm="ortho"), axes=_DIMS)
    return out.astype(np.complex64) if x.dtype in (np.complex64, np.float32) else out


def ifft2c_np(k: np.ndarray) -> np.ndarray:
    """numpy version of `ifft2c`."""
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=_DIMS), axes=_DIMS, norm="ortho"), axes=_DIMS)
    return out.astype(np.complex64) if k.dtype in (np.complex64, np.float32) else out
