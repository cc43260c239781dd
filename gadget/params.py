"""Reconstruction parameters shared by every front door (replay, Gadgetron gadget, MRD server).

`ReconParams` = the sampler settings (`recon_core.samplers.SamplerConfig`, composed from every registered
sampler's declaration) + what a
front door adds: model, method, device, metadata overrides, which series to send and the matrix limit.
`ReconParams.from_mapping` parses the string values that come from Gadgetron `<property name=… value=…/>`,
an MRD JSON config or the command line; every value is checked (type, finite, range) with one line
naming the parameter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

from recon_core import baselines, samplers
from recon_core.errors import InputError
from recon_core.samplers import DIFFUSION_METHODS, SamplerConfig  # noqa: F401  (DIFFUSION_METHODS re-exported)
from recon_core.settings import _KEEP, PRECISIONS, _f, parse_value  # noqa: F401  (PRECISIONS re-exported)

#: the classical methods a front door offers: the registry's (`recon_core.baselines`)
CLASSICAL_METHODS = baselines.methods()
METHODS = DIFFUSION_METHODS + CLASSICAL_METHODS


def all_methods() -> tuple:
    """Every method a front door accepts now: the registered samplers and baselines (run-time ones included)."""
    return samplers.diffusion_methods() + baselines.methods()


def is_diffusion(method: str) -> bool:
    """Whether `method` is a diffusion sampler (needs a prior) rather than a classical reconstruction."""
    return method in samplers.SAMPLERS
IMAGE_FORMATS = ("uint16", "float", "complex")
DEVICES_HINT = "auto, cpu or cuda[:N]"


@dataclass(frozen=True)
class ReconParams(SamplerConfig):
    """SamplerConfig + front-door parameters.

    model: "default" or a directory holding a saved prior; method: dds|scoremri|ldpm|sense|grappa|l1wavelet|l1wavelet-shift|tv|zerofilled|bart-w|bart-tv;
    device: auto|cpu|cuda; anatomy/contrast/pathology: metadata overrides (pathology: list of names,
    [] = none); send_*: which image series to emit; max_matrix: refuse larger matrices (either axis);
    image_format/bits_stored: the pixel convention of the images sent (`gadget.images`).
    """

    # the front doors self-validate by default (the sampler library does not: evaluations score DDS alone);
    # measured and costed in README "Self-validation"
    self_validate: bool = _f(True, "bool", "hold out a part of the measured samples, reconstruct from the rest "
                             "with each candidate (recon_core/samplers/selfval.py), keep the one that predicts them "
                             "best, then reconstruct with all data (the first selfval_slices slices of a series)")
    model: str = _f("default", "str", "prior: 'default' (shipped model) or a directory holding a saved prior")
    method: str = _f("dds", "str", f"reconstruction method ({'|'.join(METHODS)})", lower=True)
    device: str = _f("auto", "str", f"device ({DEVICES_HINT})")
    anatomy: str | None = _f(None, "optstr", "metadata override; empty = from the ISMRMRD header", optional=True)
    contrast: str | None = _f(None, "optstr", "metadata override; empty = from the ISMRMRD header", optional=True)
    pathology: list[str] | None = _f(None, "list", "comma list, 'none' = no pathology; empty = unknown",
                                     optional=True)
    send_magnitude: bool = _f(True, "bool", "send the magnitude series")
    send_phase: bool = _f(False, "bool", "send a phase series")
    send_std: bool = _f(False, "bool", "send the posterior std series (samples > 1)")
    send_zerofilled: bool = _f(False, "bool", "send a zero-filled series")
    max_matrix: int = _f(512, "int", "refuse matrices larger than this (either axis)", lo=1, hi=1 << 20)
    slice_batch: int = _f(0, "int", "diffusion: reconstruct this many completed slices together (one network "
                          "batch; up to n-1 slices more latency); 0: auto (1 on a CPU, 8 on a GPU)", lo=0, hi=256)
    compress_coils_above: int = _f(16, "int", "SVD coil compression for scans with more coils than this "
                                   "(recon_core/raw/coil_compression.py; 0: always)", lo=0, hi=1024)
    coil_energy: float = _f(0.99, "float", "coil compression: keep this fraction of the calibration energy",
                            lo=0.5, hi=1.0)
    virtual_coils: int = _f(0, "int", "coil compression: at most this many virtual coils (0: as the energy asks)",
                            lo=0, hi=1024)
    image_format: str = _f("uint16", "str", "pixels sent: uint16 (scaled to bits_stored, the scanner's own "
                           "convention; the float scale in meta), float (scanner units) or complex (magnitude "
                           "series as complex)", choices=IMAGE_FORMATS)
    bits_stored: int = _f(12, "int", "stored bits of uint16 images (full scale = 2^bits - 1)", lo=8, hi=16)
    extra: dict = field(default_factory=dict)  # unknown keys, kept for logging

    def validate(self) -> "ReconParams":
        """Raise InputError for out-of-range values; returns self."""
        SamplerConfig.validate(self)
        if self.method not in all_methods():
            raise InputError(f"parameter method must be one of {', '.join(all_methods())}, got {self.method!r}")
        if not self.model:
            raise InputError("model must be 'default' or a directory, got an empty string")
        return self

    @property
    def prior_model(self) -> str:
        """The model to load: `model`, except "default" → the sampler's own default (ldpm: the shipped latent
        prior)."""
        if self.model == "default" and is_diffusion(self.method):
            return samplers.get_spec(self.method).default_model
        return self.model

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

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def field_names(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object] | None, strict: bool = False, **fixed) -> "ReconParams":
        """Parse string (or already typed) values keyed by field name; '-' and '_' are equivalent.

        Empty strings / None leave the default (pathology: '' = unknown, 'none' = no pathology). Unknown
        keys go to `.extra` (or raise if strict)."""
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        kw: dict = {}
        extra: dict = {}
        for raw_key, value in (mapping or {}).items():
            key = str(raw_key).strip().replace("-", "_").lower()
            if key not in fields:
                if strict:
                    raise InputError(f"unknown reconstruction parameter {raw_key!r}; expected one of {sorted(fields)}")
                extra[str(raw_key)] = value
                continue
            parsed = parse_value(fields[key], value)
            if parsed is _KEEP:
                continue
            kw[key] = parsed
        kw.update(fixed)
        return cls(**kw, extra=extra)


def properties_from_xml(root) -> dict:
    """{name: value} of every <property name=".." value=".."/> (or <name>/<value> children) under `root`.

    Empty values are dropped (an empty property means "use the default").
    """
    out = {}
    if root is None:
        return out
    for prop in root.iter("property"):
        name = prop.get("name")
        value = prop.get("value")
        if name is None and prop.find("name") is not None:
            name = prop.findtext("name")
            value = prop.findtext("value")
        if name is None:
            continue
        if value is None or value.strip() == "":
            continue
        out[name.strip()] = value.strip()
    return out
