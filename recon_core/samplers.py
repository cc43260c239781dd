"""The prior-based reconstruction methods by name; every one has the signature of
`recon_core.dds.dds_reconstruct(prior, ksp, maps, mask, records, config, device, scale, progress)` → DDSResult.

    dds       Decomposed Diffusion Sampler (recon_core/dds.py), pixel prior
    scoremri  Score-MRI predictor-corrector (recon_core/scoremri.py), pixel prior
    ldpm      LDPM dual-stage latent sampler (recon_core/latent/ldpm.py), latent prior
"""

from __future__ import annotations

from .errors import InputError

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
