"""`SamplerSpec`: what a diffusion sampler declares so that the registry (`recon_core.samplers`) can offer it
to every front door (method lists, client allow-lists and ceilings, Gadgetron chain properties, CLI flags,
the evaluation's method list) without anyone else naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class SamplerSpec:
    """name: the `method` value; reconstruct(prior, ksp, maps, mask, records=None, config=None, device="auto",
    scale=None, progress=None) → SamplerResult (`recon_core.samplers.base`); options: the frozen dataclass of the
    sampler's own settings (fields made by `recon_core.settings._f`: client/ceiling in their metadata), or None;
    space: the prior it needs, "pixel" or "latent"; default_model: the shipped prior `model=default` means for
    it; nfe_field: the setting that counts its network evaluations (image meta "NFE"); validated: wrapped in the
    per-scan self-validation (`recon_core.samplers.selfval`); slow: front doors show a progress bar."""

    name: str
    reconstruct: Callable
    options: type | None = None
    space: str = "pixel"
    default_model: str = "default"
    nfe_field: str = "nfe"
    validated: bool = False
    slow: bool = False
    summary: str = ""

    def __post_init__(self):
        if self.space not in ("pixel", "latent"):
            raise ValueError(f"sampler {self.name}: space must be 'pixel' or 'latent', got {self.space!r}")
