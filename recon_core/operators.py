"""Multi-coil SENSE forward model.

A(x)  = M ⊙ F(S ⊙ x)          x: (B, ny, nx) → y: (B, C, ny, nx)
Aᴴ(y) = Σ_c conj(S_c) ⊙ F⁻¹(M ⊙ y_c)
with F the centred orthonormal FFT, S the coil maps (B, C, ny, nx), M the sampling mask.
"""

from __future__ import annotations

import torch

from .errors import InputError
from .fft import fft2c, ifft2c
from .validate import as_tensor, check_ndim, mask_tensor


class SenseOp:
    """SENSE operator for a batch of slices; all tensors complex64 on one device.

    maps: (B, C, ny, nx) complex; mask: (ny, nx) or (B, ny, nx) bool/float (1 = sampled).
    """

    def __init__(self, maps, mask, device=None):
        self.maps = as_tensor(maps, "maps", device=device)
        check_ndim(self.maps, 4, "maps", "(B, C, ny, nx)")
        self.mask = mask_tensor(mask, self.maps.shape[-2:], device=self.maps.device)
        if self.mask.shape[0] not in (1, self.maps.shape[0]):
            raise InputError(f"mask: batch {self.mask.shape[0]} does not match maps batch {self.maps.shape[0]}")

    @property
    def shape(self):
        return tuple(self.maps.shape)

    def _check_image(self, x):
        B, _, ny, nx = self.maps.shape
        if tuple(x.shape) != (B, ny, nx):
            raise InputError(f"image: expected shape {(B, ny, nx)}, got {tuple(x.shape)}")

    def _check_kspace(self, y):
        if tuple(y.shape) != tuple(self.maps.shape):
            raise InputError(f"k-space: expected shape {tuple(self.maps.shape)} (B, C, ny, nx) matching the maps, "
                             f"got {tuple(y.shape)}")

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ny, nx) → (B, C, ny, nx)."""
        self._check_image(x)
        return self.mask * fft2c(self.maps * x[:, None])

    def AH(self, y: torch.Tensor) -> torch.Tensor:
        """(B, C, ny, nx) → (B, ny, nx)."""
        self._check_kspace(y)
        return (self.maps.conj() * ifft2c(self.mask * y)).sum(dim=1)

    def AHA(self, x: torch.Tensor) -> torch.Tensor:
        """Normal operator (B, ny, nx) → (B, ny, nx); the mask is applied once (M² = M for binary M)."""
        k = self.mask * fft2c(self.maps * x[:, None])
        return (self.maps.conj() * ifft2c(k)).sum(dim=1)
