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

#: reconSpace FOV this far (relative) outside the training range is reported
FOV_TOLERANCE = 0.15

ADVICE = "fine-tune with LoRA (training/configs/lora_finetune.yaml) or train a prior on such data"


def describe_domain(records, fov_mm=None, matrix=None) -> dict:
    """Domain summary from training MetadataRecords; fov_mm: one value or (min, max) in mm, or None."""
    def values(name):
        return sorted({getattr(r, name) for r in records if getattr(r, name, None) is not None})

    if fov_mm is not None and not isinstance(fov_mm, (list, tuple)):
        fov_mm = (float(fov_mm), float(fov_mm))
    return {"anatomy": values("anatomy"), "contrast": values("contrast"),
            "field_strength": [float(v) for v in values("field_strength")],
            "fov_mm": None if fov_mm is None else [float(fov_mm[0]), float(fov_mm[1])],
            "matrix": None if matrix is None else [int(m) for m in matrix], "count": len(records)}


def domain_of(prior) -> dict | None:
    """The training domain stored in a prior's manifest, or None (models trained before it was recorded)."""
    return ((getattr(prior, "manifest", None) or {}).get("training") or {}).get("domain")


def domain_warnings(domain: dict | None, record=None, fov_mm=None, shape=None, resolution: int | None = None) -> list[str]:
    """Sentences naming each way the scan lies outside the prior's training domain.

    record: the scan's MetadataRecord (anatomy, contrast, field strength compared); fov_mm: the scan's
    reconSpace FOV (x, y) in mm; shape: the reconstructed (ny, nx); resolution: the prior's square size.
    """
    out = []
    res = resolution or (domain or {}).get("matrix", [None])[0]
    if res and shape is not None and tuple(shape) != (res, res):
        out.append(f"the prior was trained on {res}×{res} images; this scan is {shape[0]}×{shape[1]}")
    if domain:
        for name, label in (("anatomy", "anatomy"), ("contrast", "contrast")):
            seen = domain.get(name) or []
            v = getattr(record, name, None) if record is not None else None
            if seen and v is not None and v not in seen:
                out.append(f"{label} {v!r} was not in the prior's training data ({', '.join(map(str, seen))})")
        fs = domain.get("field_strength") or []
        v = getattr(record, "field_strength", None) if record is not None else None
        if fs and v is not None and not any(abs(float(v) - f) < 0.05 for f in fs):
            out.append(f"field strength {v:g} T was not in the prior's training data "
                       f"({', '.join(f'{f:g} T' for f in fs)})")
        rng = domain.get("fov_mm")
        if rng and fov_mm is not None:
            lo, hi = rng[0] * (1 - FOV_TOLERANCE), rng[1] * (1 + FOV_TOLERANCE)
            bad = [f for f in fov_mm[:2] if not lo <= float(f) <= hi]
            if bad:
                out.append(f"the field of view {float(fov_mm[0]):g}×{float(fov_mm[1]):g} mm lies outside the "
                           f"prior's training range {rng[0]:g}–{rng[1]:g} mm (±{100 * FOV_TOLERANCE:.0f} %)")
    return out
