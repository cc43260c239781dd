"""Fixed validation of a prior for training A/B runs (training/RUNS.md).

Two measures on the export's validation split, both deterministic for a given model:
- **ε-MSE per timestep bin**: for each of `n_bins` equal bins of t ∈ [0, 1000) every validation image is
  noised at the bin's centre t with noise drawn from one fixed generator, and the unweighted ε-MSE of the
  conditional prediction is averaged per bin (unweighted, so runs trained with different loss weightings
  compare on the same scale).
- **DDS PSNR** on the first `dds_slices` validation slices (each at its own seeded mask, coil maps from
  the undersampled ACS by `recon_core.coils.coil_maps`, the sampler settings given), fastMRI convention,
  against the export's reference.
"""

from __future__ import annotations

import numpy as np
import torch

from recon_core.coils import coil_maps
from recon_core.device import autocast
from recon_core.errors import InputError
from recon_core.masks import make_mask, parse_mask_spec
from recon_core.metrics import all_metrics
from recon_core.samplers.dds import dds_reconstruct
from recon_core.sim.export import load_split


@torch.no_grad()
def eps_mse_by_bin(prior, images: np.ndarray, records, n_bins: int = 10, seed: int = 0, batch: int = 16,
                   precision: str = "fp32") -> dict:
    """images (N, 2, H, W) float32 normalised, records N MetadataRecord → {"t": centres, "mse": per bin, "mean"}."""
    n = len(images)
    if n == 0 or len(records) != n:
        raise InputError(f"validation: {n} images and {len(records)} records")
    dev = prior.device
    acp = prior.scheduler.alphas_cumprod.to(dev)
    T = prior.scheduler.config.num_train_timesteps
    centres = [int((b + 0.5) * T / n_bins) for b in range(n_bins)]
    g = torch.Generator().manual_seed(int(seed))
    noise_all = torch.randn((n_bins, n, *images.shape[1:]), generator=g)
    x_all = torch.from_numpy(np.array(images, dtype=np.float32))
    mse = []
    for b, t in enumerate(centres):
        acc = 0.0
        for lo in range(0, n, batch):
            x0 = x_all[lo:lo + batch].to(dev)
            eps = noise_all[b, lo:lo + batch].to(dev)
            a = acp[t].float()
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=dev)
            with autocast(dev, precision):
                pred = prior.predict_eps(xt, tt, prior.condition(records[lo:lo + batch]))
            acc += float((pred.float() - eps).pow(2).mean(dim=(1, 2, 3)).sum())
        mse.append(acc / n)
    return {"t": centres, "mse": mse, "mean": float(np.mean(mse))}


def dds_validation(prior, data, split: str = "val", n_slices: int = 8, mask: str = "uniform1d:4",
                   seed: int = 0, progress: bool = False, **dds_kw) -> dict:
    """DDS PSNR/SSIM on the first `n_slices` slices of `data/split` (k-space + reference needed)."""
    sd = load_split(data, split)
    if sd.kspace is None or sd.reference is None:
        raise InputError(f"{data}/{split}: no kspace.npy/reference.npy (export the split with k-space)")
    idx = np.arange(min(int(n_slices), len(sd)))
    kind, accel = parse_mask_spec(mask)
    shape = tuple(sd.kspace.shape[-2:])
    masks = np.stack([make_mask(kind, shape, accel, seed=20_000_000 + seed * 1_000_003 + int(i)).mask for i in idx])
    ksp = (np.asarray(sd.kspace[idx]) * masks[:, None]).astype(np.complex64)
    maps = coil_maps(ksp, mask=masks)   # the scanner's recipe (crop policy, low-resolution fallback)
    recs = [sd.records[int(i)] for i in idx]
    r = dds_reconstruct(prior, ksp, maps, masks, recs, seed=seed, progress=progress, **dds_kw)
    ref = np.asarray(sd.reference[idx])
    m = all_metrics(ref, r.image, "fastmri")
    return {"mask": mask, "n": int(len(idx)), "psnr": [float(v) for v in m["psnr"]],
            "ssim": [float(v) for v in m["ssim"]], "psnr_mean": float(np.mean(m["psnr"])),
            "ssim_mean": float(np.mean(m["ssim"])), "seconds_per_slice": r.timings["total"] / len(idx)}
