"""Reconstruction parameters shared by every front door (replay, Gadgetron gadget, MRD server).

`ReconParams` holds typed values; `ReconParams.from_mapping` parses the string values that come from
Gadgetron `<property name=… value=…/>`, an MRD JSON config or the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from recon_core.errors import InputError

METHODS = ("dds", "sense", "l1wavelet", "tv", "zerofilled")
DEVICES_HINT = "auto, cpu or cuda[:N]"
PRECISIONS = ("fp32", "bf16", "fp16")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


@dataclass
class ReconParams:
    """Typed reconstruction parameters (defaults as in CONTRACTS.md).

    model: "default" or a directory holding a saved prior; method: dds|sense|l1wavelet|tv|zerofilled;
    cfg: guidance weight w; nfe: DDS steps; eta, gamma, cg_iters: DDS settings; samples: posterior
    samples (>1 gives a std map); seed; device: auto|cpu|cuda; precision: fp32|bf16|fp16;
    anatomy/contrast/pathology: metadata overrides (pathology: list of names, [] = none);
    send_*: which image series to emit; max_matrix: refuse larger matrices (either axis).
    """

    model: str = "default"
    method: str = "dds"
    cfg: float = 2.0
    nfe: int = 50
    eta: float = 0.8
    gamma: float = 5.0
    cg_iters: int = 5
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    anatomy: str | None = None
    contrast: str | None = None
    pathology: list[str] | None = None
    send_magnitude: bool = True
    send_phase: bool = False
    send_std: bool = False
    send_zerofilled: bool = False
    max_matrix: int = 512
    extra: dict = field(default_factory=dict)  # unknown keys, kept for logging

    def __post_init__(self):
        self.validate()

    def validate(self) -> "ReconParams":
        """Raise InputError for out-of-range values; returns self."""
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.nfe < 1:
            raise InputError(f"nfe must be >= 1, got {self.nfe}")
        if self.samples < 1:
            raise InputError(f"samples must be >= 1, got {self.samples}")
        if self.cg_iters < 0:
            raise InputError(f"cg_iters must be >= 0, got {self.cg_iters}")
        if self.max_matrix < 1:
            raise InputError(f"max_matrix must be >= 1, got {self.max_matrix}")
        if not (self.cfg == self.cfg) or self.cfg < 0:
            raise InputError(f"cfg must be a number >= 0, got {self.cfg}")
        if not self.model:
            raise InputError("model must be 'default' or a directory, got an empty string")
        return self

    def overrides(self) -> dict:
        """Metadata overrides for `record_from_header` (only the fields that were set)."""
        out = {}
        if self.anatomy is not None:
            out["anatomy"] = self.anatomy
        if self.contrast is not None:
            out["contrast"] = self.contrast
        if self.pathology is not None:
            out["pathology"] = list(self.pathology)
        return out

    def replace(self, **kw) -> "ReconParams":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object] | None, strict: bool = False) -> "ReconParams":
        """Parse string (or already typed) values keyed by field name; '-' and '_' are equivalent.

        Empty strings / None leave the default. Unknown keys go to `.extra` (or raise if strict).
        """
        kw: dict = {}
        extra: dict = {}
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        for raw_key, value in (mapping or {}).items():
            key = str(raw_key).strip().replace("-", "_").lower()
            if key not in fields:
                if strict:
                    raise InputError(f"unknown reconstruction parameter {raw_key!r}; expected one of {sorted(fields)}")
                extra[str(raw_key)] = value
                continue
            if value is None or (isinstance(value, str) and value.strip() == "" and key != "pathology"):
                continue
            kw[key] = _parse(key, value)
        return cls(**kw, extra=extra)


_INT = {"nfe", "cg_iters", "samples", "seed", "max_matrix"}
_FLOAT = {"cfg", "eta", "gamma"}
_BOOL = {"send_magnitude", "send_phase", "send_std", "send_zerofilled"}
_STR = {"model", "method", "device", "precision"}
_OPT_STR = {"anatomy", "contrast"}


def _parse(key: str, value):
    try:
        if key in _INT:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if key in _FLOAT:
            return float(value)
        if key in _BOOL:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError
        if key in _STR:
            s = str(value).strip()
            return s.lower() if key in ("method", "device", "precision") else s
        if key in _OPT_STR:
            s = str(value).strip()
            return s or None
        if key == "pathology":
            if isinstance(value, (list, tuple)):
                return [str(v).strip() for v in value if str(v).strip()]
            s = str(value).strip()
            if s.lower() in ("none", ""):
                return []
            return [p.strip() for p in s.split(",") if p.strip()]
    except (TypeError, ValueError):
        kind = "an integer" if key in _INT else "a number" if key in _FLOAT else "true/false" if key in _BOOL else "a string"
        raise InputError(f"parameter {key} must be {kind}, got {value!r}") from None
    raise InputError(f"unknown reconstruction parameter {key!r}")
