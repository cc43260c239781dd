"""Latent-space prior parts: the MR-VAE (`vae.py`) and the LDPM-style reconstruction sampler (`ldpm.py`)."""

from .vae import MRVAE, build_vae, is_vae_dir, load_vae

__all__ = ["MRVAE", "build_vae", "load_vae", "is_vae_dir"]
