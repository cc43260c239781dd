"""Score-MRI's predictor-corrector sampler (Chung & Ye, MedIA 2022) on our ε-prior.

Score from ε (VP / DDPM schedule, ᾱ_t = Π(1 − β)): x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, so
    ∇ log p_t(x_t) = −ε̂(x_t, t) / √(1 − ᾱ_t)                          (Tweedie / denoising score matching)
with classifier-free guidance on ε̂ as in DDS (`recon_core.prior.ddim.guided_eps`).

Discretisation: N = ⌊scoremri_nfe / (1 + pc_corrector)⌋ predictor steps on a uniform grid t_0 = T−1 > … >
t_{N−1} ≥ 0 (next level ᾱ' = ᾱ_{t_{i+1}}, 1 after the last). Between two levels the effective
β = 1 − ᾱ_t / ᾱ'.
- Predictor (reverse diffusion, Euler–Maruyama of the reverse VP SDE):
      x ← (x + β s(x, t)) / √(1 − β) + √β z          (no noise on the last step)
- Corrector (Langevin, `pc_corrector` steps at the new level, signal-to-noise ratio r = `pc_snr`):
      ε_L = 2 (1 − β) (r ‖z‖ / ‖s‖)²,  x ← x + ε_L s + √(2 ε_L) z
- Data consistency after every predictor and corrector step. The iterate lives at noise level ᾱ, so it
  is made consistent with √ᾱ y (the measured k-space scaled like the signal in x_t):
  * "sense" (default; with C = 1 this is the single-coil case): (I + γAᴴA)x = x + γ√ᾱ Aᴴy by `cg_iters`
    CG steps, A the SENSE operator with the coil maps — the same solver and γ as DDS;
  * "ssos": every coil image is sampled as its own image (normalised by its own scale), made consistent
    in its own k-space by replacement (x_c ← F⁻¹[(1−M) F x_c + M √ᾱ y_c]); the result is the
    root-sum-of-squares of the coil images (a magnitude image, like Score-MRI's SSOS);
  * "hybrid": as "ssos", plus every `hybrid_every` steps a SENSE gradient step on the coil-combined image
    x = Σ S_c* x_c, x ← x + λ_i Aᴴ(√ᾱ y − A x), then x_c = S_c x; λ_i decreases linearly from
    `hybrid_lambda` to 0 over the run.
Our prior models the complex image as two channels (real, imaginary) jointly, which is what Score-MRI's
separate real/imaginary passes achieve with a real-valued network.

K posterior samples (seed + k per sample, as DDS) → complex mean and std; the result is a `SamplerResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..cg import data_consistency, sense_solve
from ..device import resolve_device
from ..fft import fft2c, ifft2c
from ..mvue import percentile_scale
from ..operators import crop_image
from ..precision import choose_runtime
from ..prior.ddim import guided_eps, make_guidance
from ..settings import _f, compose_config
from .base import (
    SamplerResult,
    check_inputs,
    down_factor,
    pad_problem,
    per_slice_noise,
    prepare,
    prior_device,
    progress_fn,
    resolve_config,
)
from .spec import SamplerSpec

SCOREMRI_VARIANTS = ("sense", "ssos", "hybrid")


@dataclass(frozen=True)
class ScoreMRIOptions:
    """Score-MRI's own settings (beside `recon_core.settings.CommonSettings`)."""

    scoremri_nfe: int = _f(500, "int", "Score-MRI network evaluations (predictor + corrector steps)", lo=1,
                           hi=20000, client=True, ceiling=4000)
    pc_snr: float = _f(0.16, "float", "Score-MRI Langevin corrector signal-to-noise ratio r", lo=0.0, hi=10.0,
                       lo_open=True, client=True)
    pc_corrector: int = _f(1, "int", "Score-MRI corrector steps per predictor step", lo=0, hi=10,
                       client=True, ceiling=3)
    scoremri_variant: str = _f("sense", "str", "Score-MRI data consistency: sense (coil-combined, CG like DDS), "
                               "ssos (per-coil, root-sum-of-squares), hybrid (per-coil + SENSE every m steps)",
                               choices=SCOREMRI_VARIANTS, client=True)
    hybrid_every: int = _f(5, "int", "Score-MRI hybrid: SENSE consistency every m steps", lo=1, hi=1000, client=True)
    hybrid_lambda: float = _f(1.0, "float", "Score-MRI hybrid: initial SENSE step λ (decreases linearly to 0)",
                              lo=0.0, hi=10.0, client=True)


ScoreMRIConfig = compose_config("ScoreMRIConfig", [ScoreMRIOptions], "Settings of Score-MRI: common + ScoreMRIOptions.")


