"""Reconstructed slice → `ismrmrd.Image`s the way a scanner takes its own (OpenRecon/FIRE conventions).

Series (image_series_index, distinct per kind): 1 magnitude, 2 phase, 3 std (uncertainty), 4 zero-filled,
5 error estimate (the calibrated expected |error| per pixel, recon_core.uncertainty; sent with the std).
Pixel formats (`ReconParams.image_format`):
- "uint16" (default, what the scanner console displays): magnitude, std and zero-filled of one slice share
  one scale, full scale (2^bits_stored − 1) = the slice's maximum magnitude; phase maps −π..π onto
  0..2^bits − 1. Meta `FloatScale`/`FloatOffset` give the float value back: value = pixel × FloatScale +
  FloatOffset (`to_float`); integer `WindowCenter`/`WindowWidth` from the 1st–99th percentile.
- "float": float32 in scanner units (phase in radians); no window (Siemens MRD cannot hold fractional ones).
- "complex": the magnitude series as complex64 (IMTYPE_COMPLEX); the other series float.
Every image carries `DataRole`, `ImageProcessingHistory`, `SequenceDescriptionAdditional`,
`ImageComments` (method, NFE, CFG, seed, model), `Keep_image_geometry` and `ImageRowDir`/`ImageColumnDir`.
Geometry (position, directions, table, counters) comes from the acquisition passed in (the one nearest the
k-space centre), the FOV from reconSpace (oversampling removed). Shapes (channels=1, z=1, ny, nx).
"""

from __future__ import annotations

import json
import math

import ismrmrd
import numpy as np

from .params import is_diffusion

SERIES = {
    "magnitude": (1, ismrmrd.IMTYPE_MAGNITUDE, "Image", ""),
    "phase": (2, ismrmrd.IMTYPE_PHASE, "Phase", "_PHASE"),
    "std": (3, ismrmrd.IMTYPE_MAGNITUDE, "Uncertainty", "_STD"),
    "zerofilled": (4, ismrmrd.IMTYPE_MAGNITUDE, "ZeroFilled", "_ZF"),
    "error": (5, ismrmrd.IMTYPE_MAGNITUDE, "ErrorEstimate", "_ERR"),
}


def _meta_value(v):
    return [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)


def _uint16(pixels: np.ndarray, kind: str, bits: int, full_scale: float | None) -> tuple[np.ndarray, float, float]:
    """(uint16 pixels, FloatScale, FloatOffset) for one image; full_scale: the float mapped to 2^bits − 1."""
    top = float(2 ** int(bits) - 1)
    if kind == "phase":
        scale, offset = 2 * math.pi / top, -math.pi
    else:
        peak = float(full_scale) if full_scale else float(np.max(pixels, initial=0.0))
        scale, offset = (peak / top if peak > 0 else 1.0), 0.0
    pix = np.clip(np.round((np.asarray(pixels, np.float64) - offset) / scale), 0, top).astype(np.uint16)
    return pix, scale, offset


def window(pixels: np.ndarray) -> tuple[int, int]:
    """Integer (WindowCenter, WindowWidth) spanning the 1st–99th percentile of the pixel values."""
    lo, hi = (float(v) for v in np.percentile(pixels, [1, 99]))
    return int(round((lo + hi) / 2)), max(int(round(hi - lo)), 1)


