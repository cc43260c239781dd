"""Coil combination (MVUE / SENSE-combined image), normalisation, and the 2-channel network layout.

MVUE: x̂ = Σ_c conj(S_c)·x_c / Σ_c |S_c|²  (x_c coil images; pixels with Σ|S|² = 0 → 0).
Normalisation (ContextMRI): divide by the 99th percentile of |x̂| per slice; the scale is returned so
results can go back to scanner units (multiply by it).
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError
from .fft import ifft2c, ifft2c_np

PERCENTILE = 99.0


def combine(coil_images, maps, eps: float = 1e-12):
    """(…, C, ny, nx) coil images + maps → (…, ny, nx) MVUE. numpy or torch (same type out)."""
    if coil_images.shape != maps.shape:
        raise InputError(f"coil images {tuple(coil_images.shape)} and maps {tuple(maps.shape)} must have the same shape")
    if isinstance(coil_images, torch.Tensor):
        num = (maps.conj() * coil_images).sum(dim=-3)
        den = maps.abs().pow(2).sum(dim=-3)
        return torch.where(den > eps, num / den.clamp_min(eps), torch.zeros_like(num))
    num = (np.conj(maps) * coil_images).sum(axis=-3)
    den = (np.abs(maps) ** 2).sum(axis=-3)
    out = np.where(den > eps, num / np.maximum(den, eps), 0)
    return out.astype(np.complex64)


def mvue_from_kspace(ksp, maps):
    """k-space (…, C, ny, nx) → MVUE image (…, ny, nx) in the same units (orthonormal FFT)."""
    imgs = ifft2c(ksp) if isinstance(ksp, torch.Tensor) else ifft2c_np(ksp)
    return combine(imgs, maps)


def percentile_scale(img, q: float = PERCENTILE):
    """Per-slice q-th percentile of |img| over the last two axes → (…,) float (≥ tiny, never 0)."""
    if isinstance(img, torch.Tensor):
        flat = img.abs().reshape(*img.shape[:-2], -1).float()
        s = torch.quantile(flat, q / 100.0, dim=-1)
        return s.clamp_min(1e-12)
    s = np.percentile(np.abs(img).reshape(*img.shape[:-2], -1), q, axis=-1)
    return np.maximum(s, 1e-12).astype(np.float32)


def normalize(img, q: float = PERCENTILE):
    """img (…, ny, nx) complex → (img / scale, scale) with scale the per-slice q-th percentile of |img|."""
    s = percentile_scale(img, q)
    if isinstance(img, torch.Tensor):
        return img / s[..., None, None].to(img.real.dtype), s
    return (img / s[..., None, None]).astype(img.dtype), s


def to_channels(x):
    """complex (B, ny, nx) → float32 (B, 2, ny, nx) (real, imag)."""
    if isinstance(x, torch.Tensor):
        return torch.stack([x.real, x.imag], dim=1).to(torch.float32)
    return np.stack([x.real, x.imag], axis=1).astype(np.float32)


def from_channels(x):
    """float (B, 2, ny, nx) → complex64 (B, ny, nx)."""
    if x.shape[1] != 2:
        raise InputError(f"expected 2 channels (real, imag) in dim 1, got shape {tuple(x.shape)}")
    if isinstance(x, torch.Tensor):
        return torch.complex(x[:, 0].float(), x[:, 1].float())
    return (x[:, 0] + 1j * x[:, 1]).astype(np.complex64)
