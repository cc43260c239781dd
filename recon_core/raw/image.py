"""One assembled slice → coil maps and the coil-combined image, the same way on every path (the stream
processor's maps, training's MVUE targets from raw files)."""

from __future__ import annotations

import numpy as np

from ..coils import calibration_quality as _block_quality
from ..coils import coil_maps
from ..fft import fft2c_np, ifft2c_np
from ..mvue import mvue_from_kspace
from .acs import acs_mask
from .assembly import SliceData
from .noise import unwhitened_intensity


def slice_maps(sd: SliceData, backend: str = "torch", info: dict | None = None) -> np.ndarray:
    """Coil maps (C, ny, nx) complex64 of an assembled slice: the library's one coil-map recipe
    (`recon_core.coils.coil_maps`: ESPIRiT with the eigenvalue-crop policy, low-resolution maps where the
    calibration is too small or ESPIRiT leaves holes) on the slice's calibration data `sd.calib` and its
    ACS rows `sd.acs_rows`. `info`, when given, receives {"maps": "espirit" | "lowres", "fallback": reason
    or "", "crop" (nan for lowres), **calibration_quality}.
    """
    return coil_maps(sd.calib, acs_rows=sd.acs_rows, backend=backend, info=info)


def crop_rows(x: np.ndarray | None, ny: int) -> np.ndarray | None:
    """Centre crop of the phase-encode axis (−2) to `ny` rows (reconSpace); None passes through."""
    if x is None or x.shape[-2] <= ny:
        return x
    start = (x.shape[-2] - ny) // 2
    return x[..., start:start + ny, :]


def fourier_resample(x: np.ndarray, shape: tuple) -> np.ndarray:
    """Resample the last two axes to `shape` by zero-padding / cropping the centred k-space (the scanner's
    interpolation for a reduced phase resolution); same FOV, so pixels become `FOV / shape`. Real input
    (a std map) stays real, non-negative."""
    ny, nx = x.shape[-2:]
    if (ny, nx) == tuple(shape):
        return x
    k = fft2c_np(np.asarray(x, dtype=np.complex64))
    out = np.zeros(k.shape[:-2] + tuple(shape), dtype=np.complex64)
    cy, cx = min(ny, shape[0]), min(nx, shape[1])
    sy, sx = (ny - cy) // 2, (nx - cx) // 2
    ty, tx = (shape[0] - cy) // 2, (shape[1] - cx) // 2
    out[..., ty:ty + cy, tx:tx + cx] = k[..., sy:sy + cy, sx:sx + cx]
    img = ifft2c_np(out) * np.sqrt(shape[0] * shape[1] / (ny * nx))   # keep intensities (orthonormal FFTs)
    return img.astype(np.complex64) if np.iscomplexobj(x) else np.maximum(img.real, 0).astype(np.float32)


def to_recon_space(x: np.ndarray | None, sd) -> np.ndarray | None:
    """An image of the slice's encoded grid → the reconSpace matrix: rows cropped to the reconSpace FOV,
    then Fourier-interpolated to `sd.rec_shape` (None passes through)."""
    if x is None:
        return None
    x = crop_rows(x, sd.rec_ny)
    shape = getattr(sd, "rec_shape", None)
    return x if shape is None else fourier_resample(x, shape)


def scanner_units(sd: SliceData, maps: np.ndarray, *images):
    """Images of the slice's encoded grid (None passes through) → what a scanner returns: the intensity of
    the unwhitened physical coils (`noise.unwhitened_intensity` with the slice's prewhitener and coil
    compression) on the reconSpace matrix (`to_recon_space`). One image → one result, several → a tuple."""
    f = unwhitened_intensity(maps, sd.prewhitener, sd.coil_lift)
    out = tuple(None if x is None else to_recon_space(x * f if f is not None else x, sd) for x in images)
    return out[0] if len(out) == 1 else out


def slice_mvue(sd: SliceData, maps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(image (rec_ny, nx) complex64 in scanner units, maps): the MVUE of the slice's acquired k-space
    (zero-filled where not acquired) with its ESPIRiT maps, brought back to the intensity of the
    unwhitened data, mapped to reconSpace (`scanner_units`)."""
    if maps is None:
        maps = slice_maps(sd)
    img = np.asarray(mvue_from_kspace(sd.kspace * sd.mask[None], maps)).astype(np.complex64)
    return scanner_units(sd, maps, img).astype(np.complex64), maps


def calibration_quality(sd: SliceData, maps: np.ndarray, threshold: float = 0.1) -> dict:
    """How well coil maps (C, ny, nx) cover the slice's object (`recon_core.coils.calibration_quality` on the
    ACS rows of `sd.calib`): {"coverage", "signal_outside_support", "support_fraction", "acs_lines"}."""
    return _block_quality(sd.calib, acs_mask(sd.calib.shape[-2:], sd.acs_rows), maps, threshold)
