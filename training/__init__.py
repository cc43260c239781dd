"""Training and fine-tuning of the contextmri diffusion prior (uses recon_core)."""
