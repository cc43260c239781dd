"""Device and precision selection shared by every command (`--device auto|cpu|cuda`)."""

from __future__ import annotations

import contextlib

import torch

from .errors import InputError
from .settings import DTYPE_PRECISIONS


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → cuda if available else cpu; 'cpu'; 'cuda' / 'cuda:N' (error if unavailable)."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} requested but CUDA is not available (use auto or cpu)")
        return torch.device(name)
    raise InputError(f"unknown device {name!r}: expected auto, cpu or cuda")


PRECISIONS = dict(zip(DTYPE_PRECISIONS, (None, torch.bfloat16, torch.float16)))   # name → autocast dtype


def autocast(device: torch.device, precision: str = "fp32"):
    """Context manager: autocast the network to bf16/fp16 on `device`; a no-op for fp32."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}: expected one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def set_threads(n: int | None) -> None:
    """`--threads N`: torch intra-op threads for this process (None: leave torch's default).

    On a shared 2-core machine 1 thread is often much faster than 2 (spinning OpenMP workers)."""
    if n is None:
        return
    if int(n) < 1:
        raise InputError(f"--threads must be ≥ 1, got {n}")
    torch.set_num_threads(int(n))
