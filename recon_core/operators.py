"""Multi-coil SENSE forward model.

A(x)  = M ⊙ F(S ⊙ x)          x: (B, ny, nx) → y: (B, C, ny, nx)
Aᴴ(y) = Σ_c conj(S_c) ⊙ F⁻¹(M ⊙ y_c)
with F the centred orthonormal FFT, S the coil maps (B, C, ny, nx), M the sampling mask.

AᴴA for a mask that varies along one axis only (every Cartesian 2-D scan: whole readouts, phase lines
skipped) needs only the 1-D FFT along that axis: with M = M_y ⊗ I_x, F_xᴴ F_yᴴ M F_y F_x = F_yᴴ M_y F_y, the
readout FFT cancels. `SenseOp.AHA` uses that (on the contiguous axis: 256² × 11 coils 4.4 vs 7–16 ms per
application here), and the 2-D FFTs otherwise (2-D masks, asymmetric echoes). Maps and mask are stored
ifftshift-ed along that axis, so the centring shifts act on one image in and out instead of the C-coil stack, and
conj(S) is stored once: a DDS data-consistency step at 256² × 11 coils 65–93 ms instead of 102–166 (session 15).
"""

from __future__ import annotations

import functools

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
        self.axis = sampled_axis(self.mask)
        if self.axis is not None:
            if self.axis == -2:     # phase lines along y: keep y last (contiguous) for the 1-D FFT
                maps_1d, mask_1d = self.maps.transpose(-1, -2), self.mask[..., :1].transpose(-1, -2)
            else:
                maps_1d, mask_1d = self.maps, self.mask[..., :1, :]
            # maps (B, C, ·, n) and mask (B|1, 1, 1, n) stored ifftshift-ed along the FFT axis: the centring
            # shifts of the centred 1-D FFTs then reduce to one shift of the image in and one out (see AHA)
            self._maps_1d = torch.fft.ifftshift(maps_1d, dim=-1).contiguous()
            self._maps_1d_conj = self._maps_1d.conj().resolve_conj()      # a lazy conj would be copied per call
            self._mask_1d = torch.fft.ifftshift(mask_1d, dim=-1).to(self.maps.dtype)

    @property
    def shape(self):
        return tuple(self.maps.shape)

    @functools.cached_property
    def _maps_conj(self) -> torch.Tensor:
        """conj(maps), materialised once (torch copies a lazily conjugated operand on every product)."""
        return self.maps.conj().resolve_conj()

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
        return (self._maps_conj * ifft2c(self.mask * y)).sum(dim=1)

    def AHA(self, x: torch.Tensor) -> torch.Tensor:
        """Normal operator (B, ny, nx) → (B, ny, nx); the mask is applied once (M² = M for binary M); 1-D FFTs
        when the mask varies along one axis only (module docstring)."""
        if self.axis is None:
            k = self.mask * fft2c(self.maps * x[:, None])
            return (self._maps_conj * ifft2c(k)).sum(dim=1)
        # with Fc = fftshift∘fft∘ifftshift (centred 1-D): Σ conj(S) Fcᴴ(M Fc(S x)) =
        # fftshift(Σ conj(S') ifft(M' fft(S' x'))), ' = ifftshift along the FFT axis (fftshift and ifftshift
        # are inverse and commute with pointwise products), exact for any n
        xt = torch.fft.ifftshift(x.transpose(-1, -2) if self.axis == -2 else x, dim=-1)
        k = torch.fft.fft(self._maps_1d * xt[:, None], dim=-1, norm="ortho").mul_(self._mask_1d)
        w = torch.fft.ifft(k, dim=-1, norm="ortho").mul_(self._maps_1d_conj)
        out = torch.fft.fftshift(w.sum(dim=1), dim=-1)
        return out.transpose(-1, -2).contiguous() if self.axis == -2 else out


def sampled_axis(mask: torch.Tensor) -> int | None:
    """The one image axis a (B|1, 1, ny, nx) mask varies along: -2 (constant along each row: phase lines in y),
    -1 (constant along each column), None (a 2-D pattern). A constant mask counts as -2."""
    if torch.equal(mask, mask[..., :1].expand_as(mask)):
        return -2
    if torch.equal(mask, mask[..., :1, :].expand_as(mask)):
        return -1
    return None


def pad_sizes(ny: int, nx: int, multiple: int) -> tuple[int, int]:
    """The smallest (ny', nx') ≥ (ny, nx) that are multiples of `multiple`."""
    return -(-ny // multiple) * multiple, -(-nx // multiple) * multiple


def pad_image(x: torch.Tensor, size: tuple) -> torch.Tensor:
    """Zero-pad the last two axes of x, centred (the extra row/column at the end), to `size`."""
    ny, nx = x.shape[-2:]
    py, px = size[0] - ny, size[1] - nx
    return torch.nn.functional.pad(x, (px // 2, px - px // 2, py // 2, py - py // 2))


def crop_image(x: torch.Tensor, size: tuple) -> torch.Tensor:
    """Inverse of `pad_image`: the centred (ny, nx) = `size` part of the last two axes."""
    ny, nx = x.shape[-2:]
    oy, ox = (ny - size[0]) // 2, (nx - size[1]) // 2
    return x[..., oy:oy + size[0], ox:ox + size[1]]


class PaddedOp:
    """A SenseOp seen from a larger image grid: A'(x) = A(crop(x)), A'ᴴ(y) = pad(Aᴴ(y)).

    Lets a network that needs sides divisible by 2ᵏ work on any matrix: the padded border is not seen
    by the data (A'ᴴA' is zero there), so the prior fills it and the caller crops it away."""

    def __init__(self, op: SenseOp, size: tuple):
        self.op, self.size = op, tuple(size)
        self.inner = tuple(op.maps.shape[-2:])
        self.maps = pad_image(op.maps, self.size)      # zero outside the measured grid (support = inner grid)
        self.mask = op.mask

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.A(crop_image(x, self.inner))

    def AH(self, y: torch.Tensor) -> torch.Tensor:
        return pad_image(self.op.AH(y), self.size)

    def AHA(self, x: torch.Tensor) -> torch.Tensor:
        return pad_image(self.op.AHA(crop_image(x, self.inner)), self.size)
