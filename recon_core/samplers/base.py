"""The scaffolding every diffusion sampler shares (DDS, Score-MRI, LDPM and any new one).

- `check_inputs` (shapes, pixel vs latent prior, matrix vs the network), `prepare` (mask, per-slice intensity
  normalisation `estimate_scale`, K-sample repeat, the classical warm-start estimate, the data weight
  `data_weight`) → `Problem`; `pad_problem` for any matrix (`operators.PaddedOp`);
- `per_slice_noise` (one CPU generator per sample and slice: a slice's result depends neither on its batch
  nor on the device), `sampling_timesteps` (the DDIM grid, cut for a warm start), `progress_fn`, `sync`;
- `finish` → `SamplerResult` (scanner units, K-sample mean/std, timings).
A sampler module (see `recon_core/samplers/dds.py`) composes these with its own update rule and declares a
`SamplerSpec` (`recon_core/samplers/spec.py`) that the registry (`recon_core/samplers/__init__.py`) lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..baselines import reconstruct
from ..cg import sense_solve
from ..errors import InputError
from ..fft import ifft2c
from ..mvue import combine, percentile_scale
from ..noise_level import kspace_sigma
from ..operators import PaddedOp, SenseOp, crop_image, pad_image, pad_sizes
from ..prior.ddim import alpha_prev, ddim_schedule, forward_noise, guided_eps
from ..settings import SCALE_METHODS
from ..validate import as_tensor


@dataclass
class SamplerResult:
    """Output of every sampler (`dds_reconstruct`, `scoremri_reconstruct`, `ldpm_reconstruct`, …).

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


def to_tensor(x, name):
    return as_tensor(x, name)


def progress_fn(progress, total, desc):
    """progress: None/False → silent; True → tqdm bar; callable → called (step, total)."""
    if progress is None or progress is False:
        return (lambda i: None), (lambda: None)
    if progress is True:
        bar = tqdm(total=total, desc=desc, leave=False)
        return (lambda i: bar.update(1)), bar.close
    if callable(progress):
        return (lambda i: progress(i, total)), (lambda: None)
    raise InputError(f"progress: expected None, a bool or a callable(step, total), got {type(progress).__name__}")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_slice_noise(seed: int, K: int, B: int, shape: tuple, dev):
    """noise() → (K·B·shape[0], *shape[1:]) float32 on `dev`: one CPU generator per (sample k, slice b),
    seeded seed + k, so a slice's noise depends neither on the other slices of its batch nor on the device."""
    gens = [torch.Generator(device="cpu").manual_seed(int(seed) + k) for k in range(K) for _ in range(B)]

    def noise():
        return torch.cat([torch.randn(shape, generator=g) for g in gens]).to(dev)

    return noise


