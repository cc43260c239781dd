"""Exponential moving average of the trainable parameters (diffusers `EMAModel`).

decay_t = min(decay, (1 + t) / (10 + t)) with warm-up (diffusers' default; reaches 0.999 after ~9k
steps, so a short CPU run averages over the last ~(1 − decay_t)⁻¹ steps instead of being dominated by
the random initialisation), or the constant `decay` without warm-up. Updated after every optimiser
step; the exported weights are the EMA weights.
"""

from __future__ import annotations

import contextlib


def make_ema(params, decay: float = 0.999, warmup: bool = True):
    from diffusers.training_utils import EMAModel

    ema = EMAModel(list(params), decay=float(decay))
    if not warmup:
        ema.get_decay = lambda optimization_step: 0.0 if optimization_step <= 1 else float(decay)  # noqa: E731
    return ema


@contextlib.contextmanager
def ema_weights(ema, params):
    """Temporarily swap the EMA weights into `params` (restored on exit)."""
    params = list(params)
    ema.store(params)
    ema.copy_to(params)
    try:
        yield
    finally:
        ema.restore(params)
