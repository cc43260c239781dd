"""The declaration machinery of sampler settings, and the settings every diffusion sampler shares.

A setting is a frozen-dataclass field made by `_f` whose metadata carry its type, bounds, help text, whether
an MRD client may set it (`client`) and its cost ceiling for clients (`ceiling`). `CommonSettings` holds the
fields every sampler reads (DDIM grid, CFG, data consistency, warm start, samples, precision, scale); each
sampler module (`recon_core/samplers/`) declares a dataclass of its own fields, and `compose_config` joins
them: one sampler's config (e.g. `samplers.dds.DDSConfig` = common + DDS's) or every registered sampler's
(`recon_core.samplers.SamplerConfig`, which the front doors extend: `gadget.params.ReconParams`).
`ConfigBase` gives every composed config `from_mapping` (strings of Gadgetron properties, MRD JSON, CLI),
`validate` (one line naming the parameter), `add_arguments`/`from_args` (CLI flags) and `to_meta`.

Defaults and the measurement that chose them: README "Sampler defaults" (issue 13).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .errors import InputError

DTYPE_PRECISIONS = ("fp32", "bf16", "fp16")     # network arithmetic: the one list of precision names
PRECISIONS = ("auto",) + DTYPE_PRECISIONS       # auto: a timed fp32-vs-bf16 trial (recon_core.precision)
#: the network's runtimes (recon_core.prior.engine)
ENGINES = ("torch", "torch-cl", "onnxruntime", "openvino", "openvino-streams")
ENGINE_CHOICES = ("auto",) + ENGINES
SCALE_METHODS = ("sense", "zerofilled")
WARM_INITS = ("sense", "zerofilled", "l1wavelet")
DATA_WEIGHTS = ("fixed", "noise")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _f(default, kind, help, lo=None, hi=None, lo_open=False, choices=None, optional=False, cli=True,
       client=False, ceiling=None, lower=False):
    """A dataclass field with the metadata the generic parser/validator/CLI use; `client`: an MRD client may
    set it (`gadget.client_policy`), `ceiling`: the most a client may ask for (a cost: nfe, samples, …);
    `lower`: string values are case-insensitive (as any field with `choices`)."""
    return field(default=default, metadata={"kind": kind, "help": help, "lo": lo, "hi": hi, "lo_open": lo_open,
                                            "choices": choices, "optional": optional, "cli": cli,
                                            "client": client, "ceiling": ceiling, "lower": lower})


class ConfigBase:
    """Methods of every composed settings class (see module docstring); `_root` is the composed sampler
    config a subclass (ReconParams) extends."""

    _root = None

    def __post_init__(self):
        self.validate()

    # ---- validation ---------------------------------------------------------------------------
    def validate(self):
        """Raise InputError naming the parameter for a wrong type, a non-finite or out-of-range value."""
        for f in dataclasses.fields(self):
            if "kind" in f.metadata:
                _check_value(f, getattr(self, f.name))
        return self

    # ---- conversions --------------------------------------------------------------------------
    @classmethod
    def sampler_fields(cls) -> tuple:
        """Names of the sampler settings (the composed config's fields, not those a subclass such as
        ReconParams adds)."""
        return tuple(f.name for f in dataclasses.fields(cls._root))

    def sampler(self):
        """The plain sampler-config part of this object (for subclasses such as ReconParams)."""
        root = type(self)._root
        return root(**{k: getattr(self, k) for k in root.sampler_fields()})

    def to_meta(self) -> dict:
        """The sampler settings as a flat dict of JSON-able values (image meta, results, bench JSON)."""
        return {k: getattr(self, k) for k in self.sampler_fields()}

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object] | None, strict: bool = True, **fixed):
        """Parse string (or typed) values keyed by field name ('-' ≡ '_', case-insensitive); None or ''
        keeps the default. Unknown keys raise (strict) or are ignored. `fixed` values are taken as they are."""
        known = {f.name: f for f in dataclasses.fields(cls) if "kind" in f.metadata}
        kw = {}
        for raw_key, value in (mapping or {}).items():
            key = str(raw_key).strip().replace("-", "_").lower()
            if key not in known:
                if strict:
                    raise InputError(f"unknown parameter {raw_key!r}; expected one of {sorted(known)}")
                continue
            parsed = parse_value(known[key], value)
            if parsed is not _KEEP:
                kw[key] = parsed
        kw.update(fixed)
        return cls(**kw)

    # ---- command line -------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser, exclude=(), defaults: Mapping | None = None, only=None) -> None:
        """Add one `--flag` per sampler field (strings, parsed by `from_args`); `defaults` changes shown defaults."""
        defaults = dict(defaults or {})
        for f in dataclasses.fields(cls._root):
            if f.name in exclude or (only is not None and f.name not in only) or not f.metadata.get("cli"):
                continue
            d = defaults.get(f.name, f.default)
            flag = "--" + f.name.replace("_", "-")
            choices = f" ({'|'.join(f.metadata['choices'])})" if f.metadata["choices"] else ""
            parser.add_argument(flag, dest=f"dds_{f.name}", default=None, metavar=f.name.upper(),
                                help=f"{f.metadata['help']}{choices}; default {d}".replace("%", "%%"))   # argparse
        parser.set_defaults(_dds_defaults=defaults)

    @classmethod
    def from_args(cls, args, **fixed):
        """The config from `add_arguments` flags (+ their changed defaults), then `fixed` values."""
        mapping = dict(getattr(args, "_dds_defaults", {}) or {})
        for name in cls.sampler_fields():
            v = getattr(args, f"dds_{name}", None)
            if v is not None:
                mapping[name] = v
        return cls.from_mapping(mapping, strict=False, **fixed)



@dataclass(frozen=True)
class CommonSettings(ConfigBase):
    """The settings every diffusion sampler reads (recon_core/samplers/base.py and each sampler)."""

    nfe: int = _f(50, "int", "DDS network evaluations (DDIM steps of the full grid)", lo=1, hi=1000, client=True, ceiling=200)
    cfg: float = _f(2.0, "float", "classifier-free guidance weight w (0: unconditional, 1: conditional only)",
                    lo=0.0, hi=20.0, client=True)
    eta: float = _f(1.0, "float", "DDIM stochasticity η (0: deterministic)", lo=0.0, hi=1.0, client=True)
    gamma: float = _f(20.0, "float", "data-consistency weight γ of each step's CG solve", lo=0.0, hi=1e6, client=True)
    cg_iters: int = _f(5, "int", "CG iterations of data consistency per step", lo=0, hi=100, client=True, ceiling=20)
    final_cg_iters: int = _f(0, "int", "extra CG iterations (same γ) on the final estimate", lo=0, hi=200, client=True, ceiling=50)
    warm_start: float | None = _f(0.3, "float", "start at t0 = this fraction of the diffusion time from the "
                                  "forward-noised classical estimate ('none': cold start from noise)",
                                  lo=0.0, hi=1.0, lo_open=True, optional=True, client=True)
    warm_init: str = _f("sense", "str", "classical estimate a warm start noises", choices=WARM_INITS, client=True)
    samples: int = _f(1, "int", "posterior samples (> 1 adds a std map)", lo=1, hi=64, client=True, ceiling=8)
    seed: int = _f(0, "int", "random seed (sample k uses seed + k)", lo=0, hi=2 ** 63 - 1, client=True)
    precision: str = _f("auto", "str", "network autocast precision (auto: a timed fp32-vs-bf16 trial picks bf16 "
                        "only where faster and accurate; recorded in image meta)", choices=PRECISIONS)
    engine: str = _f("auto", "str", "network runtime (auto: a timed trial of every installed engine × precision "
                     "picks the fastest whose output stays within 2 % of eager fp32; cached per machine; recorded "
                     "in image meta)", choices=ENGINE_CHOICES)
    scale: str = _f("sense", "str", "how the intensity normalisation is estimated from the data",
                    choices=SCALE_METHODS)
    clip_x0: float | None = _f(None, "float", "clamp the Tweedie estimate to ± this (normalised units)",
                               lo=0.0, hi=1e3, lo_open=True, optional=True)
    data_weight: str = _f("fixed", "str", "data-consistency weight: fixed (γ) or noise (γ_eff = min(γ, "
                          "prior_error / σ²) with σ the k-space noise measured in the calibration block: the prior "
                          "may remove noise where the data are noisy)", choices=DATA_WEIGHTS)
    prior_error: float = _f(1e-3, "float", "data_weight noise: the prior's error variance per pixel "
                            "(normalised units)", lo=0.0, hi=10.0, lo_open=True)


CommonSettings._root = CommonSettings


def compose_config(name: str, parts, doc: str = ""):
    """A frozen settings class with CommonSettings' fields, then those of each dataclass in `parts` (in order);
    the methods of ConfigBase. A field declared twice (two samplers) is an error."""
    seen = {f.name for f in dataclasses.fields(CommonSettings)}
    for part in parts:
        clash = seen & {f.name for f in dataclasses.fields(part)}
        if clash:
            raise TypeError(f"{part.__name__} redeclares setting(s) {sorted(clash)}")
        seen |= {f.name for f in dataclasses.fields(part)}
    cls = dataclass(frozen=True)(type(name, tuple(reversed(tuple(parts))) + (CommonSettings,),
                                      {"__doc__": doc or f"{name}: the settings of {', '.join(p.__name__ for p in parts)}",
                                       "__module__": CommonSettings.__module__}))
    cls._root = cls
    return cls


def client_fields(cls) -> dict:
    """{field: ceiling or None} of the fields of a settings class an MRD client may set."""
    return {f.name: f.metadata.get("ceiling") for f in dataclasses.fields(cls) if f.metadata.get("client")}


class _Keep:
    pass


_KEEP = _Keep()


def _kind_text(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true/false", "str": "a string",
            "optstr": "a string", "list": "a comma-separated list"}[kind]


def parse_value(f: dataclasses.Field, value):
    """One field's value from a string or a typed value; raises InputError naming the field."""
    md, name = f.metadata, f.name
    if value is None:
        return _KEEP
    if md["kind"] == "list":
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        s = str(value).strip()
        if s == "":
            return _KEEP
        if s.lower() == "none":
            return []
        return [p.strip() for p in s.split(",") if p.strip()]
    if isinstance(value, str):
        s = value.strip()
        if s == "":
            return _KEEP
        if md.get("optional") and s.lower() in ("none", "null", "off"):
            return None
    kind = md["kind"]
    try:
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError
            x = float(value)
            if not math.isfinite(x) or x != int(x):
                raise ValueError
            return int(x)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError
        if kind in ("str", "optstr") and not isinstance(value, str):
            raise ValueError
        s = str(value).strip()
        if kind == "optstr":
            return s or None
        return s.lower() if md.get("choices") or md.get("lower") or name in ("device", "precision") else s
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"parameter {name} must be {_kind_text(kind)}, got {value!r}") from None


