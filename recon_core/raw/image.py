"""One assembled slice → coil maps and the coil-combined image, the same way on every path (the stream
processor's maps, training's MVUE targets from raw files)."""

from __future__ import annotations

import numpy as np

from .acs import MIN_ACS_LINES, acs_mask
from .assembly import SliceData
from .noise import unwhitened_intensity


#: ESPIRiT eigenvalue crops tried in turn until the maps cover the calibration image's signal
CROPS = (0.95, 0.9, 0.8, 0.7)
COVERAGE_TARGET = 0.99
#: below this coverage after every crop, ESPIRiT has failed (holes in the object): low-resolution maps
FALLBACK_COVERAGE = 0.9


def slice_maps(sd: SliceData, backend: str = "torch", info: dict | None = None) -> np.ndarray:
    """Coil maps (C, ny, nx) complex64 from the slice's ACS rows: ESPIRiT, or low-resolution maps where
    the calibration is too small for it.

    ESPIRiT (`recon_core.coils.espirit_maps`): the eigenvalue crop starts at the usual 0.95; where that
    support would drop object pixels (`calibration_quality`: coverage < COVERAGE_TARGET or any signal
    pixel outside the support, e.g. an object filling the FOV) the crop is lowered step by step (CROPS)
    and the first that covers the signal — else the best — is kept. Fallback to
    `recon_core.coils.lowres_maps` (no holes by construction) when the block has fewer than
    MIN_ACS_LINES rows, or when even the best crop covers less than FALLBACK_COVERAGE of the signal.
    `info`, when given, receives {"maps": "espirit" | "lowres", "fallback": reason or "",
    "crop" (nan for lowres), **calibration_quality}.
    """
    from ..coils import espirit_maps, lowres_maps

    lo, hi = sd.acs_rows
    best = None
    reason = ""
    if hi - lo >= MIN_ACS_LINES:
        mask = acs_mask(sd.calib.shape[-2:], sd.acs_rows)
        for crop in CROPS:
            maps = np.asarray(espirit_maps(sd.calib, mask=mask, backend=backend, crop=crop)).astype(np.complex64)
            q = calibration_quality(sd, maps)
            score = (q["coverage"] >= COVERAGE_TARGET and q["signal_outside_support"] == 0, q["coverage"])
            if best is None or score > best[2]:
                best = (maps, {"maps": "espirit", "fallback": "", "crop": crop, **q}, score)
            if score[0]:
                break
        if best[1]["coverage"] < FALLBACK_COVERAGE:
            reason = (f"ESPIRiT maps cover only {100 * best[1]['coverage']:.1f} % of the signal with "
                      f"{hi - lo} ACS lines")
    else:
        reason = f"{hi - lo} ACS lines are too few for ESPIRiT (needs {MIN_ACS_LINES})"
    if reason:
        maps = lowres_maps(sd.calib, sd.acs_rows)
        best = (maps, {"maps": "lowres", "fallback": reason, "crop": float("nan"),
                       **calibration_quality(sd, maps)}, None)
    if info is not None:
        info.update(best[1])
    return best[0]


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
    from ..fft import fft2c_np, ifft2c_np

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
    from ..mvue import mvue_from_kspace

    if maps is None:
        maps = slice_maps(sd)
    img = np.asarray(mvue_from_kspace(sd.kspace * sd.mask[None], maps)).astype(np.complex64)
    return scanner_units(sd, maps, img).astype(np.complex64), maps


def calibration_quality(sd: SliceData, maps: np.ndarray, threshold: float = 0.1) -> dict:
    """How well the coil maps cover the object, from the data alone.

    The low-resolution coil images of the ACS block (always fully sampled) give a sum-of-squares image;
    its pixels above `threshold` × its maximum are "signal". coverage = fraction of the signal energy
    that lies where the maps are non-zero (1.0: ESPIRiT's crop keeps every signal pixel; below ~0.97 the
    reconstruction loses object there). Also the fraction of signal pixels outside the support and the
    support's share of the field of view. Returns plain floats (for image meta and logs).
    """
    from ..fft import ifft2c_np

    lo, hi = sd.acs_rows
    k = np.zeros_like(sd.calib)
    k[:, lo:hi] = sd.calib[:, lo:hi]
    sos = np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(axis=0))
    support = (np.abs(maps) ** 2).sum(axis=0) > 0
    sig = sos > threshold * float(sos.max() or 1.0)
    e = sos ** 2
    total = float(e[sig].sum()) or 1.0
    return {"coverage": float(e[sig & support].sum()) / total,
            "signal_outside_support": float((sig & ~support).sum()) / max(int(sig.sum()), 1),
            "support_fraction": float(support.mean()), "acs_lines": int(hi - lo)}
