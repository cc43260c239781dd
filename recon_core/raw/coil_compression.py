"""SVD coil compression (issue 23, item 6): many-channel coils → a few virtual coils before coil maps and
data consistency, so a 32- or 64-channel scan costs what an 8–12-channel one does.

The compression matrix comes from the slice's calibration (ACS) lines after prewhitening: A = calib rows as
(C, N); A = U Σ Vᴴ; the first n left singular vectors keep the fraction `energy` of ‖A‖² (at least
`min_coils`, at most `max_coils` when given). Every k-space sample is mapped y_v = U_nᴴ y (n, …): an
orthonormal projection, so white noise stays white with the same σ, and ESPIRiT, SENSE, GRAPPA and DDS run
on the virtual coils unchanged. `coil_lift` = W⁻¹ U_n (or U_n without prewhitening) takes virtual-coil maps
back to the unwhitened physical coils for the intensity convention (`recon_core.raw.noise.unwhitened_intensity`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def compression_matrix(calib: np.ndarray, acs_rows: tuple, energy: float = 0.99, max_coils: int = 0,
                       min_coils: int = 4) -> tuple[np.ndarray, float]:
    """(U_n (C, n) complex64, kept energy fraction) from the ACS rows of calib (C, ny, nx)."""
    lo, hi = acs_rows
    C = calib.shape[0]
    a = np.asarray(calib[:, lo:hi], dtype=np.complex128).reshape(C, -1)
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    e = np.cumsum(s ** 2) / max(float(np.sum(s ** 2)), 1e-300)
    n = int(np.searchsorted(e, energy - 1e-12) + 1)
    n = max(min(n, C), min(min_coils, C))
    if max_coils:
        n = min(n, int(max_coils))
    return u[:, :n].astype(np.complex64), float(e[n - 1])


def compress(U: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Virtual coils y_v = U_nᴴ y of x (C, …) → (n, …) complex64."""
    return np.tensordot(U.conj().T, x, axes=(1, 0)).astype(np.complex64)


def compress_slice(sd, energy: float = 0.99, max_coils: int = 0, above: int = 16):
    """SliceData with virtual coils when it has more than `above` coils (else unchanged) → (SliceData, info)."""
    C = sd.kspace.shape[0]
    if C <= above:
        return sd, {}
    U, kept = compression_matrix(sd.calib, sd.acs_rows, energy, max_coils)
    n = U.shape[1]
    lift = U if sd.prewhitener is None else np.linalg.solve(sd.prewhitener.astype(np.complex128), U)
    info = {"coils": C, "virtual_coils": n, "energy": round(kept, 5)}
    return replace(sd, kspace=compress(U, sd.kspace), calib=compress(U, sd.calib), coil_lift=lift.astype(np.complex64)), info