def prior_device(prior):
    try:
        return next(prior.unet.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def down_factor(prior):
    """The image sides must be multiples of this: the UNet's downsampling (× the VAE's, for a latent prior)."""
    try:
        f = 2 ** (len(prior.unet.config.block_out_channels) - 1)
    except AttributeError:
        return 1
    vae = getattr(prior, "vae", None)
    return f * (vae.downsample if vae is not None else 1)


@dataclass
class Problem:
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
    inner: tuple | None = None  # the measured (ny, nx) when the problem was padded for the network (`pad_problem`)


def pad_problem(pb: "Problem", multiple: int) -> "Problem":
    """The problem on the smallest grid whose sides are multiples of `multiple` (the UNet's downsampling):
    images zero-padded, the operator seen through the padding (`operators.PaddedOp`); the result is cropped
    back in `finish`. Unchanged when the matrix already fits."""
    size = pad_sizes(pb.ny, pb.nx, multiple)
    if size == (pb.ny, pb.nx):
        return pb
    return replace(pb, ny=size[0], nx=size[1], maps=pad_image(pb.maps, size), op=PaddedOp(pb.op, size),
                   AHy=pad_image(pb.AHy, size), init=None if pb.init is None else pad_image(pb.init, size),
                   inner=(pb.ny, pb.nx))


def check_inputs(prior, ksp, maps, mask, records, latent: bool = False, pad: bool = False):
    """Validated (ksp, maps, records); `latent`: the sampler works on a latent prior (LDPM), else a pixel one;
    `pad`: the sampler pads any matrix for the network (`pad_problem`), else the sides must fit it."""
    if bool(getattr(prior, "is_latent", False)) != latent:
        raise InputError("this checkpoint is a latent prior (MR-VAE + latent UNet): use --method ldpm"
                         if not latent else "method ldpm needs a latent prior (a checkpoint with vae/ and "
                         "manifest key 'space': 'latent'); this is a pixel prior: use --method dds or scoremri")
    ksp = to_tensor(ksp, "k-space")
    maps = to_tensor(maps, "coil maps")
    if ksp.ndim == 3:
        ksp = ksp[None]
    if maps.ndim == 3:
        maps = maps[None]
    if ksp.ndim != 4:
        raise InputError(f"k-space: expected shape (B, C, ny, nx), got {tuple(ksp.shape)}")
    if tuple(maps.shape) != tuple(ksp.shape):
        raise InputError(f"coil maps: expected shape {tuple(ksp.shape)} (same as k-space), got {tuple(maps.shape)}")
    B, C, ny, nx = ksp.shape
    f = down_factor(prior)
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


def scale_values(scale, B) -> torch.Tensor:
    scale_t = torch.as_tensor(np.asarray(scale, dtype=np.float64).reshape(-1), dtype=torch.float32)
    if scale_t.numel() == 1:
        scale_t = scale_t.expand(B).clone()
    if scale_t.numel() != B or not bool(torch.isfinite(scale_t).all()) or bool((scale_t <= 0).any()):
        raise InputError(f"scale: expected a positive float or {B} positive values, got {scale!r}")
    return scale_t


def prepare(ksp, maps, mask, config, scale, dev) -> Problem:
    """Mask, normalise (estimated or given scale) and repeat the data for K samples; the classical
    estimate for a warm start."""
    B, C, ny, nx = ksp.shape
    K = int(config.samples)
    ksp, maps = ksp.to(dev), maps.to(dev)
    m = SenseOp(maps, mask).mask  # validates the mask against (ny, nx) and B; (B|1, 1, ny, nx) float32
    y = ksp * m
    sense_img = None
    if scale is None or isinstance(scale, str):
        method = config.scale if scale is None else scale
        if method == "sense" or (config.warm_start is not None and config.warm_init == "sense"):
            sense_img = sense_solve(SenseOp(maps, m[:, 0]), y, n_iter=10)
        scale_t = estimate_scale(y, maps, m, method=method, image=sense_img if method == "sense" else None)
    else:
        scale_t = scale_values(scale, B)
    scale_t = scale_t.to(dev)
    init = None
    if config.warm_start is not None:
        if config.warm_init == "sense":
            if sense_img is None:
                    sense_img = sense_solve(SenseOp(maps, m[:, 0]), y, n_iter=10)
            init = sense_img
        elif config.warm_init == "l1wavelet":
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
    return Problem(B, K, ny, nx, dev, maps, scale_t, op, op.AH(y_n), init, y_n, sense_n, gamma, sigma)


def data_weight(y: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor, config) -> tuple:
    """(γ, σ): the data-consistency weight — `config.gamma` (data_weight fixed), or per slice
    min(γ, prior_error / σ²) with σ the k-space noise (`recon_core.noise_level.kspace_sigma`, in the prior's
    normalised units); where σ cannot be measured (calibration block too small) γ stays. σ is (B,) or None."""
    if config.data_weight == "fixed":
        return float(config.gamma), None
    m = mask[:, 0] if mask.ndim == 4 else mask
    sigma = kspace_sigma(y, m.bool()) / scale.double().cpu()
    g = torch.where(torch.isfinite(sigma) & (sigma > 0), config.prior_error / sigma.clamp_min(1e-30) ** 2,
                    torch.full_like(sigma, float(config.gamma)))
    return g.clamp(max=float(config.gamma)).float(), sigma.float()


def sampling_timesteps(scheduler_config, config) -> tuple[list, torch.Tensor, int]:
    """The DDIM timesteps this config visits: the "leading" grid of `nfe` steps, cut to t ≤ t0·T for a
    warm start (at least the grid's last step). Returns (timesteps, ᾱ table, grid step)."""
    ts, acp, step = ddim_schedule(scheduler_config, config.nfe)
    ts = ts.tolist()
    if config.warm_start is not None:
        T = int(scheduler_config["num_train_timesteps"]) if isinstance(scheduler_config, dict) else \
            int(scheduler_config.num_train_timesteps)
        kept = [t for t in ts if t <= config.warm_start * T]
        ts = kept or ts[-1:]
    return ts, acp, step


def finish(pb, x0c, x0_pre, c, prec, timesteps, t_start, t_net, t_cg, t_setup, t2) -> SamplerResult:
    """Back to scanner units, zero outside the coil-map support, K-sample mean/std, timings."""
    B, K, ny, nx = pb.B, pb.K, pb.ny, pb.nx
    # Outside the coil-map support (ESPIRiT crop: Σ|S|² = 0) AᴴA is zero, so the data say nothing there and
    # only the prior's x̂0 remains; the image is set to 0 there, as SENSE-type reconstructions do.
    support = (pb.maps.abs().pow(2).sum(dim=1) > 0).to(x0c.real.dtype)          # (B, ny, nx)
    out = (x0c.reshape(K, B, ny, nx) * (pb.scale.view(1, B, 1, 1) * support[None])).to(torch.complex64)
    if pb.inner is not None:   # padded for the network: back to the measured matrix
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
               "total": t_total, "other": t_total - t_net - t_cg, "precision": prec.precision, "engine": prec.engine,
               "precision_choice": prec.to_meta()}
    if pb.sigma is not None:   # noise-aware data weight: what was measured and used, per slice
        timings["noise_sigma"] = [round(float(v), 6) for v in pb.sigma]
        timings["gamma"] = [round(float(v), 4) for v in pb.gamma[:B]]
    return SamplerResult(image=image, std=std, samples=samples_np, scale=pb.scale.cpu().numpy().astype(np.float32),
                     timings=timings, denoised=den, nfe=len(timesteps), cfg=float(c.cfg), timesteps=list(timesteps),
                     config=c.to_meta())



