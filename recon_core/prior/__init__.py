"""The diffusion prior: model classes (`Prior` with `from_pretrained`/`save_pretrained`, `build_prior`; the
MR-VAE of latent priors in `vae.py`), checkpoint parts (`checkpoint.py`) and manifest (`manifest.py`), LoRA
adapters, DDIM arithmetic and sampling from the prior alone."""

from .checkpoint import save_prior
from .manifest import FORMAT_VERSION, MANIFEST, read_manifest
from .model import Prior, build_prior, count_parameters, list_presets, load_preset, load_prior
from .sample import sample_prior

__all__ = ["Prior", "build_prior", "load_prior", "save_prior", "read_manifest", "sample_prior",
           "list_presets", "load_preset", "count_parameters", "MANIFEST", "FORMAT_VERSION"]
