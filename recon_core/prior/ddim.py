"""DDIM arithmetic and classifier-free guidance shared by every sampler (DDS, `generate`, Score-MRI's
conversion). Pure functions; tensors (B, 2, H, W) float (real, imag channels).

    ddim_schedule(config, nfe)        "leading" timesteps of diffusers' DDIMScheduler, ᾱ table, step size
    guided_eps(prior, x, t, tok, w)   ε = ε_u + w (ε_c − ε_u), both branches in ONE batched forward
    tweedie_x0(x_t, ε, ᾱ_t)           x̂0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t
    ddim_step(x̂0, ε, ᾱ_t, ᾱ_prev, η, z) x_prev = √ᾱ_prev x̂0 + c2 ε + c1 z,
                                       c1 = η √((1−ᾱ_t/ᾱ_prev)(1−ᾱ_prev)/(1−ᾱ_t)), c2 = √(1−ᾱ_prev−c1²)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def ddim_schedule(scheduler_config, nfe: int):
    """(timesteps (nfe,) long, alphas_cumprod (T,) float64, step) of a "leading" DDIM grid.

    Uses diffusers `DDIMScheduler.from_config(config, timestep_spacing="leading")`; ᾱ of t − step < 0
    is 1 (`set_alpha_to_one`), so the last step returns the clean estimate. The first step is < 999
    (e.g. 980 for 50 NFE), where a cosine schedule's ᾱ ≈ 0 would make x̂0 explode.
    """
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(dict(scheduler_config), timestep_spacing="leading", set_alpha_to_one=True)
    sched.set_timesteps(int(nfe))
    step = sched.config.num_train_timesteps // int(nfe)
    return sched.timesteps.clone().long(), sched.alphas_cumprod.double().clone(), step


def alpha_prev(acp: torch.Tensor, t: int, step: int) -> float:
    return float(acp[t - step]) if t - step >= 0 else 1.0


@dataclass
class Guidance:
    """Token batches for `guided_eps`: `tokens` (the batch fed to the network), `both` (cond and uncond
    batched: [uncond; cond]) and the weight w."""
    tokens: torch.Tensor
    both: bool
    w: float


def make_guidance(prior, records, w: float, batch: int, n_repeat: int = 1, device=None) -> Guidance:
    """Tokens for CFG weight `w` over `batch` conditions (`records`: B MetadataRecord, or None →
    unconditional), each repeated `n_repeat` times (sample-major: index k·B + b). w = 0 or records None:
    unconditional branch only; w = 1: conditional branch only; otherwise both in one forward."""
    use_cond = records is not None and w > 0
    use_uncond = records is None or w != 1
    if use_cond:
        tok_c = prior.condition(list(records))
        if device is not None:
            tok_c = tok_c.to(device)
        tok_c = tok_c.repeat(n_repeat, *([1] * (tok_c.ndim - 1)))
    if use_uncond:
        tok_u = prior.uncondition(int(batch) * int(n_repeat))
        if device is not None:
            tok_u = tok_u.to(device)
    if use_cond and use_uncond:
        return Guidance(torch.cat([tok_u, tok_c], dim=0), True, float(w))
    return Guidance(tok_c if use_cond else tok_u, False, float(w))


def guided_eps(prior, x: torch.Tensor, t: int, guidance: Guidance) -> torch.Tensor:
    """ε̂ with classifier-free guidance; x (N, 2, H, W); one batched network forward. Returns float32."""
    x_in = torch.cat([x, x], dim=0) if guidance.both else x
    t_b = torch.full((x_in.shape[0],), int(t), dtype=torch.long, device=x.device)
    eps = prior.predict_eps(x_in, t_b, guidance.tokens).float()
    if guidance.both:
        e_u, e_c = eps.chunk(2)
        eps = e_u + guidance.w * (e_c - e_u)
    return eps


def tweedie_x0(x_t: torch.Tensor, eps: torch.Tensor, a_t: float) -> torch.Tensor:
    return (x_t - (1.0 - a_t) ** 0.5 * eps) / a_t ** 0.5


def ddim_coefficients(a_t: float, a_prev: float, eta: float) -> tuple[float, float]:
    """(c1, c2) of the DDIM update (c1: fresh-noise weight, c2: ε weight)."""
    c1 = eta * ((1 - a_t / a_prev) * (1 - a_prev) / (1 - a_t)) ** 0.5
    c2 = max(1 - a_prev - c1 ** 2, 0.0) ** 0.5
    return c1, c2


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, eta: float,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """x_{t_prev} from x̂0 and ε (noise z needed when η > 0)."""
    c1, c2 = ddim_coefficients(a_t, a_prev, eta)
    x = a_prev ** 0.5 * x0 + c2 * eps
    if c1 > 0:
        if noise is None:
            raise ValueError("ddim_step: eta > 0 needs noise")
        x = x + c1 * noise
    return x


def forward_noise(x0: torch.Tensor, a_t: float, noise: torch.Tensor) -> torch.Tensor:
    """q(x_t | x0): √ᾱ_t x0 + √(1−ᾱ_t) z."""
    return a_t ** 0.5 * x0 + (1.0 - a_t) ** 0.5 * noise
