"""`MetadataRecord`: the metadata of one slice, every field optional.

Units: tr, te, ti in ms; flip_angle in degrees; field_strength in tesla; age in whole years.
`None` means unknown/missing (or dropped for classifier-free guidance). For `pathology`, `None` means
unknown and `[]` means "no pathology" (a real value, distinct from unknown).
The record is JSON-able through `to_dict()` / `from_dict()`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from recon_core.errors import InputError

#: Categorical (string) fields.
CATEGORICAL_FIELDS = ("anatomy", "contrast", "sequence", "sex")
#: Numeric fields (int for slice/age, float for the rest).
NUMERIC_FIELDS = ("slice", "tr", "te", "ti", "flip_angle", "field_strength", "age")
#: The MR-parameter block that ContextMRI drops as one unit (p = 0.5 in training).
PARAM_BLOCK_FIELDS = ("sequence", "tr", "te", "ti", "flip_angle")
_INT_FIELDS = ("slice", "age")
_SEX_ALIASES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}


@dataclass
class MetadataRecord:
    """Metadata of one slice. All fields optional (None = missing)."""

    anatomy: str | None = None  # lower case, e.g. "brain", "knee"
    slice: int | None = None  # slice index (0-based, as in fastMRI/ContextMRI prompts)
    contrast: str | None = None  # e.g. "T1", "T1POST", "T1PRE", "T2", "FLAIR", "PD", "PDFS"
    sequence: str | None = None  # ISMRMRD sequence_type as given, e.g. "TurboSpinEcho", "Flash"
    tr: float | None = None  # ms
    te: float | None = None  # ms
    ti: float | None = None  # ms
    flip_angle: float | None = None  # degrees
    field_strength: float | None = None  # T
    age: int | None = None  # years
    sex: str | None = None  # "M" / "F" / "O"
    pathology: list[str] | None = field(default=None)  # None = unknown, [] = none

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> "MetadataRecord":
        """Coerce types in place and raise InputError naming the field on bad values."""
        for name in CATEGORICAL_FIELDS:
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, str):
                raise InputError(f"metadata field {name!r}: expected a string, got {v!r}")
            v = v.strip()
            if name == "anatomy":
                v = v.lower()
            if name == "sex":
                key = v.upper()
                if key not in _SEX_ALIASES:
                    raise InputError(f"metadata field 'sex': expected M, F or O, got {v!r}")
                v = _SEX_ALIASES[key]
            setattr(self, name, v or None)
        for name in NUMERIC_FIELDS:
            v = getattr(self, name)
            if v is None:
                continue
            setattr(self, name, coerce_number(name, v, integer=name in _INT_FIELDS))
        if self.pathology is not None:
            p = self.pathology
            if isinstance(p, str):
                p = parse_pathology(p)
            if not isinstance(p, (list, tuple)) or not all(isinstance(s, str) for s in p):
                raise InputError(f"metadata field 'pathology': expected a list of strings, got {p!r}")
            self.pathology = _clean_labels(p)
        return self

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with every field (None for missing)."""
        d = dataclasses.asdict(self)
        if d["pathology"] is not None:
            d["pathology"] = list(d["pathology"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetadataRecord":
        """Inverse of `to_dict`; unknown keys raise InputError (typos must not pass silently)."""
        if not isinstance(d, dict):
            raise InputError(f"metadata record: expected a dict, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        extra = sorted(set(d) - names)
        if extra:
            raise InputError(f"metadata record: unknown field(s) {extra}; expected some of {sorted(names)}")
        return cls(**{k: d[k] for k in d})

    def replace(self, **kw) -> "MetadataRecord":
        """A copy with some fields replaced (validated)."""
        names = {f.name for f in fields(self)}
        extra = sorted(set(kw) - names)
        if extra:
            raise InputError(f"metadata record: unknown field(s) {extra}; expected some of {sorted(names)}")
        d = self.to_dict()
        d.update(kw)
        return MetadataRecord(**d)

    def is_empty(self) -> bool:
        """True when every field is missing (the unconditional record)."""
        return all(getattr(self, f.name) is None for f in fields(self))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def coerce_number(name: str, value: Any, integer: bool = False):
    """Parse a numeric field (str/int/float); non-numeric, non-finite or negative → InputError."""
    if isinstance(value, bool):
        raise InputError(f"metadata field {name!r}: expected a number, got {value!r}")
    if isinstance(value, str):
        s = value.strip()
        try:
            value = float(s)
        except ValueError:
            raise InputError(f"metadata field {name!r}: expected a number, got {s!r}") from None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"metadata field {name!r}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise InputError(f"metadata field {name!r}: expected a finite number, got {value!r}")
    if x < 0:
        raise InputError(f"metadata field {name!r}: expected a value >= 0, got {value!r}")
    if integer:
        if x != int(x):
            raise InputError(f"metadata field {name!r}: expected an integer, got {value!r}")
        return int(x)
    return x


def parse_pathology(text: str) -> list[str]:
    """Comma-separated labels → list of labels; "none" (or "normal") → [] = explicitly no pathology."""
    parts = [p.strip() for p in text.split(",")]
    parts = [p for p in parts if p]
    if len(parts) == 1 and parts[0].lower() in ("none", "no", "normal", "healthy"):
        return []
    return parts


def _clean_labels(labels) -> list[str]:
    out = []
    for s in labels:
        s = s.strip()
        if s and s.lower() != "none" and s not in out:
            out.append(s)
    return out


def format_number(x: float | int) -> str:
    """Print a number as the scanner gives it, without spurious decimals: 3120.0 → "3120", 20.36 → "20.36"."""
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(x)
