"""Cycle-spinning wavelet soft-thresholding: the proximal operator of λ‖Ψ S_r x‖₁ with a new random circular
shift S_r at every call (random shifts make a decimated wavelet transform approximately shift invariant: BART's
`pics -R W` does the same unless `-n`). Used by the classical `l1wavelet-shift` (baselines/sigpy_cs.py, as the
prox of FISTA) and by DDS's sparse data consistency (recon_core/sparse_dc.py).

Ψ: sigpy's orthogonal wavelet (db4, pywt's maximum level for the shape); shifts uniform in [0, 2^levels) per
axis, drawn from a seeded numpy Generator (reproducible). Arrays: complex, (ny, nx) numpy on the CPU (torch
batches are moved there and back).
"""

from __future__ import annotations

import numpy as np
import pywt
import torch

WAVELET = "db4"


class ShiftedWavelet:
    """Soft-threshold of the wavelet coefficients of randomly shifted (ny, nx) images; `seed` fixes the shifts."""

    def __init__(self, shape: tuple, wave_name: str = WAVELET, seed: int = 0):
        import sigpy as sp   # heavy: loaded only when a sparse method runs

        self.shape = tuple(int(s) for s in shape)
        self.W = sp.linop.Wavelet(self.shape, wave_name=wave_name)
        self.levels = max(1, pywt.dwtn_max_level(self.shape, wave_name))
        self.rng = np.random.default_rng(seed)
        self._soft = sp.soft_thresh

    def __call__(self, x: np.ndarray, thr: float) -> np.ndarray:
        """x (ny, nx) complex → S_rᵀ Ψᴴ soft(Ψ S_r x, thr), a fresh shift r per call."""
        return self._apply(x, thr, self._shift())

    def batch(self, x: torch.Tensor, thr) -> torch.Tensor:
        """x (B, ny, nx) complex tensor, thr a float or (B,) tensor → the same shape, dtype and device; one shift for
        the whole batch (so a slice's result does not depend on which slices share its batch)."""
        th = np.broadcast_to(thr.detach().cpu().numpy() if isinstance(thr, torch.Tensor) else float(thr), (x.shape[0],))
        s, xs = self._shift(), x.detach().cpu().numpy()
        out = np.stack([self._apply(xs[b], float(th[b]), s) for b in range(x.shape[0])])
        return torch.from_numpy(out.astype(np.complex64)).to(device=x.device, dtype=x.dtype)

    def _shift(self) -> tuple:
        return tuple(int(v) for v in self.rng.integers(0, 2 ** self.levels, size=2))

    def _apply(self, x: np.ndarray, thr: float, s: tuple) -> np.ndarray:
        c = self._soft(thr, self.W(np.roll(x, s, axis=(-2, -1))))
        return np.roll(self.W.H(c), tuple(-v for v in s), axis=(-2, -1))


def shifted_wavelet_prox(shape: tuple, lamda: float, wave_name: str = WAVELET, seed: int = 0):
    """sigpy Prox of λ‖Ψ S_r x‖₁ (cycle spinning) for sigpy's FISTA; shape (ny, nx)."""
    import sigpy as sp

    sw = ShiftedWavelet(shape, wave_name, seed)

    class ShiftedWaveletL1(sp.prox.Prox):
        def _prox(self, alpha, x):
            return sw(x, alpha * lamda)

    return ShiftedWaveletL1(tuple(shape))
