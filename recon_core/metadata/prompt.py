"""`MetadataRecord` → the text prompt a ContextMRI checkpoint expects.

ContextMRI (fastMRI) format, missing fields left out:
    "{anatomy}, Slice {slice}, {contrast}[, Pathology: a, b], Sequence: {seq}, TR: {tr}, TE: {te}, TI: {ti}, Flip angle: {fa}"
    e.g. "knee, Slice 20, PDFS, Sequence: TurboSpinEcho, TR: 3120, TE: 33, TI: 100, Flip angle: 140".
SKM-TEA format: "{Sequence}, {Anatomy}, Slice {slice}, Age: {age}, Sex: {sex}, TR: {tr}, TE: {te}, Flip Angle: {fa}"
    e.g. "Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.36, TE: 6.428, Flip Angle: 20" (sequence and anatomy
    capitalised as upstream; a pathology, when given, goes after Sex as ", Pathology: ...").
Numbers are printed without spurious decimals (3120.0 → "3120", 20.36 → "20.36"). An empty pathology list
(explicitly no pathology) is left out, as upstream does. The all-missing record gives "" (unconditional).
"""

from __future__ import annotations

from recon_core.errors import InputError
from recon_core.metadata.record import MetadataRecord, format_number

VARIANTS = ("contextmri", "skmtea")


def _as_record(record) -> MetadataRecord:
    if isinstance(record, MetadataRecord):
        return record
    if isinstance(record, dict):
        return MetadataRecord.from_dict(record)
    raise InputError(f"build_prompt: expected a MetadataRecord or dict, got {type(record).__name__}")


def build_prompt(record, variant: str = "contextmri") -> str:
    """One record (MetadataRecord or its dict) → prompt string in the given variant's format."""
    r = _as_record(record)
    parts: list[str] = []
    if variant == "contextmri":
        if r.anatomy is not None:
            parts.append(r.anatomy)
        if r.slice is not None:
            parts.append(f"Slice {r.slice}")
        if r.contrast is not None:
            parts.append(r.contrast)
        if r.pathology:
            parts.append("Pathology: " + ", ".join(r.pathology))
        if r.sequence is not None:
            parts.append(f"Sequence: {r.sequence}")
        for label, v in (("TR", r.tr), ("TE", r.te), ("TI", r.ti), ("Flip angle", r.flip_angle)):
            if v is not None:
                parts.append(f"{label}: {format_number(v)}")
    elif variant == "skmtea":
        if r.sequence is not None:
            parts.append(r.sequence.capitalize())
        if r.anatomy is not None:
            parts.append(r.anatomy.capitalize())
        if r.slice is not None:
            parts.append(f"Slice {r.slice}")
        if r.age is not None:
            parts.append(f"Age: {r.age}")
        if r.sex is not None:
            parts.append(f"Sex: {r.sex}")
        if r.pathology:
            parts.append("Pathology: " + ", ".join(r.pathology))
        for label, v in (("TR", r.tr), ("TE", r.te), ("Flip Angle", r.flip_angle)):
            if v is not None:
                parts.append(f"{label}: {format_number(v)}")
    else:
        raise InputError(f"prompt variant: expected one of {VARIANTS}, got {variant!r}")
    return ", ".join(parts)


def build_prompts(records, variant: str = "contextmri") -> list[str]:
    """List of records → list of prompts."""
    return [build_prompt(r, variant) for r in records]
