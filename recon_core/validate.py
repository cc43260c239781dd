"""Input checks shared by the core: each raises InputError naming what was expected and what came."""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError


def as_tensor(x, name: str, complex_required: bool = True, device=None) -> torch.Tensor:
    """numpy or torch → torch tensor (complex64 if `complex_required`), checked finite."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__}")
    if complex_required:
        if x.is_complex():
            x = x.to(torch.complex64)
        elif x.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            x = x.to(torch.float32).to(torch.complex64)
        else:
            raise InputError(f"{name}: expected complex64 (or real float) data, got dtype {x.dtype}")
    if device is not None:
        x = x.to(device)
    check_finite(x, name)
    return x


def check_finite(x, name: str) -> None:
    bad = ~torch.isfinite(x) if isinstance(x, torch.Tensor) else ~np.isfinite(x)
    if bool(bad.any()):
        raise InputError(f"{name}: contains {int(bad.sum())} non-finite values (NaN/Inf)")


def check_ndim(x, ndims, name: str, layout: str) -> None:
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if x.ndim not in ndims:
        raise InputError(f"{name}: expected shape {layout} ({' or '.join(map(str, ndims))}-D), got shape {tuple(x.shape)}")


def mask_tensor(mask, image_shape, name: str = "mask", device=None) -> torch.Tensor:
    """Mask (ny,nx) or (B,ny,nx), bool or {0,1} float → float32 tensor broadcastable as (B|1, 1, ny, nx)."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected an array, got {type(mask).__name__}")
    if mask.is_complex():
        raise InputError(f"{name}: expected a real/bool mask, got dtype {mask.dtype}")
    if mask.ndim not in (2, 3) or tuple(mask.shape[-2:]) != tuple(image_shape):
        raise InputError(f"{name}: expected shape (ny, nx) or (B, ny, nx) with (ny, nx) = {tuple(image_shape)}, "
                         f"got {tuple(mask.shape)}")
    mask = mask.to(torch.float32)
    check_finite(mask, name)
    if mask.ndim == 2:
        mask = mask[None]
    mask = mask[:, None]
    return mask.to(device) if device is not None else mask


def check_mapping(cfg, allowed, required, source: str) -> None:
    """A config mapping: InputError naming `source` and the key for a non-mapping, an unknown or a missing key."""
    if not isinstance(cfg, dict):
        raise InputError(f"{source}: expected a mapping, got {type(cfg).__name__}")
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise InputError(f"{source}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")
    for key in required:
        if key not in cfg:
            raise InputError(f"{source}: missing key {key!r}")
