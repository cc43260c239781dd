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
    """Soft-threshold of the wavelet coefficients of randomly shifted (ny, nx) images; `seed` fixes the shifts.

    seed: an int, or a sequence of K ints for a batch made of K equal groups (DDS's K posterior samples, sample-major
    (K·B, ny, nx)): group k draws its shifts from seed k, so sample k's shifts do not depend on K or B."""

    def __init__(self, shape: tuple, wave_name: str = WAVELET, seed=0):
        import sigpy as sp   # heavy: loaded only when a sparse method runs

        self.shape = tuple(int(s) for s in shape)
        self.W = sp.linop.Wavelet(self.shape, wave_name=wave_name)
        self.levels = max(1, pywt.dwtn_max_level(self.shape, wave_name))
        seeds = [int(seed)] if np.ndim(seed) == 0 else [int(v) for v in seed]
        self.rngs = [np.random.default_rng(v) for v in seeds]
        self._soft = sp.soft_thresh

    def __call__(self, x: np.ndarray, thr: float) -> np.ndarray:
        """x (ny, nx) complex → S_rᵀ Ψᴴ soft(Ψ S_r x, thr), a fresh shift r per call."""
        return self._apply(x, thr, self._shift(self.rngs[0]))

    def batch(self, x: torch.Tensor, thr) -> torch.Tensor:
        """x (N, ny, nx) complex tensor, thr a float or (N,) tensor → the same shape, dtype and device; one shift per
        group and call (so a slice's result does not depend on which slices share its batch)."""
        n, groups = x.shape[0], len(self.rngs)
        if n % groups:
            raise ValueError(f"batch of {n} images is not {groups} equal groups")
        th = np.broadcast_to(thr.detach().cpu().numpy() if isinstance(thr, torch.Tensor) else float(thr), (n,))
        shifts, xs = [self._shift(r) for r in self.rngs], x.detach().cpu().numpy()
        out = np.stack([self._apply(xs[i], float(th[i]), shifts[i // (n // groups)]) for i in range(n)])
        return torch.from_numpy(out.astype(np.complex64)).to(device=x.device, dtype=x.dtype)

    def _shift(self, rng) -> tuple:
        return tuple(int(v) for v in rng.integers(0, 2 ** self.levels, size=2))

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
