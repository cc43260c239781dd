"""Decomposed Diffusion Sampler (DDS) for multi-coil Cartesian MRI with classifier-free guidance.

Per DDIM step t → t_prev (timesteps from diffusers `DDIMScheduler` built from the prior's scheduler
config, "leading" spacing, so sampling starts at e.g. t = 980 for 50 NFE — never at t = 999 where a
cosine schedule has ᾱ ≈ 0 and x̂0 explodes):

    ε   = ε_u + w (ε_c − ε_u)              one batched forward of [x_t; x_t] with [uncond; cond] tokens
                                            (w = 0: uncond branch only, w = 1: cond branch only)
    x̂0  = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t         Tweedie
    x̂0' = argmin ‖x − x̂0‖² + γ‖Ax − y‖²     `cg_iters` complex CG steps per slice, started at x̂0
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
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import InputError
from .prior.ddim import ddim_schedule  # noqa: F401  (re-exported: the grid DDS uses)
from .settings import SCALE_METHODS, DDSConfig

__all__ = ["DDSResult", "DDSConfig", "dds_reconstruct", "ddim_schedule", "estimate_scale", "sampling_timesteps"]


@dataclass
class DDSResult:
    """Output of `dds_reconstruct`.

    image:   (B, ny, nx) complex64, scanner units — complex mean over the K posterior samples.
    std:     (B, ny, nx) float32 pixel-wise standard deviation of the complex samples
             (√ mean |x_k − mean|²), scanner units; None when K = 1.
    samples: (K, B, ny, nx) complex64 scanner units; None when K = 1.
    scale:   (B,) float32 the normalisation used (image_scanner = image_normalised · scale).
    timings: seconds spent in "network", "cg" and "other" (set-up, noise, DDIM arithmetic).
    denoised: (B, ny, nx) complex64 the last step's Tweedie x̂0 *before* data consistency (sample
             mean, scanner units): what the prior proposed; `image` is its CG-refined version.
    """

    image: np.ndarray
    std: np.ndarray | None
    samples: np.ndarray | None
    scale: np.ndarray
    timings: dict = field(default_factory=dict)
    denoised: np.ndarray | None = None
    nfe: int = 0
    cfg: float = 0.0
    timesteps: list = field(default_factory=list)
    config: dict = field(default_factory=dict)


def estimate_scale(ksp: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, method: str = "sense",
                   n_iter: int = 10, image: torch.Tensor | None = None) -> torch.Tensor:
    """Per-slice estimate of the training normalisation (99th percentile of |MVUE of the full k-space|).

    ksp, maps: (B, C, ny, nx) complex; mask broadcastable to ksp. Returns (B,) float32 (> 0).
    method "sense": 99th percentile of |SENSE| after `n_iter` CG iterations on AᴴAx = Aᴴy (default);
    "zerofilled": of |Aᴴy / Σ|S|²|. Measured on 12 simulated 128² brain slices (8 coils) against the
    true scale: zero-filled 0.73–0.79 of it on average (0.58 on slices with thin bright CSF), SENSE-10
    0.82–0.99 (0.65 worst): undersampling blurs the thin bright structures that set the percentile.
    `image`: the SENSE image if already computed (method "sense").
    """
    from .cg import sense_solve
    from .mvue import combine, percentile_scale
    from .operators import SenseOp
    from .fft import ifft2c

    if method not in SCALE_METHODS:
        raise InputError(f"scale estimate: expected one of {SCALE_METHODS}, got {method!r}")
    m = mask if mask.ndim == 4 else mask.reshape(-1, 1, *mask.shape[-2:])
    if method == "zerofilled":
        img = combine(ifft2c(ksp * m), maps)
    elif image is not None:
        img = image
    else:
        img = sense_solve(SenseOp(maps, m[:, 0]), ksp * m, n_iter=n_iter)
    q = percentile_scale(img).double()
    peak = img.abs().reshape(img.shape[0], -1).amax(dim=1).double()
    q = torch.where(q > 1e-12, q, peak)
    return torch.where(q > 0, q, torch.ones_like(q)).float()


def _to_tensor(x, name):
    from .validate import as_tensor

    return as_tensor(x, name)


def _progress_fn(progress, total, desc):
    """progress: None/False → silent; True → tqdm bar; callable → called (step, total)."""
    if progress is None or progress is False:
        return (lambda i: None), (lambda: None)
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, leave=False)
        return (lambda i: bar.update(1)), bar.close
    if callable(progress):
        return (lambda i: progress(i, total)), (lambda: None)
    raise InputError(f"progress: expected None, a bool or a callable(step, total), got {type(progress).__name__}")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_slice_noise(seed: int, K: int, B: int, shape: tuple, dev):
    """noise() → (K·B·shape[0], *shape[1:]) float32 on `dev`: one CPU generator per (sample k, slice b),
    seeded seed + k, so a slice's noise depends neither on the other slices of its batch nor on the device."""
    gens = [torch.Generator(device="cpu").manual_seed(int(seed) + k) for k in range(K) for _ in range(B)]

    def noise():
        return torch.cat([torch.randn(shape, generator=g) for g in gens]).to(dev)

    return noise


