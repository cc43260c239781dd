"""Receive coils, correlated noise and Cartesian k-space sampling for the simulated scanner.

Coils: `sigpy.mri.birdcage_maps` (C coils on a ring, relative radius 1.3–1.8) rotated by a random
angle, with a random per-coil gain (±15 %), normalised so that Σ_c |S_c|² = 1 at every pixel and
phase-referenced to coil 0 (the ESPIRiT convention, so the true maps and the reference image are what
an ideal ESPIRiT/SENSE reconstruction estimates). k-space per coil: y_c = F(S_c · x) + n_c, centred
orthonormal FFT; with readout oversampling the coil images are zero-padded to 2·nx along the readout
before the FFT (the encoded FOV is twice the reconstructed FOV; removing the oversampling — IFFT along
x, crop the centre nx, FFT — gives back exactly the reconSpace k-space).

Noise: complex Gaussian, covariance σ²·Ψ with Ψ = A Aᴴ (A = I + 0.2·complex normal), scaled to mean
diagonal 1, so channels are correlated (|ρ| ≈ 0.1–0.4) with unequal power. σ follows the SNR in dB:
σ = mean(|x| over the brain) / 10^(SNR/20) (orthonormal FFT: a k-space sample's σ equals an image
pixel's σ, and with Σ|S|² = 1 an uncorrelated-noise combination keeps it).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from recon_core.errors import InputError
from recon_core.fft import fft2c_np

from ..raw.oversampling import remove_readout_oversampling

MIN_COILS, MAX_COILS = 1, 64


@lru_cache(maxsize=32)
def _birdcage(C: int, M: int, r: float) -> np.ndarray:
    import sigpy.mri

    return sigpy.mri.birdcage_maps((C, M, M), r=r, dtype=np.complex64)


def coil_maps(n_coils: int, matrix: int, rng: np.random.Generator, radius: float | None = None,
              angle: float | None = None) -> np.ndarray:
    """(C, ny, nx) complex64 birdcage maps, rotated, gain-jittered, Σ|S|² = 1, phase relative to coil 0.

    The ring radius is drawn from 1.3–1.8 (relative to the half FOV) in steps of 0.05 (cached maps).
    """
    if not MIN_COILS <= int(n_coils) <= MAX_COILS:
        raise InputError(f"coils: expected {MIN_COILS}–{MAX_COILS}, got {n_coils}")
    C, M = int(n_coils), int(matrix)
    r = float(np.round(rng.uniform(1.3, 1.8) / 0.05) * 0.05) if radius is None else float(radius)
    ang = float(rng.uniform(0, 360)) if angle is None else float(angle)
    maps = _birdcage(C, M, r)
    s = np.empty((C, M, M), dtype=np.complex64)
    for c in range(C):   # rotate the coil array (outside the FOV corners: nearest edge value; air there)
        s[c].real = ndi.rotate(maps[c].real, ang, reshape=False, order=1, mode="nearest")
        s[c].imag = ndi.rotate(maps[c].imag, ang, reshape=False, order=1, mode="nearest")
    s *= np.exp(rng.normal(0, 0.15, C)).astype(np.float32)[:, None, None]
    s = s / np.sqrt((np.abs(s) ** 2).sum(0, keepdims=True))
    ref = s[:1] / np.maximum(np.abs(s[:1]), 1e-12)
    return (s * ref.conj()).astype(np.complex64)


def noise_sigma(x: np.ndarray, brain: np.ndarray, head: np.ndarray, snr_db: float) -> float:
    """σ = mean |x| over the brain (else the head, else everything) / 10^(SNR/20)."""
    for sel in (brain, head):
        if int(sel.sum()) >= 16:
            return float(np.abs(x)[sel].mean() / 10 ** (snr_db / 20))
    return float(np.abs(x).mean() / 10 ** (snr_db / 20)) or 1e-12


def noise_covariance(n_coils: int, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Random Hermitian positive-definite (C, C) complex128 covariance with mean diagonal 1."""
    C = int(n_coils)
    a = np.eye(C) + strength * (rng.standard_normal((C, C)) + 1j * rng.standard_normal((C, C))) / np.sqrt(2)
    psi = a @ a.conj().T
    return psi / np.real(np.trace(psi)) * C


def correlated_noise(shape, psi: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Complex noise of `shape` (..., C, ...) with coil axis −3 for 3+-D shapes `(…, C, a, b)`.

    Returns complex64 with E[n nᴴ] = σ²Ψ across the coil axis (axis −3).
    """
    L = np.linalg.cholesky(psi)
    z = (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32))
    z *= np.float32(np.sqrt(0.5) * sigma)
    return np.einsum("ij,...jab->...iab", L.astype(np.complex64), z.astype(np.complex64)).astype(np.complex64)


def noise_samples(n_samples: int, psi: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(C, n_samples) complex64 noise-only readout with covariance σ²Ψ (the noise-measurement scan)."""
    C = psi.shape[0]
    return correlated_noise((C, 1, n_samples), psi, sigma, rng)[:, 0]


def oversampled_kspace(coil_images: np.ndarray, factor: int = 2) -> np.ndarray:
    """(…, C, ny, nx) coil images → (…, C, ny, factor·nx) k-space of the readout-oversampled FOV."""
    nx = coil_images.shape[-1]
    if factor == 1:
        return fft2c_np(coil_images)
    pad = (factor - 1) * nx
    lo = pad // 2
    width = [(0, 0)] * (coil_images.ndim - 1) + [(lo, pad - lo)]
    return fft2c_np(np.pad(coil_images, width))


def remove_oversampling(ksp: np.ndarray, nx: int) -> np.ndarray:
    """(…, ny, nx_os) k-space → (…, ny, nx): the raw layer's readout-oversampling removal (one definition)."""
    return remove_readout_oversampling(ksp, nx)
