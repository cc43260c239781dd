"""Small pure helpers of the evaluation: cell labels, slice selection, summaries, paired differences."""

from __future__ import annotations

import math

import numpy as np


def cell_label(spec: str) -> str:
    kind, accel = spec.split(":")
    return f"{kind} ×{float(accel):g}"


def select_slices(n: int, limit: int | None) -> np.ndarray:
    """`limit` slice indices spread evenly over the split (all when limit is None or ≥ n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, int(limit)).round().astype(int))


def summarise(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def paired(a, b) -> dict:
    """Per-slice paired difference a − b: mean, standard error, wins (a > b)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = d.size
    return {"mean": float(d.mean()), "sem": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
            "wins": int((d > 0).sum()), "n": int(n)}