def make_image(pixels: np.ndarray, kind: str, acq_head, fov_mm, image_index: int, meta: dict,
               fmt: str = "float", bits: int = 12, full_scale: float | None = None) -> ismrmrd.Image:
    """Build one ismrmrd.Image.

    pixels (ny, nx): real (complex only for fmt "complex", magnitude series); kind in SERIES; acq_head:
    AcquisitionHeader giving position, read/phase/slice directions, table position, time stamps and
    counters; fov_mm (x, y, z) from reconSpace; meta: str/number/list values (method, NFE, CFG, seed,
    model … as the processor sets them); fmt/bits/full_scale: the pixel convention (module docstring).
    """
    series, imtype, role, suffix = SERIES[kind]
    extra = {}
    if fmt == "uint16":
        pix, scale, offset = _uint16(pixels, kind, bits, full_scale)
        dtype, data = ismrmrd.DATATYPE_USHORT, pix
        wc, ww = window(pix)
        extra = {"FloatScale": repr(scale), "FloatOffset": repr(offset), "BitsStored": str(int(bits)),
                 "WindowCenter": str(wc), "WindowWidth": str(ww)}
    elif fmt == "complex" and kind == "magnitude":
        dtype, data, imtype = ismrmrd.DATATYPE_CXFLOAT, np.asarray(pixels, np.complex64), ismrmrd.IMTYPE_COMPLEX
    else:
        dtype, data = ismrmrd.DATATYPE_FLOAT, np.asarray(np.real(pixels) if kind != "magnitude" else np.abs(pixels),
                                                         np.float32)
    data = np.ascontiguousarray(data[None, None])  # (1, 1, ny, nx)
    head = ismrmrd.ImageHeader.from_acquisition(acq_head) if acq_head is not None else ismrmrd.ImageHeader()
    head.version = 1
    head.data_type = dtype
    head.channels = 1
    head.matrix_size[:] = (data.shape[3], data.shape[2], 1)
    head.field_of_view[:] = tuple(float(v) for v in fov_mm)
    head.average = 0
    head.image_type = imtype
    head.image_index = int(image_index)
    head.image_series_index = series
    img = ismrmrd.Image(head=head, data=data)
    method = str(meta.get("method", "") or "")
    m = ismrmrd.Meta()
    m["DataRole"] = role
    m["ImageSeriesIndex"] = str(series)
    m["ImageProcessingHistory"] = ["CONTEXTMRI", method.upper() or "RECON"]
    guidance = f"_CFG{meta['CFG']}" if is_diffusion(method) and "CFG" in meta else ""
    m["SequenceDescriptionAdditional"] = f"CTXMRI_{method.upper()}{guidance}{suffix}"
    comments = [f"contextmri {method}"] + [f"{k}={meta[k]}" for k in ("NFE", "CFG", "seed", "model") if k in meta]
    m["ImageComments"] = " ".join(comments)
    m["Keep_image_geometry"] = "1"
    m["ImageRowDir"] = [f"{float(v):.6f}" for v in head.read_dir]
    m["ImageColumnDir"] = [f"{float(v):.6f}" for v in head.phase_dir]
    for k, v in {**meta, **extra}.items():
        if v is not None:
            m[k] = _meta_value(v)
    img.meta = m
    return img


def slice_images(image: np.ndarray, acq_head, fov_mm, image_index: int, meta: dict, *, std=None, zerofilled=None,
                 error=None,
                 send_magnitude=True, send_phase=False, send_std=False, send_zerofilled=False,
                 fmt: str = "float", bits: int = 12) -> list[ismrmrd.Image]:
    """All requested series for one slice. image (ny, nx) complex; std, error, zerofilled (ny, nx) or None (the
    error estimate goes with the std: send_std). In uint16, magnitude, std, error and zero-filled share the slice's
    magnitude full scale (comparable pixels)."""
    full = float(np.abs(image).max(initial=0.0)) or None
    kw = dict(fmt=fmt, bits=bits, full_scale=full)
    out = []
    if send_magnitude:
        out.append(make_image(image if fmt == "complex" else np.abs(image), "magnitude", acq_head, fov_mm,
                              image_index, meta, **kw))
    if send_phase:
        out.append(make_image(np.angle(image), "phase", acq_head, fov_mm, image_index, meta, **kw))
    if send_std and std is not None:
        out.append(make_image(std, "std", acq_head, fov_mm, image_index, meta, **kw))
    if send_std and error is not None:
        out.append(make_image(error, "error", acq_head, fov_mm, image_index, meta, **kw))
    if send_zerofilled and zerofilled is not None:
        zmeta = dict(meta, method="zerofilled")
        out.append(make_image(np.abs(zerofilled), "zerofilled", acq_head, fov_mm, image_index, zmeta, **kw))
    return out


def to_float(img: ismrmrd.Image) -> np.ndarray:
    """An image's pixels as float values (ny, nx): uint16 undone with FloatScale/FloatOffset (float32 in
    scanner units, phase in radians); float and complex returned as stored."""
    data = np.asarray(img.data)[0, 0]
    if img.data_type == ismrmrd.DATATYPE_USHORT and img.meta.get("FloatScale") is not None:
        v = data.astype(np.float64) * float(img.meta["FloatScale"]) + float(img.meta.get("FloatOffset", 0.0))
        return v.astype(np.float32)
    return data


def meta_record(img: ismrmrd.Image) -> dict | None:
    """The metadata record (dict) stored in an image's meta, or None."""
    text = img.meta.get("metadata")
    return None if text is None else json.loads(text)
