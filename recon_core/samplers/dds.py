"""Decomposed Diffusion Sampler (DDS) for multi-coil Cartesian MRI with classifier-free guidance.

Per DDIM step t → t_prev (timesteps from diffusers `DDIMScheduler` built from the prior's scheduler
config, "leading" spacing, so sampling starts at e.g. t = 980 for 50 NFE — never at t = 999 where a
cosine schedule has ᾱ ≈ 0 and x̂0 explodes):

    ε   = ε_u + w (ε_c − ε_u)              one batched forward of [x_t; x_t] with [uncond; cond] tokens
                                            (w = 0: uncond branch only, w = 1: cond branch only)
    x̂0  = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t         Tweedie
    x̂0' = argmin ‖x − x̂0‖² + γ‖Ax − y‖²     `cg_iters` complex CG steps per slice, started at x̂0
          (with `wavelet_lambda` > 0: + a cycle-spinning ℓ1-wavelet term, x̂0 weighed by `prior_weight`,
          `admm_iters` ADMM iterations: recon_core/sparse_dc.py)
    c1  = η √((1−ᾱ_t/ᾱ_prev)(1−ᾱ_prev)/(1−ᾱ_t)),  c2 = √(1−ᾱ_prev−c1²)
    x_prev = √ᾱ_prev x̂0' + c1 z + c2 ε

The output is the CG-refined x̂0' of the last step (plus `final_cg_iters` more CG iterations of the same
system), multiplied back to scanner units.

Warm start (`warm_start` = t0 ∈ (0, 1]): instead of x_T ~ N(0, I), the classical estimate x_c (SENSE-10
or zero-filled, normalised) is forward-noised, x_t = √ᾱ_t x_c + √(1−ᾱ_t) z, at the first grid step
t ≤ t0·T, and only the remaining steps of the `nfe`-step grid run (≈ t0·nfe network evaluations).

Scaling: the prior was trained on images divided by the 99th percentile of |MVUE| of the *fully*
sampled k-space, which is unknown at recon time. We estimate it from the measured data as the 99th
percentile of a short SENSE reconstruction (10 CG iterations; `estimate_scale`, `scale=None`; pass
`scale="zerofilled"` for the zero-filled MVUE, or numbers to override), divide the measured k-space by
it before sampling (so the data term lives in the prior's units) and multiply the result back. The
estimate is biased low where thin bright structures dominate the percentile (see `estimate_scale`);
the CG data consistency pulls the sampled k-space back to the data either way.

Randomness: sample k (k = 0..K−1) of every slice draws x_T and all DDIM noise from its own
`torch.Generator` seeded `seed + k` on the CPU, so a slice's reconstruction does not depend on which
other slices share its batch, nor on the device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..cg import data_consistency
from ..device import resolve_device
from ..precision import choose_runtime
from ..prior.ddim import ddim_step, make_guidance, tweedie_x0
from ..settings import _f, compose_config
from ..sparse_dc import sparse_data_consistency
from ..wavelet import ShiftedWavelet
from .base import SamplerResult, check_inputs, ddim_steps, down_factor, finish, initial_state, pad_problem
from .base import per_slice_noise, prepare, prior_device, resolve_config, sampling_timesteps, sync, timed_eps
from .spec import SamplerSpec

__all__ = ["DDSConfig", "DDSOptions", "SPEC", "SamplerResult", "dds_reconstruct"]


@dataclass(frozen=True)
class DDSOptions:
    """DDS's own settings (beside `recon_core.settings.CommonSettings`): the per-scan self-validation."""

    self_validate: bool = _f(False, "bool", "hold out a part of the measured lines, reconstruct from the rest "
                             "with each candidate (recon_core/samplers/selfval.py), keep the one that predicts the held-out "
                             "lines best, then reconstruct with all data")
    holdout: float = _f(0.1, "float", "self-validation: fraction of the measured non-calibration lines held out",
                        lo=0.0, hi=0.5, lo_open=True)
    holdout_rule: str = _f("spread", "str", "self-validation: which measured samples are held out — spread (at "
                           "random over the free k-space, scored with inverse-density weights; default since session 19) "
                           "or centre (those nearest the calibration block)", choices=("spread", "centre"))
    holdout_folds: int = _f(2, "int", "self-validation: disjoint hold-out folds (1 or 2: even / odd lines); a DDS "
                            "winner must win in each", lo=1, hi=2)
    selfval_slices: int = _f(1, "int", "self-validation in a series (stream processor): choose on the first N "
                             "slices, reuse the majority choice for the rest (0: every slice; 2 decides as 1 does: "
                             "a tie goes to the first slice)", lo=0, hi=10000)
    wavelet_lambda: float = _f(1e-3, "float", "sparse data consistency: weight λ of a cycle-spinning L1-wavelet "
                               "term in each step's data consistency, relative to the data term as in l1wavelet-shift "
                               "(0: plain DDS; recon_core/sparse_dc.py)", lo=0.0, hi=1.0, client=True)
    prior_weight: float = _f(1.0, "float", "sparse data consistency: weight μ of the prior's estimate x̂0 (lower "
                             "trusts the prior less)", lo=0.0, hi=100.0, lo_open=True, client=True)
    admm_iters: int = _f(3, "int", "sparse data consistency: ADMM iterations per step", lo=0, hi=20, client=True,
                         ceiling=10)
    admm_cg_iters: int = _f(3, "int", "sparse data consistency: CG steps per ADMM iteration (warm-started at the "
                            "previous iterate)", lo=1, hi=20, client=True, ceiling=10)


