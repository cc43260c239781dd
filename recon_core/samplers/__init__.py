"""The diffusion samplers by name: the one registry every front door, the CLI and the evaluation read.

    dds       Decomposed Diffusion Sampler (samplers/dds.py), pixel prior; wrapped in the per-scan
              self-validation (samplers/selfval.py, active when `self_validate` is on)
    scoremri  Score-MRI predictor-corrector (samplers/scoremri.py), pixel prior
    ldpm      LDPM dual-stage latent sampler (samplers/ldpm.py), latent prior

Each sampler module declares a `SPEC` (`spec.SamplerSpec`: its reconstruct function, its own settings
dataclass, prior space, default model, NFE field); its settings fields carry whether an MRD client may set them
and their cost ceilings. From the registry come: `DIFFUSION_METHODS`, `SamplerConfig` (every sampler's settings
in one flat config: the CLI flags, the Gadgetron properties, MRD parameters), `client_settings()` (the
client allow-list and ceilings). Adding a sampler = one module with a SPEC + one entry in `_BUILTIN` (or
`register(spec)` at run time for a sampler without settings of its own; see DESIGN.md).
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np

from ..errors import InputError
from ..metadata.header import record_from_header
from ..raw.image import slice_maps
from ..settings import CommonSettings, client_fields, compose_config
from . import dds, ldpm, scoremri
from .base import SamplerResult
from .selfval import self_validated
from .spec import SamplerSpec

_BUILTIN = (dds.SPEC, scoremri.SPEC, ldpm.SPEC)
SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in _BUILTIN}
DIFFUSION_METHODS = tuple(SAMPLERS)   # the built-in names (a run-time `register` adds to `SAMPLERS` only)

SamplerConfig = compose_config("SamplerConfig", [s.options for s in _BUILTIN if s.options is not None],
                               "Every registered sampler's settings in one flat config (the front doors' view).")

__all__ = ["DIFFUSION_METHODS", "SAMPLERS", "SamplerConfig", "SamplerResult", "SamplerSpec", "diffusion_methods",
           "diffusion_sampler", "get_spec", "reconstruct_slice", "reconstruct_slices", "register", "sample_slices",
           "client_settings"]


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler at run time (its name becomes a valid `method` everywhere that asks `diffusion_methods()`).
    Its own settings must be None: flat configs are composed once, at import, from the built-in samplers."""
    if spec.name in SAMPLERS:
        raise InputError(f"a sampler named {spec.name!r} is already registered")
    if spec.options is not None:
        raise InputError(f"sampler {spec.name!r}: settings of a run-time sampler must be None (add it to _BUILTIN)")
    SAMPLERS[spec.name] = spec
    return spec


def diffusion_methods() -> tuple:
    """The method names of every registered sampler."""
    return tuple(SAMPLERS)


def get_spec(method: str) -> SamplerSpec:
    if method not in SAMPLERS:
        raise InputError(f"unknown diffusion method {method!r}: expected one of {', '.join(SAMPLERS)}")
    return SAMPLERS[method]


def diffusion_sampler(method: str, validated: bool = True):
    """The reconstruction function of a diffusion method (signature of `samplers.dds.dds_reconstruct`); one
    whose spec says `validated` comes wrapped in the per-scan self-validation unless `validated` is False."""
    spec = get_spec(method)
    return partial(self_validated, spec.reconstruct) if validated and spec.validated else spec.reconstruct


def client_settings() -> dict:
    """{setting: ceiling or None} an MRD client may set, over the common settings and every sampler's own."""
    out = client_fields(CommonSettings)
    for spec in SAMPLERS.values():
        if spec.options is not None:
            out.update(client_fields(spec.options))
    return out


def reconstruct_slice(sd, header, prior, config, method: str = "dds") -> tuple[np.ndarray, np.ndarray, dict]:
    """The scanner's reconstruction of one raw slice (`recon_core.raw` SliceData) with a diffusion method:
    its coil maps (`raw.image.slice_maps`) and the header's metadata record → (image (ny, nx) complex64,
    scanner units of the prewhitened data, maps (C, ny, nx), info {seconds, maps, coverage, timings; std (ny, nx)
    float32 when config.samples > 1})."""
    return reconstruct_slices([sd], header, prior, config, method)[0]


def reconstruct_slices(sds: list, header, prior, config, method: str = "dds") -> list:
    """`reconstruct_slice` of several raw slices of one shape in one sampler call (one network batch; per-slice
    noise, scale and CG, so each image is the one it would be alone, up to the network's batch numerics) →
    [(image, maps, info)] in order; info["seconds"] is the batch's sampler time shared equally, info["self_validation"]
    the slice's choice when `config.self_validate`."""
    if len({tuple(sd.kspace.shape) for sd in sds}) > 1:
        raise InputError("reconstruct_slices: the slices of one batch must share their k-space shape")
    cal = [{} for _ in sds]
    maps = [slice_maps(sd, info=c) for sd, c in zip(sds, cal)]
    records = [record_from_header(header, slice_index=sd.key.slice) for sd in sds]
    t0 = time.perf_counter()
    res = sample_slices(method, prior, [sd.kspace for sd in sds], maps, [sd.mask for sd in sds],
                        None if config.cfg == 0 else records, config)
    share = (time.perf_counter() - t0) / len(sds)
    timings = {k: v for k, v in (res.timings or {}).items() if isinstance(v, (int, float, str))}
    images = np.asarray(res.image)
    stds = None if res.std is None else np.asarray(res.std)   # K > 1 samples: pixel-wise std (image units)
    sv = (res.timings or {}).get("self_validation")            # per slice, when the sampler self-validated
    out = []
    for b, (m, c) in enumerate(zip(maps, cal)):
        info = {"seconds": share, "maps": c.get("maps"), "coverage": c.get("coverage"), "timings": timings}
        if stds is not None:
            info["std"] = stds[b]
        if sv:
            info["self_validation"] = sv[b]
        out.append((images[b], m, info))
    return out


def sample_slices(method: str, prior, kspaces, maps, masks, records, config, **kw) -> SamplerResult:
    """One call of diffusion sampler `method` for several slices of one shape: (C, ny, nx) k-spaces and maps and
    (ny, nx) masks stacked on a leading batch axis; `records` (one per slice, or None: unconditional) and the
    keywords (device, progress) go to the sampler as they are."""
    return diffusion_sampler(method)(prior, np.stack(list(kspaces)), np.stack(list(maps)),
                                     np.stack([np.asarray(m) for m in masks]), records=records, config=config, **kw)
