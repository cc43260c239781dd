"""Noise readouts → prewhitening matrix; applying it, and undoing its effect on image intensity."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


class NoiseAccumulator:
    """Collects noise readouts `(C, N)` and gives the prewhitening matrix `(C, C)` complex64."""

    def __init__(self):
        self._sum = None
        self._n = 0
        self.dwell_us = None

    def add(self, data: np.ndarray, dwell_us: float | None = None):
        data = np.asarray(data, dtype=np.complex128)
        if self._sum is None:
            self._sum = np.zeros((data.shape[0], data.shape[0]), np.complex128)
        if data.shape[0] != self._sum.shape[0]:
            raise InputError(f"inconsistent coil counts: noise readout has {data.shape[0]} coils, earlier ones {self._sum.shape[0]}")
        self._sum += data @ data.conj().T
        self._n += data.shape[1]
        if dwell_us:
            self.dwell_us = float(dwell_us)

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def n_coils(self) -> int | None:
        return None if self._sum is None else self._sum.shape[0]

    def covariance(self) -> np.ndarray | None:
        """Noise covariance `(C, C)` complex128 (per sample), or None without noise data."""
        if self._n < 2:
            return None
        return self._sum / (self._n - 1)

    def prewhitener(self, data_dwell_us: float | None = None) -> np.ndarray | None:
        """W `(C, C)` complex64 with W·cov·Wᴴ = (mean noise variance)·I, so scanner units are kept.

        When both dwell times are known the covariance is rescaled by noise_dwell / data_dwell
        (noise variance is proportional to bandwidth). Returns None without noise data.
        """
        cov = self.covariance()
        if cov is None:
            return None
        if self.dwell_us and data_dwell_us:
            cov = cov * (self.dwell_us / float(data_dwell_us))
        power = float(np.real(np.trace(cov))) / cov.shape[0]
        if not np.isfinite(power) or power <= 0:
            raise InputError("noise readouts have zero or non-finite power; cannot prewhiten")
        try:
            L = np.linalg.cholesky(cov / power)
        except np.linalg.LinAlgError:
            raise InputError("noise covariance is not positive definite (coils with identical or zero noise)") from None
        return np.linalg.inv(L).astype(np.complex64)


def prewhiten(ksp: np.ndarray, W: np.ndarray | None) -> np.ndarray:
    """Apply `W (C, C)` over the coil axis of `ksp (C, ...)`; identity when W is None."""
    if W is None:
        return ksp
    C = ksp.shape[0]
    return (W @ ksp.reshape(C, -1)).reshape(ksp.shape).astype(np.complex64)


def to_physical_coils(x: np.ndarray, W: np.ndarray | None, lift: np.ndarray | None = None) -> np.ndarray | None:
    """Coil-axis data `x (n, ...)` of the reconstruction's coils (prewhitened and/or coil-compressed) → the same in
    the unwhitened physical coils `(C, ...)` complex128: `lift (C, n)` for coil-compressed data
    (`raw.coil_compression`), else W⁻¹; None when the data were neither whitened nor compressed."""
    if lift is None and W is None:
        return None
    flat = x.reshape(x.shape[0], -1).astype(np.complex128)
    out = lift.astype(np.complex128) @ flat if lift is not None else np.linalg.solve(W.astype(np.complex128), flat)
    return out.reshape((out.shape[0],) + x.shape[1:])


def unwhitened_intensity(maps: np.ndarray, W: np.ndarray | None, lift: np.ndarray | None = None) -> np.ndarray | None:
    """Per-pixel factor (ny, nx) float32 that brings an image reconstructed from prewhitened data back
    to the usual convention (unit-norm coil maps of the *unwhitened* data), or None when W is None.

    Whitened data y_w = W y have maps W·S; ESPIRiT normalises them, S_w = W·S/‖W·S‖, so the
    reconstruction is x·‖W·S‖. With ‖S‖ = 1 (the MVUE convention), ‖W⁻¹·S_w‖ = 1/‖W·S‖, hence
    x = x_w·‖W⁻¹·S_w‖. Where the maps are zero (outside the ESPIRiT support) the median factor
    inside is used. `lift` (C, n): for coil-compressed data the map from virtual to unwhitened physical
    coils (`raw.coil_compression`), used instead of W⁻¹ (`to_physical_coils`).
    """
    unw = to_physical_coils(maps, W, lift)
    if unw is None:
        return None
    f = np.sqrt((np.abs(unw) ** 2).sum(0)).reshape(maps.shape[1:])
    inside = (np.abs(maps) ** 2).sum(0) > 1e-6
    f[~inside] = float(np.median(f[inside])) if inside.any() else 1.0
    return f.astype(np.float32)