def initial_state(pb: Problem, noise, acp, timesteps, encode=None) -> torch.Tensor:
    """The sampler's first iterate: x_T = noise() (per sample and slice), or — warm start — the classical
    estimate (through `encode` for a latent prior, else as (real, imag) channels) forward-noised to the first
    timestep, q(x_t0 | estimate)."""
    x = noise()
    if pb.init is None:
        return x
    x0 = pb.init.repeat(pb.K, 1, 1)
    x0 = encode(x0) if encode is not None else torch.stack([x0.real, x0.imag], dim=1).float()
    return forward_noise(x0, float(acp[timesteps[0]]), x)


def ddim_steps(timesteps, acp, step: int, progress, desc: str):
    """Yields (i, t, ᾱ_t, ᾱ_prev, last) over the sampler's DDIM grid, with the progress report of `progress`
    (None, True: a tqdm bar, or callable(step, total)) after each step."""
    tick, close = progress_fn(progress, len(timesteps), desc)
    try:
        for i, t in enumerate(timesteps):
            yield i, t, float(acp[t]), alpha_prev(acp, t, step), i == len(timesteps) - 1
            tick(i + 1)
    finally:
        close()


def timed_eps(runner, x: torch.Tensor, t: int, guidance, dev) -> tuple[torch.Tensor, float]:
    """(ε̂ with classifier-free guidance — one batched forward of `runner`, the chosen engine (its own precision;
    recon_core.precision.choose_runtime) —, its seconds)."""
    sync(dev)
    t0 = time.perf_counter()
    eps = guided_eps(runner, x, t, guidance)
    sync(dev)
    return eps, time.perf_counter() - t0


def resolve_config(cls, config, settings: dict, caller: str):
    """The settings a sampler runs with: `config` (any composed config holding `cls`'s fields, e.g. the front
    doors' SamplerConfig/ReconParams; None → cls()) with the keyword `settings` applied; an unknown keyword is a
    TypeError naming `caller`, as for any function."""
    for k in settings:
        if k not in cls.sampler_fields():
            raise TypeError(f"{caller}() got an unexpected keyword argument {k!r}")
    return (config.sampler() if config is not None else cls()).replace(**settings)
