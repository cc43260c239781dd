"""LDPM-style reconstruction with a latent prior (MR-VAE + conditional latent UNet): a sketch, then a
dual-stage DDIM sampler in the VAE's latent space.

Sketch: the warm start's classical estimate (`warm_init`, default the SENSE-10 estimate: CG on AᴴAx = Aᴴy,
so it agrees with the measured k-space; LDPM's c = F⁻¹[F(R(x_u))(1−M) + k_u M] with R a CG solve instead of
a trained repair network).
It is encoded, z_s = E(sketch), and forward-noised to t0 = `warm_start`·T (cold start from N(0, I) when
warm_start is None). Here the sketch is the *starting point*; the latent UNet is not sketch-conditioned.

Each DDIM step t (ε̂ with classifier-free guidance, ẑ0 = Tweedie(z_t, ε̂)):
    t > p·T (stage 1):  x̂0 = D(ẑ0);  x̂0' = argmin ‖x − x̂0‖² + γ‖Ax − y‖² (`cg_iters` CG, as DDS);  ẑ0 ← E(x̂0')
    t ≤ p·T (stage 2):  ẑ0 ← ẑ0 − g · ∇_z ‖A D(z) − y‖₂ |_{z = ẑ0}   (one gradient step through the decoder)
    z_prev = DDIM(ẑ0, ε̂, η)
p = `ldpm_switch` (0.2 = LDPM's 200 of 1000), g = `ldpm_grad` (default 10, chosen on validation;
LDPM's 0.1 was 0.3–1.1 dB worse, 30 0.7–2.7 dB worse). Output: D(ẑ0) of the last step, made data
consistent by `final_cg_iters` (≥ cg_iters) CG iterations in pixel space, in scanner units (SamplerResult).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..cg import data_consistency
from ..device import autocast, resolve_device
from ..precision import choose_runtime
from ..prior.ddim import ddim_step, make_guidance, tweedie_x0
from ..settings import _f, compose_config
from .base import check_inputs, ddim_steps, down_factor, finish, initial_state, pad_problem, per_slice_noise
from .base import prepare, prior_device, resolve_config, sampling_timesteps, sync, timed_eps
from .spec import SamplerSpec


@dataclass(frozen=True)
class LDPMOptions:
    """LDPM's own settings (beside `recon_core.settings.CommonSettings`: nfe, cfg, eta, warm_start, gamma,
    cg_iters and final_cg_iters are shared with DDS)."""

    ldpm_switch: float = _f(0.2, "float", "LDPM: stage-2 (k-space gradient on the latent) below t = this "
                            "fraction of T; above it decode → CG data consistency → re-encode", lo=0.0, hi=1.0, client=True)
    ldpm_grad: float = _f(10.0, "float", "LDPM: stage-2 step on ẑ0 along −∇‖A·D(ẑ0) − y‖ (normalised units; "
                          "10 chosen on validation over 0.1 (LDPM's), 1, 3 and 30: results/latent/tune_ldpm.json)",
                          lo=0.0, hi=100.0, client=True)



LDPMConfig = compose_config("LDPMConfig", [LDPMOptions], "Settings of LDPM: common + LDPMOptions.")


def _to_real(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x.real, x.imag], dim=1).float()


def _to_complex(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[:, 0].float(), x[:, 1].float())


@torch.no_grad()
def ldpm_reconstruct(prior, ksp, maps, mask, records=None, config=None, device="auto",
                     scale=None, progress=None, **settings):
    """LDPM reconstruction of B slices with K samples; arguments and result as `recon_core.samplers.dds.dds_reconstruct`
    (numpy SamplerResult, scanner units). `prior` must be a latent prior (`prior.is_latent`)."""
    t_start = time.perf_counter()
    c = resolve_config(LDPMConfig, config, settings, "ldpm_reconstruct")
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    ksp, maps, records = check_inputs(prior, ksp, maps, mask, records, latent=True, pad=True)
    pb = pad_problem(prepare(ksp, maps, mask, c, scale, dev), down_factor(prior))   # any matrix: padded, cropped back
    B, K, ny, nx = pb.B, pb.K, pb.ny, pb.nx
    if prior_device(prior) != dev:
        prior.to(dev)
    vae = prior.vae
    ch, h, w = prior.channels, ny // vae.downsample, nx // vae.downsample
    guid = make_guidance(prior, records, c.cfg, B, n_repeat=K, device=dev)
    prec = choose_runtime(prior, c.precision, c.engine, (h, w), dev)
    timesteps, acp, step = sampling_timesteps(prior.scheduler.config, c)
    T = int(prior.scheduler.config.num_train_timesteps)
    noise = per_slice_noise(c.seed, K, B, (1, ch, h, w), dev)

    def enc(xc):
        with autocast(dev, prec.precision):
            return vae.encode(_to_real(xc)).float()

    def dec(z):
        with autocast(dev, prec.precision):
            return _to_complex(vae.decode(z))

    z = initial_state(pb, noise, acp, timesteps, encode=enc)           # noise, or the encoded sketch noised to t0
    t_net = t_vae = 0.0
    z0 = x_pre = None
    sync(dev)
    t_setup = time.perf_counter() - t_start
    for _, t, a_t, a_prev, last in ddim_steps(timesteps, acp, step, progress, "LDPM"):
        eps, dt = timed_eps(prec.runner, z, t, guid, dev)
        t_net += dt
        t1 = time.perf_counter()
        z0 = tweedie_x0(z, eps, a_t)
        if t > c.ldpm_switch * T:        # stage 1: pixel data consistency, re-encoded
            x_pre = dec(z0)
            xc = data_consistency(pb.op, x_pre, None, c.gamma, c.cg_iters, AHy=pb.AHy)
            z0 = enc(xc)
        elif c.ldpm_grad > 0:            # stage 2: k-space gradient step through the decoder
            z0 = _grad_step(vae, pb, z0, c.ldpm_grad, dev, prec.precision)
        t_vae += time.perf_counter() - t1
        if not last:
            z = ddim_step(z0, eps, a_t, a_prev, c.eta, noise() if c.eta > 0 else None)
    t2 = time.perf_counter()
    x_pre = dec(z0)
    its = max(int(c.final_cg_iters), int(c.cg_iters))
    x = data_consistency(pb.op, x_pre, None, c.gamma, its, AHy=pb.AHy) if c.gamma > 0 and its > 0 else x_pre
    t_vae += time.perf_counter() - t2
    res = finish(pb, x, x_pre, c, prec, timesteps, t_start, t_net, t_vae, t_setup, time.perf_counter())
    res.timings["vae_and_dc"] = res.timings.pop("cg")
    res.config = {**res.config, "method": "ldpm"}
    return res


def _grad_step(vae, pb, z0: torch.Tensor, g: float, dev, precision: str) -> torch.Tensor:
    """ẑ0 − g ∇_z ‖A D(z) − y‖₂ (per sample, normalised units)."""
    with torch.enable_grad():
        zz = z0.detach().clone().requires_grad_(True)
        with autocast(dev, precision):
            x = vae.decode(zz)
        xc = _to_complex(x)
        r = pb.op.A(xc) - pb.y
        loss = r.abs().pow(2).flatten(1).sum(dim=1).sqrt().sum()
        (grad,) = torch.autograd.grad(loss, zz)
    return (z0 - g * grad.float()).detach()


SPEC = SamplerSpec("ldpm", ldpm_reconstruct, LDPMOptions, space="latent", default_model="default-latent",
                   summary="LDPM dual-stage latent sampler (MR-VAE + latent UNet)")

__all__ = ["LDPMConfig", "LDPMOptions", "SPEC", "ldpm_reconstruct"]
