"""The prior-based reconstruction methods by name; every one has the signature of
`recon_core.dds.dds_reconstruct(prior, ksp, maps, mask, records, config, device, scale, progress)` → DDSResult.

    dds       Decomposed Diffusion Sampler (recon_core/dds.py), pixel prior
    scoremri  Score-MRI predictor-corrector (recon_core/scoremri.py), pixel prior
    ldpm      LDPM dual-stage latent sampler (recon_core/latent/ldpm.py), latent prior
"""

from __future__ import annotations

import time

import numpy as np

from .errors import InputError
from .metadata.header import record_from_header
from .raw.image import slice_maps

DIFFUSION_METHODS = ("dds", "scoremri", "ldpm")


def diffusion_sampler(method: str, validated: bool = True):
    """The reconstruction function of a diffusion method (see module docstring). DDS comes wrapped in the
    per-scan self-validation (`recon_core.selfval`; active when the config's `self_validate` is on) unless
    `validated` is False."""
    if method == "dds":
        from functools import partial

        from .dds import dds_reconstruct
        from .selfval import self_validated

        return partial(self_validated, dds_reconstruct) if validated else dds_reconstruct
    if method == "scoremri":
        from .scoremri import scoremri_reconstruct

        return scoremri_reconstruct
    if method == "ldpm":
        from .latent.ldpm import ldpm_reconstruct

        return ldpm_reconstruct
    raise InputError(f"unknown diffusion method {method!r}: expected one of {', '.join(DIFFUSION_METHODS)}")


def reconstruct_slice(sd, header, prior, config, method: str = "dds") -> tuple[np.ndarray, np.ndarray, dict]:
    """The scanner's reconstruction of one raw slice (`recon_core.raw` SliceData) with a diffusion method:
    its coil maps (`raw.image.slice_maps`), the header's metadata record → (image (ny, nx) complex64 in
    normalised-scanner units, maps (C, ny, nx), info {seconds, maps, coverage, timings})."""

    calq: dict = {}
    maps = slice_maps(sd, info=calq)
    record = record_from_header(header, slice_index=sd.key.slice)
    t0 = time.perf_counter()
    res = diffusion_sampler(method)(prior, sd.kspace[None], maps[None], sd.mask,
                                    records=None if config.cfg == 0 else [record], config=config)
    info = {"seconds": time.perf_counter() - t0, "maps": calq.get("maps"), "coverage": calq.get("coverage"),
            "timings": {k: v for k, v in (res.timings or {}).items() if isinstance(v, (int, float, str))}}
    return np.asarray(res.image)[0], maps, info
