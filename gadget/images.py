"""Reconstructed slice → `ismrmrd.Image`s with header geometry, counters and meta attributes.

Series (image_series_index): 1 magnitude, 2 phase (radians), 3 std (uncertainty, scanner units),
4 zero-filled magnitude. All pixel data float32 with shape (channels=1, z=1, ny, nx).
"""

from __future__ import annotations

import json

import ismrmrd
import numpy as np

SERIES = {
    "magnitude": (1, ismrmrd.IMTYPE_MAGNITUDE, "Image"),
    "phase": (2, ismrmrd.IMTYPE_PHASE, "Phase"),
    "std": (3, ismrmrd.IMTYPE_MAGNITUDE, "Uncertainty"),
    "zerofilled": (4, ismrmrd.IMTYPE_MAGNITUDE, "ZeroFilled"),
}


def make_image(pixels: np.ndarray, kind: str, acq_head, fov_mm, image_index: int, meta: dict) -> ismrmrd.Image:
    """Build one ismrmrd.Image.

    pixels (ny, nx) real → float32; kind in SERIES; acq_head: AcquisitionHeader giving position,
    read/phase/slice directions, table position, time stamps and counters (slice, contrast, phase,
    repetition, set, average); fov_mm (x, y, z) from reconSpace; meta: str/number/list values.
    """
    series, imtype, role = SERIES[kind]
    data = np.ascontiguousarray(np.asarray(pixels, dtype=np.float32)[None, None])  # (1, 1, ny, nx)
    head = ismrmrd.ImageHeader.from_acquisition(acq_head) if acq_head is not None else ismrmrd.ImageHeader()
    head.version = 1
    head.data_type = ismrmrd.DATATYPE_FLOAT
    head.channels = 1
    head.matrix_size[:] = (data.shape[3], data.shape[2], 1)
    head.field_of_view[:] = tuple(float(v) for v in fov_mm)
    head.average = 0
    head.image_type = imtype
    head.image_index = int(image_index)
    head.image_series_index = series
    img = ismrmrd.Image(head=head, data=data)
    m = ismrmrd.Meta()
    m["DataRole"] = role
    m["ImageSeriesIndex"] = str(series)
    for k, v in meta.items():
        if v is None:
            continue
        m[k] = [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
    img.meta = m
    return img


def slice_images(image: np.ndarray, acq_head, fov_mm, image_index: int, meta: dict, *, std=None, zerofilled=None,
                 send_magnitude=True, send_phase=False, send_std=False, send_zerofilled=False) -> list[ismrmrd.Image]:
    """All requested series for one slice. image (ny, nx) complex; std, zerofilled (ny, nx) or None."""
    out = []
    if send_magnitude:
        out.append(make_image(np.abs(image), "magnitude", acq_head, fov_mm, image_index, meta))
    if send_phase:
        out.append(make_image(np.angle(image), "phase", acq_head, fov_mm, image_index, meta))
    if send_std and std is not None:
        out.append(make_image(std, "std", acq_head, fov_mm, image_index, meta))
    if send_zerofilled and zerofilled is not None:
        zmeta = dict(meta, method="zerofilled")
        out.append(make_image(np.abs(zerofilled), "zerofilled", acq_head, fov_mm, image_index, zmeta))
    return out


def meta_record(img: ismrmrd.Image) -> dict | None:
    """The metadata record (dict) stored in an image's meta, or None."""
    text = img.meta.get("metadata")
    return None if text is None else json.loads(text)