def _check_value(f: dataclasses.Field, v) -> None:
    md, name = f.metadata, f.name
    if v is None:
        if md.get("optional"):
            return
        raise InputError(f"parameter {name} must be set")
    kind = md["kind"]
    if kind == "int" and (isinstance(v, bool) or not isinstance(v, int)):
        try:
            if isinstance(v, np.integer):
                v = int(v)
            else:
                raise TypeError
        except TypeError:
            raise InputError(f"parameter {name} must be an integer, got {v!r}") from None
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"parameter {name} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise InputError(f"parameter {name} must be finite, got {v!r}")
    if kind == "bool" and not isinstance(v, bool):
        raise InputError(f"parameter {name} must be true/false, got {v!r}")
    if kind in ("str", "optstr") and not isinstance(v, str):
        raise InputError(f"parameter {name} must be a string, got {v!r}")
    if kind == "list" and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
        raise InputError(f"parameter {name} must be a list of strings, got {v!r}")
    if md.get("choices") and v not in md["choices"]:
        raise InputError(f"parameter {name} must be one of {', '.join(md['choices'])}, got {v!r}")
    lo, hi = md.get("lo"), md.get("hi")
    if kind in ("int", "float"):
        if lo is not None and (v <= lo if md.get("lo_open") else v < lo):
            op = ">" if md.get("lo_open") else ">="
            raise InputError(f"parameter {name} must be {op} {lo:g}{_range(md)}, got {v!r}")
        if hi is not None and v > hi:
            raise InputError(f"parameter {name} must be <= {hi:g}{_range(md)}, got {v!r}")


def _range(md) -> str:
    lo, hi = md.get("lo"), md.get("hi")
    if lo is None or hi is None:
        return ""
    left = "(" if md.get("lo_open") else "["
    return f" (range {left}{lo:g}, {hi:g}])"
