"""One assembled slice → coil maps and the coil-combined image, the same way on every path (the stream
processor's maps, training's MVUE targets from raw files)."""

from __future__ import annotations

import numpy as np

from .acs import acs_mask
from .assembly import SliceData
from .noise import unwhitened_intensity


def slice_maps(sd: SliceData, backend: str = "torch") -> np.ndarray:
    """ESPIRiT maps (C, ny, nx) complex64 from the slice's ACS rows (`recon_core.coils.espirit_maps`)."""
    from ..coils import espirit_maps

    maps = espirit_maps(sd.calib, mask=acs_mask(sd.calib.shape[-2:], sd.acs_rows), backend=backend)
    return np.asarray(maps).astype(np.complex64)


def crop_rows(x: np.ndarray | None, ny: int) -> np.ndarray | None:
    """Centre crop of the phase-encode axis (−2) to `ny` rows (reconSpace); None passes through."""
    if x is None or x.shape[-2] <= ny:
        return x
    start = (x.shape[-2] - ny) // 2
    return x[..., start:start + ny, :]


def slice_mvue(sd: SliceData, maps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image (rec_ny, nx) complex64 in scanner units, maps): the MVUE of the slice's acquired k-space
    (zero-filled where not acquired) with its ESPIRiT maps, brought back to the intensity of the
    unwhitened data, rows cropped to reconSpace."""
    from ..mvue import mvue_from_kspace

    if maps is None:
        maps = slice_maps(sd)
    img = np.asarray(mvue_from_kspace(sd.kspace * sd.mask[None], maps)).astype(np.complex64)
    f = unwhitened_intensity(maps, sd.prewhitener)
    if f is not None:
        img = img * f
    return crop_rows(img, sd.rec_ny).astype(np.complex64), maps