def pc_grid(T: int, nfe: int, corrector: int) -> list[int]:
    """Descending predictor timesteps: ⌊nfe / (1 + corrector)⌋ (≥ 1) on a uniform grid from T − 1 to 0."""
    n = max(int(nfe) // (1 + int(corrector)), 1)
    ts = np.unique(np.round(np.linspace(T - 1, 0, n)).astype(int))[::-1]
    return [int(t) for t in ts]


def score_from_eps(eps: torch.Tensor, a_t: float) -> torch.Tensor:
    """∇ log p_t = −ε̂ / √(1 − ᾱ_t) (VP schedule)."""
    return -eps / float(np.sqrt(max(1.0 - a_t, 1e-12)))


def predictor_step(x, score, beta: float, z=None):
    """Reverse-diffusion predictor between two levels with effective β."""
    x = (x + beta * score) / float(np.sqrt(1.0 - beta))
    return x if z is None else x + float(np.sqrt(beta)) * z


def corrector_step(x, score, z, snr: float, alpha: float):
    """Langevin corrector: step 2α(r‖z‖/‖s‖)² per image (norms over all but the batch axis)."""
    dims = tuple(range(1, x.ndim))
    zn = z.flatten(1).norm(dim=1)
    sn = score.flatten(1).norm(dim=1).clamp_min(1e-12)
    step = (2 * alpha * (snr * zn / sn) ** 2).view(-1, *([1] * len(dims)))
    return x + step * score + torch.sqrt(2 * step) * z


def _c(x):   # (N, 2, H, W) real → (N, H, W) complex
    return torch.complex(x[:, 0], x[:, 1])


def _r(x):   # (N, H, W) complex → (N, 2, H, W) real
    return torch.stack([x.real, x.imag], dim=1).float()


@torch.no_grad()
def scoremri_reconstruct(prior, ksp, maps, mask, records=None, config=None, device="auto",
                         scale=None, progress=None, **settings):
    """Score-MRI reconstruction; inputs, outputs and settings as `recon_core.samplers.dds.dds_reconstruct`
    (settings used: scoremri_nfe, pc_snr, pc_corrector, scoremri_variant, hybrid_every, hybrid_lambda,
    cfg, gamma, cg_iters, samples, seed, precision, scale)."""
    t_start = time.perf_counter()
    c = resolve_config(ScoreMRIConfig, config, settings, "scoremri_reconstruct").replace(warm_start=None)
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    per_coil = c.scoremri_variant in ("ssos", "hybrid")
    # any matrix with the coil-combined variant (padded for the network, cropped back); the per-coil variants
    # work on the coil images' own grid and need sides the network accepts
    ksp, maps, records = check_inputs(prior, ksp, maps, mask, records, pad=not per_coil)
    pb = prepare(ksp, maps, mask, c, scale, dev)
    if not per_coil:
        pb = pad_problem(pb, down_factor(prior))
    B, K, ny, nx = pb.B, pb.K, pb.ny, pb.nx
    C = int(maps.shape[1])
    if prior_device(prior) != dev:
        prior.to(dev)
    maps_k = pb.maps.repeat(K, 1, 1, 1)                                   # (K·B, C, ny, nx)
    y_n = pb.y                                                            # (K·B, C, ny, nx) normalised
    cs, guid = _coil_scales_and_guidance(prior, pb, maps_k, records, c, C, per_coil, dev)
    prec = choose_runtime(prior, c.precision, c.engine, (ny, nx), dev)
    acp = prior.scheduler.alphas_cumprod.double()
    T = int(acp.shape[0])
    ts = pc_grid(T, c.scoremri_nfe, c.pc_corrector)
    noise = per_slice_noise(c.seed, K, B, (C if per_coil else 1, 2, ny, nx), dev)

    mk = pb.op.mask if pb.op.mask.shape[0] == K * B else pb.op.mask.expand(K * B, -1, -1, -1)

    def dc(x, a: float, i: int):
        if not per_coil:
            return _r(data_consistency(pb.op, _c(x), None, c.gamma, c.cg_iters, AHy=pb.AHy * float(np.sqrt(a))))
        xc = _c(x).view(K * B, C, ny, nx) * cs                           # coil images, common units
        k = fft2c(xc)
        k = (1 - mk) * k + mk * y_n * float(np.sqrt(a))
        xc = ifft2c(k)
        if c.scoremri_variant == "hybrid" and (i + 1) % c.hybrid_every == 0:
            lam = c.hybrid_lambda * (1 - i / max(len(ts) - 1, 1))
            comb = (maps_k.conj() * xc).sum(dim=1)
            comb = comb + lam * (pb.AHy * float(np.sqrt(a)) - pb.op.AH(pb.op.A(comb)))
            xc = maps_k * comb[:, None]
        return _r((xc / cs).reshape(K * B * C, ny, nx))

    x = noise()
    tick, close = progress_fn(progress, len(ts), "Score-MRI")
    t_net = 0.0
    n_eval = 0
    try:
        for i, t in enumerate(ts):
            a_t = float(acp[t])
            a_next = float(acp[ts[i + 1]]) if i + 1 < len(ts) else 1.0
            beta = min(max(1.0 - a_t / a_next, 0.0), 0.999)
            t0 = time.perf_counter()
            eps = guided_eps(prec.runner, x, t, guid)
            t_net += time.perf_counter() - t0
            n_eval += 1
            x = predictor_step(x, score_from_eps(eps, a_t), beta, noise() if i + 1 < len(ts) else None)
            x = dc(x, a_next, i)
            if i + 1 < len(ts):
                t_n = ts[i + 1]
                for _ in range(c.pc_corrector):
                    t0 = time.perf_counter()
                    eps = guided_eps(prec.runner, x, t_n, guid)
                    t_net += time.perf_counter() - t0
                    n_eval += 1
                    x = corrector_step(x, score_from_eps(eps, a_next), noise(), c.pc_snr, 1.0 - beta)
                    x = dc(x, a_next, i)
            tick(i + 1)
    finally:
        close()
    return _result(x, pb, cs, C, per_coil, c, prec, t_start, t_net, n_eval, ts)


def _coil_scales_and_guidance(prior, pb, maps_k, records, c, C: int, per_coil: bool, dev) -> tuple:
    """(per-coil scales (K·B, C, 1, 1) or None, CFG guidance): the per-coil variants sample every coil image as
    its own image, normalised by the 99th percentile of that coil's image of SENSE-10, with the slice's record
    repeated per coil; the coil-combined variant samples the slice image."""
    K, B, ny, nx = pb.K, pb.B, pb.ny, pb.nx
    if not per_coil:
        return None, make_guidance(prior, records, c.cfg, B, n_repeat=K, device=dev)
    est = pb.sense.repeat(K, 1, 1) if pb.sense is not None else sense_solve(pb.op, pb.y, n_iter=10)
    coil_est = maps_k * est[:, None]
    cs = percentile_scale(coil_est.reshape(K * B * C, ny, nx)).clamp_min(1e-8).view(K * B, C, 1, 1)
    recs = None if records is None else [r for r in records for _ in range(C)]
    return cs, make_guidance(prior, recs, c.cfg, B * C, n_repeat=K, device=dev)


def _result(x, pb, cs, C: int, per_coil: bool, c, prec, t_start: float, t_net: float, n_eval: int, ts) -> SamplerResult:
    """The final iterate x (K·B·[C], 2, ny, nx) in scanner units: root-sum-of-squares of the coil images (ssos,
    hybrid) or the complex image zeroed outside the map support (sense); K-sample mean/std, timings."""
    K, B, ny, nx = pb.K, pb.B, pb.ny, pb.nx
    if per_coil:
        xc = _c(x).view(K, B, C, ny, nx) * cs.view(K, B, C, 1, 1)
        out = xc.abs().pow(2).sum(dim=2).sqrt().to(torch.complex64)            # root-sum-of-squares
    else:
        support = (pb.maps.abs().pow(2).sum(dim=1) > 0).to(torch.float32)
        out = _c(x).view(K, B, ny, nx) * support[None]
        if pb.inner is not None:
            out = crop_image(out, pb.inner)
    out = (out * pb.scale.view(1, B, 1, 1)).to(torch.complex64)
    mean = out.mean(dim=0)
    std = samples = None
    if K > 1:
        std = ((out - mean[None]).abs() ** 2).mean(dim=0).sqrt().float().cpu().numpy()
        samples = out.cpu().numpy()
    total = time.perf_counter() - t_start
    timings = {"network": t_net, "total": total, "cg": 0.0, "other": total - t_net, "precision": prec.precision, "engine": prec.engine,
               "precision_choice": prec.to_meta()}
    return SamplerResult(image=mean.cpu().numpy().astype(np.complex64), std=std, samples=samples,
                         scale=pb.scale.cpu().numpy().astype(np.float32), timings=timings, nfe=n_eval,
                         cfg=float(c.cfg), timesteps=ts, config=c.to_meta())

SPEC = SamplerSpec("scoremri", scoremri_reconstruct, ScoreMRIOptions, space="pixel", nfe_field="scoremri_nfe",
                   slow=True, summary="Score-MRI predictor-corrector (reverse SDE + Langevin), same pixel prior")
