"""Batched conjugate gradient for Hermitian positive (semi-)definite systems.

Every slice of the batch (leading dim) is an independent system: inner products are the true
complex ones ⟨a, b⟩ = Σ conj(a)·b, reduced per slice, and each slice has its own step sizes
α, β. A slice whose residual is exactly zero (e.g. an all-zero right-hand side) stays put instead
of dividing by zero. (Both upstream codes share one scalar step over the batch and drop the conjugate.)
"""

from __future__ import annotations

from typing import Callable

import torch

from .errors import InputError


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-slice ⟨a, b⟩ = Σ conj(a)·b over all but the leading dim → (B,) complex."""
    return (a.conj() * b).reshape(a.shape[0], -1).sum(dim=1)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def conjugate_gradient(apply_fn: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor,
                       x0: torch.Tensor | None = None, n_iter: int = 10, tol: float = 0.0) -> torch.Tensor:
    """Solve apply_fn(x) = b per slice. b, x0: (B, ...) complex. Stops early when every slice's
    relative residual ‖r‖/‖b‖ ≤ tol (tol=0: always n_iter iterations)."""
    if n_iter < 0:
        raise InputError(f"CG iterations must be ≥ 0, got {n_iter}")
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    if x.shape != b.shape:
        raise InputError(f"CG: x0 shape {tuple(x.shape)} does not match b shape {tuple(b.shape)}")
    r = b - apply_fn(x)
    p = r.clone()
    rr = _dot(r, r).real
    bb = _dot(b, b).real
    for _ in range(n_iter):
        if tol > 0 and bool((rr <= (tol ** 2) * bb).all()):
            break
        Ap = apply_fn(p)
        pAp = _dot(p, Ap).real
        active = (rr > 0) & (pAp > 0)
        alpha = torch.where(active, rr / torch.where(active, pAp, torch.ones_like(pAp)), torch.zeros_like(rr))
        x = x + _bcast(alpha, x).to(x.dtype) * p
        r = r - _bcast(alpha, r).to(r.dtype) * Ap
        rr_new = _dot(r, r).real
        beta = torch.where(rr > 0, rr_new / torch.where(rr > 0, rr, torch.ones_like(rr)), torch.zeros_like(rr))
        p = r + _bcast(beta, p).to(p.dtype) * p
        rr = rr_new
    return x


def data_consistency(op, x0: torch.Tensor, y: torch.Tensor | None, gamma: float = 5.0, n_iter: int = 5,
                     AHy: torch.Tensor | None = None, init: torch.Tensor | None = None) -> torch.Tensor:
    """DDS data consistency: solve (I + γAᴴA) x = x0 + γAᴴy per slice, starting at x0 (or at `init`).

    x0: (B, ny, nx) complex; y: (B, C, ny, nx) measured (masked) k-space; op: SenseOp; gamma: a float
    or a (B,) tensor (one weight per slice). `AHy`: Aᴴy precomputed (then `y` may be None), as a sampler calling this
    every step does. `init`: the CG starting point when a better one than x0 is known (the sparse DC's previous
    iterate); with n_iter 0 or γ 0 the result is x0 either way.
    """
    if isinstance(gamma, torch.Tensor):    # one weight per slice (B,)
        if bool((gamma < 0).any()):
            raise InputError(f"gamma must be ≥ 0, got {gamma.tolist()}")
        if n_iter == 0:
            return x0
        g = _bcast(gamma, x0).to(x0.real.dtype)
    else:
        if gamma < 0:
            raise InputError(f"gamma must be ≥ 0, got {gamma}")
        if n_iter == 0 or gamma == 0:
            return x0
        g = gamma
    b = x0 + g * (op.AH(y) if AHy is None else AHy)
    return conjugate_gradient(lambda v: v + g * op.AHA(v), b, x0=x0 if init is None else init, n_iter=n_iter)


def sense_solve(op, y: torch.Tensor, n_iter: int = 30, lamda: float = 0.0, x0=None, tol: float = 0.0) -> torch.Tensor:
    """SENSE: solve (AᴴA + λI) x = Aᴴy per slice (λ = 0: plain least squares, CG as regulariser)."""
    b = op.AH(y)
    return conjugate_gradient(lambda v: op.AHA(v) + lamda * v, b, x0=x0, n_iter=n_iter, tol=tol)
