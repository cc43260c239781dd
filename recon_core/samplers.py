"""The prior-based reconstruction methods by name; every one has the signature of
`recon_core.dds.dds_reconstruct(prior, ksp, maps, mask, records, config, device, scale, progress)` → DDSResult.

    dds       Decomposed Diffusion Sampler (recon_core/dds.py), pixel prior
    scoremri  Score-MRI predictor-corrector (recon_core/scoremri.py), pixel prior
    ldpm      LDPM dual-stage latent sampler (recon_core/latent/ldpm.py), latent prior
"""

from __future__ import annotations

from .errors import InputError

DIFFUSION_METHODS = ("dds", "scoremri", "ldpm")


def diffusion_sampler(method: str):
    """The reconstruction function of a diffusion method (see module docstring)."""
    if method == "dds":
        from .dds import dds_reconstruct

        return dds_reconstruct
    if method == "scoremri":
        from .scoremri import scoremri_reconstruct

        return scoremri_reconstruct
    if method == "ldpm":
        from .latent.ldpm import ldpm_reconstruct

        return ldpm_reconstruct
    raise InputError(f"unknown diffusion method {method!r}: expected one of {', '.join(DIFFUSION_METHODS)}")
