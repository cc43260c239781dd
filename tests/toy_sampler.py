"""A toy diffusion sampler, added the way DESIGN.md says a new sampler is: this one module (its SPEC) plus one
registry entry (`recon_core.samplers.register(SPEC)`, done by the test that uses it).

"One-step Tweedie": the SENSE-10 estimate is forward-noised to t0 = warm_start·T, the prior denoises it once
(x̂0, classifier-free guidance as DDS), and `cg_iters` CG steps make x̂0 consistent with the data. It uses only
the public scaffolding of `recon_core.samplers.base`."""

from __future__ import annotations

import time

import torch

from recon_core.cg import data_consistency
from recon_core.prior.ddim import forward_noise, guided_eps, make_guidance, tweedie_x0
from recon_core.samplers import SamplerSpec
from recon_core.samplers.base import check_inputs, finish, per_slice_noise, prepare, resolve_config
from recon_core.samplers.dds import DDSConfig
from recon_core.precision import choose_runtime


@torch.no_grad()
def one_step_reconstruct(prior, ksp, maps, mask, records=None, config=None, device="cpu", scale=None,
                         progress=None, **settings):
    t_start = time.perf_counter()
    c = resolve_config(DDSConfig, config, settings, "one_step_reconstruct").replace(warm_init="sense")
    ksp, maps, records = check_inputs(prior, ksp, maps, mask, records)
    dev = torch.device(device if device != "auto" else "cpu")
    pb = prepare(ksp, maps, mask, c.replace(warm_start=c.warm_start or 0.3), scale, dev)
    guid = make_guidance(prior, records, c.cfg, pb.B, n_repeat=pb.K, device=dev)
    prec = choose_runtime(prior, "fp32", "torch", (pb.ny, pb.nx), dev)
    T = int(prior.scheduler.config.num_train_timesteps)
    t = int((c.warm_start or 0.3) * (T - 1))
    a_t = float(prior.scheduler.alphas_cumprod[t])
    x0w = pb.init.repeat(pb.K, 1, 1)
    x = forward_noise(torch.stack([x0w.real, x0w.imag], 1).float(), a_t,
                      per_slice_noise(c.seed, pb.K, pb.B, (1, 2, pb.ny, pb.nx), dev)())
    t0 = time.perf_counter()
    x0 = tweedie_x0(x, guided_eps(prior, x, t, guid), a_t)
    t_net = time.perf_counter() - t0
    xc = data_consistency(pb.op, torch.complex(x0[:, 0], x0[:, 1]), None, pb.gamma, c.cg_iters, AHy=pb.AHy)
    return finish(pb, xc, torch.complex(x0[:, 0], x0[:, 1]), c, prec, [t], t_start, t_net,
                  time.perf_counter() - t0 - t_net, t0 - t_start, time.perf_counter())


SPEC = SamplerSpec("one-step", one_step_reconstruct, None, space="pixel",
                   summary="toy: one Tweedie denoising of the noised SENSE estimate + CG")