def _prior_device(prior):
    try:
        return next(prior.unet.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _down_factor(prior):
    """The image sides must be multiples of this: the UNet's downsampling (× the VAE's, for a latent prior)."""
    try:
        f = 2 ** (len(prior.unet.config.block_out_channels) - 1)
    except AttributeError:
        return 1
    vae = getattr(prior, "vae", None)
    return f * (vae.downsample if vae is not None else 1)


@dataclass
class _Problem:
    """A validated DDS problem: data on the device, normalised by `scale`, repeated for K samples."""
    B: int
    K: int
    ny: int
    nx: int
    dev: torch.device
    maps: torch.Tensor      # (B, C, ny, nx)
    scale: torch.Tensor     # (B,)
    op: object              # SenseOp over the K·B batch
    AHy: torch.Tensor       # (K·B, ny, nx) Aᴴy in normalised units
    init: torch.Tensor | None  # (B, ny, nx) normalised classical estimate (warm start)
    y: torch.Tensor | None = None  # (K·B, C, ny, nx) normalised measured k-space
    sense: torch.Tensor | None = None  # (B, ny, nx) normalised SENSE-10 image, when the scale estimate made one
    gamma: object = None    # float, or (K·B,) tensor: the data-consistency weight of each slice
    sigma: torch.Tensor | None = None  # (B,) k-space noise σ in normalised units (data_weight noise)
    inner: tuple | None = None  # the measured (ny, nx) when the problem was padded for the network (`_pad_problem`)


def _pad_problem(pb: "_Problem", multiple: int) -> "_Problem":
    """The problem on the smallest grid whose sides are multiples of `multiple` (the UNet's downsampling):
    images zero-padded, the operator seen through the padding (`operators.PaddedOp`); the result is cropped
    back in `_finish`. Unchanged when the matrix already fits."""
    from dataclasses import replace

    from .operators import PaddedOp, pad_image, pad_sizes

    size = pad_sizes(pb.ny, pb.nx, multiple)
    if size == (pb.ny, pb.nx):
        return pb
    return replace(pb, ny=size[0], nx=size[1], maps=pad_image(pb.maps, size), op=PaddedOp(pb.op, size),
                   AHy=pad_image(pb.AHy, size), init=None if pb.init is None else pad_image(pb.init, size),
                   inner=(pb.ny, pb.nx))


def _check_inputs(prior, ksp, maps, mask, records, latent: bool = False, pad: bool = False):
    """Validated (ksp, maps, records); `latent`: the sampler works on a latent prior (LDPM), else a pixel one;
    `pad`: the sampler pads any matrix for the network (`_pad_problem`), else the sides must fit it."""
    if bool(getattr(prior, "is_latent", False)) != latent:
        raise InputError("this checkpoint is a latent prior (MR-VAE + latent UNet): use --method ldpm"
                         if not latent else "method ldpm needs a latent prior (a checkpoint with vae/ and "
                         "manifest key 'space': 'latent'); this is a pixel prior: use --method dds or scoremri")
    ksp = _to_tensor(ksp, "k-space")
    maps = _to_tensor(maps, "coil maps")
    if ksp.ndim == 3:
        ksp = ksp[None]
    if maps.ndim == 3:
        maps = maps[None]
    if ksp.ndim != 4:
        raise InputError(f"k-space: expected shape (B, C, ny, nx), got {tuple(ksp.shape)}")
    if tuple(maps.shape) != tuple(ksp.shape):
        raise InputError(f"coil maps: expected shape {tuple(ksp.shape)} (same as k-space), got {tuple(maps.shape)}")
    B, C, ny, nx = ksp.shape
    f = _down_factor(prior)
    if (ny % f or nx % f) and not pad:
        raise InputError(f"image matrix {ny}×{nx}: the prior's UNet needs both sides divisible by {f} "
                         f"(pad or crop the matrix)")
    if records is not None:
        records = list(records)
        if len(records) != B:
            raise InputError(f"records: expected {B} metadata records (one per slice), got {len(records)}")
    if isinstance(mask, np.ndarray) and mask.ndim == 3 and mask.shape[0] not in (1, B):
        raise InputError(f"mask: expected shape (ny, nx) or ({B}, ny, nx), got {mask.shape}")
    return ksp, maps, records


def _scale_values(scale, B) -> torch.Tensor:
    scale_t = torch.as_tensor(np.asarray(scale, dtype=np.float64).reshape(-1), dtype=torch.float32)
    if scale_t.numel() == 1:
        scale_t = scale_t.expand(B).clone()
    if scale_t.numel() != B or not bool(torch.isfinite(scale_t).all()) or bool((scale_t <= 0).any()):
        raise InputError(f"scale: expected a positive float or {B} positive values, got {scale!r}")
    return scale_t


def _prepare(ksp, maps, mask, config, scale, dev) -> _Problem:
    """Mask, normalise (estimated or given scale) and repeat the data for K samples; the classical
    estimate for a warm start."""
    from .fft import ifft2c
    from .mvue import combine
    from .operators import SenseOp

    B, C, ny, nx = ksp.shape
    K = int(config.samples)
    ksp, maps = ksp.to(dev), maps.to(dev)
    m = SenseOp(maps, mask).mask  # validates the mask against (ny, nx) and B; (B|1, 1, ny, nx) float32
    y = ksp * m
    sense_img = None
    if scale is None or isinstance(scale, str):
        method = config.scale if scale is None else scale
        if method == "sense" or (config.warm_start is not None and config.warm_init == "sense"):
            from .cg import sense_solve

            sense_img = sense_solve(SenseOp(maps, m[:, 0]), y, n_iter=10)
        scale_t = estimate_scale(y, maps, m, method=method, image=sense_img if method == "sense" else None)
    else:
        scale_t = _scale_values(scale, B)
    scale_t = scale_t.to(dev)
    init = None
    if config.warm_start is not None:
        if config.warm_init == "sense":
            if sense_img is None:
                from .cg import sense_solve

                sense_img = sense_solve(SenseOp(maps, m[:, 0]), y, n_iter=10)
            init = sense_img
        elif config.warm_init == "l1wavelet":
            from .baselines import reconstruct

            init = reconstruct("l1wavelet", y, maps, m[:, 0])
        else:
            init = combine(ifft2c(y), maps)
        init = init / scale_t.view(B, 1, 1)
    y_n = (y / scale_t.view(B, 1, 1, 1)).repeat(K, 1, 1, 1)
    maps_n = maps.repeat(K, 1, 1, 1)
    mask_n = m if m.shape[0] == 1 else m.repeat(K, 1, 1, 1)
    op = SenseOp(maps_n, mask_n[:, 0])
    sense_n = None if sense_img is None else sense_img / scale_t.view(B, 1, 1)
    gamma, sigma = data_weight(y, m, scale_t, config)
    if isinstance(gamma, torch.Tensor):
        gamma = gamma.to(dev).repeat(K)
    return _Problem(B, K, ny, nx, dev, maps, scale_t, op, op.AH(y_n), init, y_n, sense_n, gamma, sigma)


def data_weight(y: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor, config) -> tuple:
    """(γ, σ): the data-consistency weight — `config.gamma` (data_weight fixed), or per slice
    min(γ, prior_error / σ²) with σ the k-space noise (`recon_core.noise_level.kspace_sigma`, in the prior's
    normalised units); where σ cannot be measured (calibration block too small) γ stays. σ is (B,) or None."""
    if config.data_weight == "fixed":
        return float(config.gamma), None
    from .noise_level import kspace_sigma

    m = mask[:, 0] if mask.ndim == 4 else mask
    sigma = kspace_sigma(y, m.bool()) / scale.double().cpu()
    g = torch.where(torch.isfinite(sigma) & (sigma > 0), config.prior_error / sigma.clamp_min(1e-30) ** 2,
                    torch.full_like(sigma, float(config.gamma)))
    return g.clamp(max=float(config.gamma)).float(), sigma.float()


def sampling_timesteps(scheduler_config, config) -> tuple[list, torch.Tensor, int]:
    """The DDIM timesteps this config visits: the "leading" grid of `nfe` steps, cut to t ≤ t0·T for a
    warm start (at least the grid's last step). Returns (timesteps, ᾱ table, grid step)."""
    from .prior.ddim import ddim_schedule

    ts, acp, step = ddim_schedule(scheduler_config, config.nfe)
    ts = ts.tolist()
    if config.warm_start is not None:
        T = int(scheduler_config["num_train_timesteps"]) if isinstance(scheduler_config, dict) else \
            int(scheduler_config.num_train_timesteps)
        kept = [t for t in ts if t <= config.warm_start * T]
        ts = kept or ts[-1:]
    return ts, acp, step


@torch.no_grad()
def dds_reconstruct(prior, ksp, maps, mask, records=None, config: DDSConfig | None = None, device="auto",
                    scale=None, progress=None, **settings) -> DDSResult:
    """DDS reconstruction of a batch of slices with K posterior samples.

    prior:   recon_core.prior.Prior (predict_eps, condition, uncondition, scheduler, unet).
    ksp:     (B, C, ny, nx) complex (numpy or torch), scanner units; un-sampled entries are ignored
             (the mask is applied). A (C, ny, nx) array is treated as B = 1.
    maps:    (B, C, ny, nx) complex coil maps (same shape as ksp).
    mask:    (ny, nx) or (B, ny, nx) bool/{0,1}.
    records: list of B MetadataRecord for the conditional branch, or None (unconditional; cfg ignored).
    config:  `recon_core.settings.DDSConfig` (nfe, cfg, eta, gamma, cg_iters, final_cg_iters, warm_start,
             warm_init, samples, seed, precision, scale, clip_x0); keyword `settings` override its fields
             (e.g. `nfe=20`). precision "auto" measures fp32 vs bf16 once (recon_core.precision).
    scale:   None (estimate by `config.scale`), "sense"/"zerofilled", a float, or (B,) per-slice scales.
    progress: None, True (tqdm bar) or callable(step, total).
    Returns DDSResult (numpy arrays, scanner units); `timings["precision"]` says what ran.
    """
    from .cg import data_consistency
    from .device import autocast, resolve_device
    from .precision import choose_inference_precision
    from .prior.ddim import alpha_prev, ddim_step, forward_noise, guided_eps, make_guidance, tweedie_x0

    t_start = time.perf_counter()
    for k, v in list(settings.items()):
        if k not in DDSConfig.sampler_fields():
            raise TypeError(f"dds_reconstruct() got an unexpected keyword argument {k!r}")
    c = (config.sampler() if config is not None else DDSConfig()).replace(**settings)
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    ksp, maps, records = _check_inputs(prior, ksp, maps, mask, records, pad=True)
    pb = _pad_problem(_prepare(ksp, maps, mask, c, scale, dev), _down_factor(prior))
    B, K, ny, nx = pb.B, pb.K, pb.ny, pb.nx
    if _prior_device(prior) != dev:
        prior.to(dev)
    guid = make_guidance(prior, records, c.cfg, B, n_repeat=K, device=dev)
    prec = choose_inference_precision(prior, c.precision, guid.tokens.shape[0], (ny, nx), dev)
    timesteps, acp, step = sampling_timesteps(prior.scheduler.config, c)

    noise = per_slice_noise(c.seed, K, B, (1, 2, ny, nx), dev)
    x = noise()
    if pb.init is not None:   # warm start: q(x_t0 | classical estimate)
        x0w = pb.init.repeat(K, 1, 1)
        x = forward_noise(torch.stack([x0w.real, x0w.imag], dim=1).float(), float(acp[timesteps[0]]), x)
    tick, close = _progress_fn(progress, len(timesteps), "DDS")
    t_net = t_cg = 0.0
    x0c = x0_pre = None
    _sync(dev)
    t_setup = time.perf_counter() - t_start
    try:
        for i, t in enumerate(timesteps):
            a_t, a_prev = float(acp[t]), alpha_prev(acp, t, step)
            _sync(dev)
            t0 = time.perf_counter()
            with autocast(dev, prec.precision):
                eps = guided_eps(prior, x, t, guid)                    # 1) ε with CFG, one forward
            _sync(dev)
            t1 = time.perf_counter()
            t_net += t1 - t0
            x0 = tweedie_x0(x, eps, a_t)                               # 2) Tweedie x̂0
            if c.clip_x0 is not None:
                x0 = x0.clamp(-c.clip_x0, c.clip_x0)
            x0c = x0_pre = torch.complex(x0[:, 0], x0[:, 1])
            x0c = data_consistency(pb.op, x0c, None, pb.gamma, c.cg_iters, AHy=pb.AHy)  # 3) (I + γAᴴA)x = x̂0 + γAᴴy
            _sync(dev)
            t_cg += time.perf_counter() - t1
            if i < len(timesteps) - 1:                                 # 4) DDIM update
                x0r = torch.stack([x0c.real, x0c.imag], dim=1)
                x = ddim_step(x0r, eps, a_t, a_prev, c.eta, noise() if c.eta > 0 else None)
            tick(i + 1)
    finally:
        close()
    t2 = time.perf_counter()
    if c.final_cg_iters > 0 and c.gamma > 0:
        x0c = data_consistency(pb.op, x0c, None, pb.gamma, c.final_cg_iters, AHy=pb.AHy)
        t_cg += time.perf_counter() - t2
    return _finish(pb, x0c, x0_pre, c, prec, timesteps, t_start, t_net, t_cg, t_setup, time.perf_counter())


def _finish(pb, x0c, x0_pre, c, prec, timesteps, t_start, t_net, t_cg, t_setup, t2) -> DDSResult:
    """Back to scanner units, zero outside the coil-map support, K-sample mean/std, timings."""
    B, K, ny, nx = pb.B, pb.K, pb.ny, pb.nx
    # Outside the coil-map support (ESPIRiT crop: Σ|S|² = 0) AᴴA is zero, so the data say nothing there and
    # only the prior's x̂0 remains; the image is set to 0 there, as SENSE-type reconstructions do.
    support = (pb.maps.abs().pow(2).sum(dim=1) > 0).to(x0c.real.dtype)          # (B, ny, nx)
    out = (x0c.reshape(K, B, ny, nx) * (pb.scale.view(1, B, 1, 1) * support[None])).to(torch.complex64)
    if pb.inner is not None:   # padded for the network: back to the measured matrix
        from .operators import crop_image

        out, x0_pre = crop_image(out, pb.inner), crop_image(x0_pre, pb.inner)
        ny, nx = pb.inner
    mean = out.mean(dim=0)
    std = samples_np = None
    if K > 1:
        std = ((out - mean[None]).abs() ** 2).mean(dim=0).sqrt().float().cpu().numpy()
        samples_np = out.cpu().numpy()
    image = mean.cpu().numpy().astype(np.complex64)
    den = (x0_pre.reshape(K, B, ny, nx) * pb.scale.view(1, B, 1, 1)).mean(dim=0).to(torch.complex64).cpu().numpy()
    t_total = time.perf_counter() - t_start
    timings = {"network": t_net, "cg": t_cg, "setup": t_setup, "finish": time.perf_counter() - t2,
               "total": t_total, "other": t_total - t_net - t_cg, "precision": prec.precision,
               "precision_choice": prec.to_meta()}
    if pb.sigma is not None:   # noise-aware data weight: what was measured and used, per slice
        timings["noise_sigma"] = [round(float(v), 6) for v in pb.sigma]
        timings["gamma"] = [round(float(v), 4) for v in pb.gamma[:B]]
    return DDSResult(image=image, std=std, samples=samples_np, scale=pb.scale.cpu().numpy().astype(np.float32),
                     timings=timings, denoised=den, nfe=len(timesteps), cfg=float(c.cfg), timesteps=list(timesteps),
                     config=c.to_meta())
