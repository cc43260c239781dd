"""The diffusion prior: model (`Prior`, `build_prior`), checkpoint directory (`load_prior`,
`Prior.save_pretrained`), LoRA adapters and sampling from the prior alone."""

from .checkpoint import FORMAT_VERSION, MANIFEST, load_prior, read_manifest, save_prior
from .model import Prior, build_prior, count_parameters, list_presets, load_preset
from .sample import sample_prior

__all__ = ["Prior", "build_prior", "load_prior", "save_prior", "read_manifest", "sample_prior",
           "list_presets", "load_preset", "count_parameters", "MANIFEST", "FORMAT_VERSION"]
