"""Unconditional / conditional sampling from the prior alone (DDIM with classifier-free guidance)."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..device import autocast
from ..errors import InputError
from ..settings import CommonSettings
from .ddim import Guidance, alpha_prev, ddim_schedule, ddim_step, guided_eps, tweedie_x0


@torch.no_grad()
def sample_prior(prior, records=None, n: int = 1, cfg: float = 1.0, nfe: int = 50, eta: float | None = None,
                 seed: int = 0, tokens: torch.Tensor | None = None, precision: str = "fp32",
                 progress: bool = False) -> torch.Tensor:
    """Draw `n` images per condition; returns (B*n, 2, H, W) float32 (normalised real, imag) on CPU
    (a latent prior samples latents and decodes them with its MR-VAE).

    `records`: list of MetadataRecord (one per condition; None → one unconditional condition) or
    precomputed `tokens` (B, L, D). ε = ε_u + cfg (ε_c − ε_u), cond/uncond batched in one forward
    (cfg == 1 → conditional only; cfg == 0 → unconditional only). DDIM (diffusers DDIMScheduler
    built from the stored scheduler config, "leading" spacing so the first step is < 999), x_T ~ N(0, I).
    `eta` None → the sampler default (`CommonSettings().eta`, 1: ancestral; the shipped priors leave visible noise
    at η = 0, results/latent/synthesis*.png).
    """

    if nfe < 1 or nfe > prior.scheduler.config.num_train_timesteps:
        raise InputError(f"nfe must be in 1..{prior.scheduler.config.num_train_timesteps}, got {nfe}")
    if n < 1:
        raise InputError(f"n must be >= 1, got {n}")
    eta = CommonSettings().eta if eta is None else float(eta)
    dev = prior.device
    if tokens is None:
        tokens = prior.uncondition(1) if records is None else prior.condition(list(records))
    tokens = tokens.to(dev).repeat_interleave(int(n), dim=0)
    batch = tokens.shape[0]
    null = prior.uncondition(batch)
    if not prior.conditioned or cfg == 0.0:
        guid = Guidance(null, False, 0.0)
    elif cfg == 1.0:
        guid = Guidance(tokens, False, 1.0)
    else:
        guid = Guidance(torch.cat([null, tokens]), True, float(cfg))
    timesteps, acp, step = ddim_schedule(prior.scheduler.config, int(nfe))
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    x = torch.randn((batch, *prior.sample_shape), generator=gen).to(dev)
    for t in tqdm(timesteps.tolist(), desc="sampling", disable=not progress, leave=False):
        a_t, a_prev = float(acp[t]), alpha_prev(acp, t, step)
        with autocast(dev, precision):
            eps = guided_eps(prior, x, t, guid)
        z = torch.randn(x.shape, generator=gen).to(dev) if eta > 0 else None
        x = ddim_step(tweedie_x0(x, eps, a_t), eps, a_t, a_prev, eta, z)
    if prior.is_latent:   # decode the latents to (real, imag) images
        with autocast(dev, precision):
            x = prior.from_latent(x)
    return x.float().cpu()
