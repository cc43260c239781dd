"""What a prior was trained on (its domain), and whether a scan lies inside it.

The domain is summarised once at training time from the training records and stored in the model's
manifest (`manifest["training"]["domain"]`):

    {"anatomy": ["brain"], "contrast": ["FLAIR", "PD", ...], "field_strength": [1.5, 3.0],
     "fov_mm": [240.0, 240.0] or None (unknown), "matrix": [128, 128], "count": 12000}

`domain_warnings` compares one scan (its metadata record, reconSpace FOV and matrix) with it and returns
plain sentences (empty: inside the domain, or nothing known to compare with). A prior used outside its
domain still runs — the data consistency keeps the image honest to the measurement — but the quality
is not what the evaluation measured.
"""

from __future__ import annotations

import numpy as np

#: reconSpace FOV this far (relative) outside the training range is reported
FOV_TOLERANCE = 0.15

ADVICE = "fine-tune with LoRA (training/configs/lora_finetune.yaml) or train a prior on such data"


#: nominal field-strength classes (T); a scanner reports its exact value (a Siemens "3 T" system 2.89 T)
FIELD_CLASSES = (0.55, 1.0, 1.5, 3.0, 7.0)
#: phase-encoding / slice-normal direction names by dominant patient axis (LPS x, y, z)
AXIS_DIRECTION = ("RL", "AP", "SI")
AXIS_ORIENTATION = ("sagittal", "coronal", "axial")
#: pixel size this far (relative) outside the training range is reported
PIXEL_TOLERANCE = 0.15


def nominal_field(tesla: float) -> float:
    """The nominal class of a field strength (2.89 → 3.0, 1.494 → 1.5): the nearest class within 15 %,
    else the value itself."""
    v = float(tesla)
    best = min(FIELD_CLASSES, key=lambda c: abs(c - v))
    return best if abs(best - v) <= 0.15 * best else v


def scan_geometry(head=None, fov_mm=None, shape=None) -> dict:
    """Orientation (slice normal), phase-encoding direction and pixel size (mm) of a scan from its
    AcquisitionHeader (`slice_dir`, `phase_dir`, patient LPS) and reconSpace FOV / image shape (ny, nx);
    keys are left out where unknown."""
    out = {}
    if head is not None:
        sd, pd = np.abs(np.asarray(head.slice_dir, float)), np.abs(np.asarray(head.phase_dir, float))
        if sd.any():
            out["orientation"] = AXIS_ORIENTATION[int(np.argmax(sd))]
        if pd.any():
            out["phase_encoding"] = AXIS_DIRECTION[int(np.argmax(pd))]
    if fov_mm is not None and shape is not None:
        # reconSpace x = readout = image columns (nx), y = phase = rows (ny)
        out["pixel_mm"] = max(float(fov_mm[0]) / shape[1], float(fov_mm[1]) / shape[0])
    return out


def describe_domain(records, fov_mm=None, matrix=None, geometry: dict | None = None) -> dict:
    """Domain summary from training MetadataRecords; fov_mm: one value or (min, max) in mm, or None;
    geometry: {"orientation": [...], "phase_encoding": [...], "pixel_mm": [lo, hi]} of the training images
    (the export's, `training.datasets`), or None (unknown)."""
    def values(name):
        return sorted({getattr(r, name) for r in records if getattr(r, name, None) is not None})

    if fov_mm is not None and not isinstance(fov_mm, (list, tuple)):
        fov_mm = (float(fov_mm), float(fov_mm))
    out = {"anatomy": values("anatomy"), "contrast": values("contrast"),
           "field_strength": [float(v) for v in values("field_strength")],
           "fov_mm": None if fov_mm is None else [float(fov_mm[0]), float(fov_mm[1])],
           "matrix": None if matrix is None else [int(m) for m in matrix], "count": len(records)}
    if geometry:
        out.update({k: geometry[k] for k in ("orientation", "phase_encoding", "pixel_mm") if k in geometry})
    return out


def domain_of(prior) -> dict | None:
    """The training domain stored in a prior's manifest, or None (models trained before it was recorded)."""
    return ((getattr(prior, "manifest", None) or {}).get("training") or {}).get("domain")


def domain_warnings(domain: dict | None, record=None, fov_mm=None, shape=None, resolution: int | None = None,
                    head=None) -> list[str]:
    """Sentences naming each way the scan lies outside the prior's training domain.

    record: the scan's MetadataRecord (anatomy, contrast, nominal field strength compared); fov_mm: the
    scan's reconSpace FOV (x, y) in mm; shape: the reconstructed (ny, nx); resolution: the prior's square
    size; head: an AcquisitionHeader (orientation, phase-encoding direction). Where the domain records a
    pixel-size range, the pixel size is compared instead of the matrix (a prior trained on crops of
    several grids serves other matrices)."""
    out = []
    domain = domain or {}
    geo = scan_geometry(head, fov_mm, shape)
    res = resolution or (domain.get("matrix") or [None])[0]
    if "pixel_mm" in domain and "pixel_mm" in geo:
        lo, hi = domain["pixel_mm"]
        if not lo * (1 - PIXEL_TOLERANCE) <= geo["pixel_mm"] <= hi * (1 + PIXEL_TOLERANCE):
            out.append(f"pixel size {geo['pixel_mm']:.2f} mm lies outside the prior's training range "
                       f"{lo:.2f}–{hi:.2f} mm")
    elif res and shape is not None and tuple(shape) != (res, res):
        out.append(f"the prior was trained on {res}×{res} images; this scan is {shape[0]}×{shape[1]}")
    for name, label in (("orientation", "orientation"), ("phase_encoding", "phase-encoding direction")):
        seen, v = domain.get(name) or [], geo.get(name)
        if seen and v is not None and v not in seen:
            out.append(f"{label} {v} was not in the prior's training data ({', '.join(seen)})")
    for name, label in (("anatomy", "anatomy"), ("contrast", "contrast")):
        seen = domain.get(name) or []
        v = getattr(record, name, None) if record is not None else None
        if seen and v is not None and v not in seen:
            out.append(f"{label} {v!r} was not in the prior's training data ({', '.join(map(str, seen))})")
    fs = domain.get("field_strength") or []
    v = getattr(record, "field_strength", None) if record is not None else None
    if fs and v is not None and not any(nominal_field(v) == nominal_field(f) for f in fs):
        out.append(f"field strength {v:g} T (nominal {nominal_field(v):g} T) was not in the prior's training "
                   f"data ({', '.join(f'{f:g} T' for f in fs)})")
    rng = domain.get("fov_mm")
    if rng and fov_mm is not None:
        lo, hi = rng[0] * (1 - FOV_TOLERANCE), rng[1] * (1 + FOV_TOLERANCE)
        bad = [f for f in fov_mm[:2] if not lo <= float(f) <= hi]
        if bad:
            out.append(f"the field of view {float(fov_mm[0]):g}×{float(fov_mm[1]):g} mm lies outside the "
                       f"prior's training range {rng[0]:g}–{rng[1]:g} mm (±{100 * FOV_TOLERANCE:.0f} %)")
    return out