DDSConfig = compose_config("DDSConfig", [DDSOptions], "Settings of the DDS sampler: the common ones + DDSOptions.")


@torch.no_grad()
def dds_reconstruct(prior, ksp, maps, mask, records=None, config: DDSConfig | None = None, device="auto",
                    scale=None, progress=None, **settings) -> SamplerResult:
    """DDS reconstruction of a batch of slices with K posterior samples.

    prior:   recon_core.prior.Prior (predict_eps, condition, uncondition, scheduler, unet).
    ksp:     (B, C, ny, nx) complex (numpy or torch), scanner units; un-sampled entries are ignored
             (the mask is applied). A (C, ny, nx) array is treated as B = 1.
    maps:    (B, C, ny, nx) complex coil maps (same shape as ksp).
    mask:    (ny, nx) or (B, ny, nx) bool/{0,1}.
    records: list of B MetadataRecord for the conditional branch, or None (unconditional; cfg ignored).
    config:  `DDSConfig` (or any composed config holding its fields, e.g. `recon_core.samplers.SamplerConfig`) (nfe, cfg, eta, gamma, cg_iters, final_cg_iters, warm_start,
             warm_init, samples, seed, precision, scale, clip_x0); keyword `settings` override its fields
             (e.g. `nfe=20`). precision/engine "auto" measure the runtimes once (recon_core.precision).
    scale:   None (estimate by `config.scale`), "sense"/"zerofilled", a float, or (B,) per-slice scales.
    progress: None, True (tqdm bar) or callable(step, total).
    Returns SamplerResult (numpy arrays, scanner units); `timings["precision"]` says what ran.
    """
    t_start = time.perf_counter()
    c = resolve_config(DDSConfig, config, settings, "dds_reconstruct")
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    ksp, maps, records = check_inputs(prior, ksp, maps, mask, records, pad=True)
    pb = pad_problem(prepare(ksp, maps, mask, c, scale, dev), down_factor(prior))
    B, K, ny, nx = pb.B, pb.K, pb.ny, pb.nx
    if prior_device(prior) != dev:
        prior.to(dev)
    guid = make_guidance(prior, records, c.cfg, B, n_repeat=K, device=dev)
    prec = choose_runtime(prior, c.precision, c.engine, (ny, nx), dev)
    timesteps, acp, step = sampling_timesteps(prior.scheduler.config, c)

    noise = per_slice_noise(c.seed, K, B, (1, 2, ny, nx), dev)
    x = initial_state(pb, noise, acp, timesteps)                       # noise, or the warm start
    t_net = t_cg = 0.0
    x0c = x0_pre = None
    shifter = ShiftedWavelet((ny, nx), seed=[c.seed + k for k in range(K)]) if c.wavelet_lambda > 0 else None
    sync(dev)
    t_setup = time.perf_counter() - t_start
    for i, t, a_t, a_prev, last in ddim_steps(timesteps, acp, step, progress, "DDS"):
        eps, dt = timed_eps(prec.runner, x, t, guid, dev)              # 1) ε with CFG, one forward
        t_net += dt
        t1 = time.perf_counter()
        x0 = tweedie_x0(x, eps, a_t)                                   # 2) Tweedie x̂0
        if c.clip_x0 is not None:
            x0 = x0.clamp(-c.clip_x0, c.clip_x0)
        x0c = x0_pre = torch.complex(x0[:, 0], x0[:, 1])
        # 3) (I + γAᴴA)x = x̂0 + γAᴴy by CG, + the ℓ1-wavelet term by ADMM when wavelet_lambda > 0 (sparse_dc.py)
        x0c = sparse_data_consistency(pb.op, x0c, pb.gamma, c.cg_iters, pb.AHy, c.prior_weight, c.wavelet_lambda,
                                      c.admm_iters, shifter, c.admm_cg_iters)
        sync(dev)
        t_cg += time.perf_counter() - t1
        if not last:                                                   # 4) DDIM update
            x0r = torch.stack([x0c.real, x0c.imag], dim=1)
            x = ddim_step(x0r, eps, a_t, a_prev, c.eta, noise() if c.eta > 0 else None)
    t2 = time.perf_counter()
    if c.final_cg_iters > 0 and c.gamma > 0:
        x0c = data_consistency(pb.op, x0c, None, pb.gamma, c.final_cg_iters, AHy=pb.AHy)
        t_cg += time.perf_counter() - t2
    return finish(pb, x0c, x0_pre, c, prec, timesteps, t_start, t_net, t_cg, t_setup, time.perf_counter())



SPEC = SamplerSpec("dds", dds_reconstruct, DDSOptions, space="pixel", validated=True,
                   summary="Decomposed Diffusion Sampler: DDIM + CFG, CG data consistency per step")
