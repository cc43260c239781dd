"""Training of the MR-VAE (`contextmri train-vae`): the same data code (training/datasets.py), data order,
LR schedule, phase augmentation, precision choice, stop flag and log/plot helpers as the prior's loop
(training/loop.py), with the VAE's own loss:

    L = |x̂ − x|₁ + w_ssim · (1 − SSIM(|x̂|, |x|)) + β · KL(q(z|x) ‖ N(0, I))

on the normalised (real, imag) images (no perceptual/adversarial terms: no downloaded VGG/LPIPS offline),
optionally on random `train.crop` patches (the VAE is convolutional: ~4× cheaper per sample at 64² than 128²).
The exported VAE's `scaling_factor` = 1 / std of the latent means of the first 256 training images.

Output directory: OUT/model/ (the VAE checkpoint `recon_core.prior.vae.load_vae` reads), OUT/train_state/
(model.safetensors, optimizer.pt, rng.pt, state.json: exact resume), OUT/log.csv, OUT/loss.png, OUT/config.yaml.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from recon_core.device import autocast, resolve_device
from recon_core.errors import InputError
from recon_core.io_utils import atomic_dir, write_json_atomic
from recon_core.metrics import psnr, ssim
from recon_core.precision import PrecisionChoice, choose_precision
from recon_core.prior.vae import build_vae
from recon_core.settings import PRECISIONS
from training.config import read_config
from training.datasets import build_dataset
from training.loop import _Order, _phase_rotate, _StopFlag, _write_config, _write_log, lr_at

DEFAULTS = {
    "name": "vae",
    "seed": 0,
    "vae": "vae-128",
    "data": {"kind": "export", "path": None, "split": "train", "cache": None, "limit": None, "augment_phase": True},
    "train": {"batch_size": 8, "max_steps": 1000, "lr": 1.0e-3, "lr_schedule": "cosine", "warmup_steps": 50,
              "lr_min_ratio": 0.05, "weight_decay": 0.0, "betas": [0.9, 0.999], "grad_clip": 1.0,
              "kl_weight": 1.0e-6, "ssim_weight": 0.2, "precision": "auto", "checkpoint_every": 200,
              "log_every": 10, "device": "auto", "threads": None, "max_minutes": None,
              "crop": None,         # train on random crop × crop patches (the VAE is convolutional; None: full images)
              "crop_until": None},  # ... until this step, full images after it (GroupNorm sees full-FOV statistics)
}


def load_vae_train_config(config, overrides: dict | None = None) -> dict:
    """YAML path or dict → validated config (defaults filled); unknown keys → InputError naming the key."""
    cfg, source = read_config(config, DEFAULTS, overrides, what="VAE training config")
    t = cfg["train"]
    for key in ("batch_size", "max_steps", "checkpoint_every", "log_every"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise InputError(f"{source}: key 'train.{key}' must be a positive integer, got {t[key]!r}")
    for key in ("lr", "kl_weight", "ssim_weight", "grad_clip", "weight_decay", "lr_min_ratio"):
        t[key] = float(t[key])
        if t[key] < 0:
            raise InputError(f"{source}: key 'train.{key}' must be ≥ 0, got {t[key]}")
    if t["precision"] not in PRECISIONS:
        raise InputError(f"{source}: key 'train.precision' is {t['precision']!r}, expected auto, fp32, bf16 or fp16")
    if t["crop"] is not None and (not isinstance(t["crop"], int) or t["crop"] < 8):
        raise InputError(f"{source}: key 'train.crop' must be an integer ≥ 8 or null, got {t['crop']!r}")
    cfg["_source"] = source
    return cfg


# ------------------------------------------------------------------------------------------------
def ssim_torch(x: torch.Tensor, y: torch.Tensor, win: int = 7, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Differentiable mean SSIM of magnitude images x, y (B, H, W) (uniform window, data range = max |y|)."""
    dr = y.flatten(1).amax(dim=1).clamp_min(1e-6)[:, None, None, None]
    x, y = x[:, None], y[:, None]
    f = lambda a: torch.nn.functional.avg_pool2d(a, win, stride=1)  # noqa: E731
    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
    c1, c2 = (k1 * dr) ** 2, (k2 * dr) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
    return s.mean()


def _mag(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2 + 1e-12)


def vae_loss(vae, x: torch.Tensor, tc: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """(loss, parts) of one batch x (B, 2, H, W); the latent is sampled with `gen` (reparameterised)."""
    dist = vae.posterior(x)
    eps = torch.randn(dist.mean.shape, generator=gen).to(x.device, dist.mean.dtype)
    z = dist.mean + dist.std * eps
    xr = vae.ae.decode(z).sample.float()
    l1 = (xr - x).abs().mean()
    ss = ssim_torch(_mag(xr), _mag(x))
    kl = dist.kl().float().mean() / x[0].numel()
    loss = l1 + tc["ssim_weight"] * (1 - ss) + tc["kl_weight"] * kl
    return loss, {"l1": float(l1.detach()), "ssim": float(ss.detach()), "kl": float(kl.detach())}


def random_crop(x: torch.Tensor, size: int, multiple: int, gen: torch.Generator) -> torch.Tensor:
    """One random size × size window (corner on a `multiple` grid) per image of x (B, 2, H, W)."""
    H, W = x.shape[-2:]
    size = min(size - size % multiple, H, W)
    out = []
    for b in range(x.shape[0]):
        i = int(torch.randint(0, (H - size) // multiple + 1, (1,), generator=gen)) * multiple
        j = int(torch.randint(0, (W - size) // multiple + 1, (1,), generator=gen)) * multiple
        out.append(x[b, :, i:i + size, j:j + size])
    return torch.stack(out)


@torch.no_grad()
def latent_scale(vae, ds, n: int = 256, batch: int = 16) -> float:
    """1 / std of the latent means of the first n images of `ds` (the latent prior's unit variance)."""
    zs = []
    for i in range(0, min(n, len(ds)), batch):
        x = torch.from_numpy(np.stack([ds[j][0] for j in range(i, min(i + batch, n, len(ds)))]))
        zs.append(vae.posterior(x.to(next(vae.parameters()).device)).mean.float().cpu())
    return float(1.0 / torch.cat(zs).std().clamp_min(1e-6))


@torch.no_grad()
def vae_metrics(vae, ds, limit: int = 32, batch: int = 8) -> dict:
    """PSNR / SSIM (dB, magnitude, fastMRI convention) of decode(encode(x)) against x on `limit` images."""
    ps, ss = [], []
    dev = next(vae.parameters()).device
    for i in range(0, min(limit, len(ds)), batch):
        x = torch.from_numpy(np.stack([ds[j][0] for j in range(i, min(i + batch, limit, len(ds)))])).to(dev)
        xr = vae.reconstruct(x).cpu().numpy()
        ref = x.cpu().numpy()
        ref_c, rec_c = ref[:, 0] + 1j * ref[:, 1], xr[:, 0] + 1j * xr[:, 1]
        ps += list(np.atleast_1d(psnr(ref_c, rec_c)))
        ss += list(np.atleast_1d(ssim(ref_c, rec_c)))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "n": len(ps)}


# ------------------------------------------------------------------------------------------------
def _save_state(out: Path, vae, opt, step, order, gen, elapsed, rows, cfg, precision):


    tmp, commit = atomic_dir(out / "train_state")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in vae.ae.state_dict().items()},
                  str(tmp / "model.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        torch.save({"gen": gen.get_state(), "torch": torch.get_rng_state()}, tmp / "rng.pt")
        write_json_atomic(tmp / "state.json", {"step": step, "epoch": order.epoch, "cursor": order.cursor,
                                               "elapsed_s": elapsed, "log_rows": rows, "precision": precision,
                                               "config": {k: v for k, v in cfg.items() if k != "_source"}})
        commit()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_state(state_dir: Path, vae, opt, order, gen):

    for name in ("state.json", "model.safetensors", "optimizer.pt", "rng.pt"):
        if not (state_dir / name).is_file():
            raise InputError(f"cannot resume: {state_dir / name} missing")
    state = json.loads((state_dir / "state.json").read_text())
    vae.ae.load_state_dict(load_file(str(state_dir / "model.safetensors")))
    opt.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
    rng = torch.load(state_dir / "rng.pt", weights_only=False)
    gen.set_state(rng["gen"])
    torch.set_rng_state(rng["torch"])
    order.epoch, order.cursor, order._indices = int(state["epoch"]), int(state["cursor"]), None
    return state


def _vae_precision(tc, vae, x, dev, state, log):

    if state is not None and state.get("precision") and tc["precision"] == "auto":
        return PrecisionChoice(**state["precision"])

    def trial(p):
        with autocast(dev, p):
            loss = vae.ae(x).sample.float().pow(2).mean()
        loss.backward()
        vae.zero_grad(set_to_none=True)

    key = f"train-vae:{json.dumps(vae.manifest.get('config'), sort_keys=True)}:b{x.shape[0]}:{x.shape[-1]}"
    return choose_precision(tc["precision"], dev, trial, key, reps=2, log=log)


def train_vae(config, out=None, resume=None, max_steps=None, max_minutes=None, device=None, dataset=None,
              progress: bool = True, overrides: dict | None = None):
    """Train (or resume exactly from OUT/train_state) the MR-VAE; returns (step, stop reason, out dir, val metrics)."""
    ov = dict(overrides or {})
    ov.update({"train.max_steps": max_steps, "train.max_minutes": max_minutes, "train.device": device})
    cfg = load_vae_train_config(config, ov)
    tc = cfg["train"]
    if tc["threads"]:
        torch.set_num_threads(int(tc["threads"]))
    dev = resolve_device(tc["device"])
    if out is None and resume is None:
        raise InputError("train-vae: give --out DIR (or --resume DIR)")
    out = Path(out or resume)
    seed = int(cfg["seed"])
    vae = build_vae(cfg["vae"], seed=seed).to(dev).train()
    ds = dataset if dataset is not None else build_dataset(cfg["data"], vae.resolution, progress)
    order = _Order(len(ds), tc["batch_size"], 0, 1, seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=tc["lr"], weight_decay=tc["weight_decay"], betas=tuple(tc["betas"]))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 11)
    torch.manual_seed(seed)
    step, elapsed0, rows, state = 0, 0.0, [], None
    if resume is not None:
        sdir = Path(resume) / "train_state"
        if not (sdir / "state.json").is_file():
            raise InputError(f"--resume {resume}: no training state (expected {sdir / 'state.json'})")
        state = _load_state(sdir, vae, opt, order, gen)
        step, elapsed0, rows = int(state["step"]), float(state["elapsed_s"]), list(state["log_rows"])
    x_trial = torch.from_numpy(np.stack([ds[i % len(ds)][0] for i in range(tc["batch_size"])])).to(dev)
    prec = _vae_precision(tc, vae, x_trial, dev, state, lambda m: print(m, flush=True) if progress else None)
    _write_config(out, cfg)
    stop = _StopFlag()
    t0 = time.time()
    deadline = t0 + 60 * tc["max_minutes"] if tc["max_minutes"] else None
    bar = tqdm(total=tc["max_steps"], initial=step, desc=f"train-vae {cfg['name']}", disable=not progress)
    interval, reason = [], "max_steps"

    def checkpoint():
        el = elapsed0 + time.time() - t0
        _save_state(out, vae, opt, step, order, gen, el, rows, cfg, prec.to_meta())
        vae.eval()
        vae.manifest["scaling_factor"] = latent_scale(vae, ds)
        training = {"steps": step, "config": cfg["_source"], "name": cfg["name"],
                    "data": {k: cfg["data"][k] for k in ("kind", "path", "split")}, "precision": prec.to_meta(),
                    "loss": {k: tc[k] for k in ("kl_weight", "ssim_weight")}, "elapsed_s": round(el, 1)}
        vae.save_pretrained(out / "model", training=training)
        vae.train()
        _write_log(out, rows, f"{cfg['name']}: VAE loss")

    try:
        while step < tc["max_steps"]:
            ts = time.time()
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tc)
            idx = order.next_batch()
            x = torch.from_numpy(np.stack([ds[i][0] for i in idx])).float()
            if cfg["data"]["augment_phase"]:
                x = _phase_rotate(x, gen)
            if tc["crop"] and (tc["crop_until"] is None or step < int(tc["crop_until"])):
                x = random_crop(x, int(tc["crop"]), vae.downsample, gen)
            with autocast(dev, prec.precision):
                loss, parts = vae_loss(vae, x.to(dev), tc, gen)
            if not math.isfinite(float(loss.detach())):
                raise RuntimeError(f"VAE training diverged: loss {float(loss.detach())} at step {step + 1}")
            loss.backward()
            if tc["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(vae.parameters(), tc["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            interval.append((float(loss.detach()), parts))
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", ssim=f"{parts['ssim']:.3f}")
            if step % tc["log_every"] == 0 or step == tc["max_steps"]:
                rows.append({"step": step, "epoch": order.epoch, "loss": round(float(np.mean([a for a, _ in interval])), 6),
                             "l1": round(float(np.mean([p["l1"] for _, p in interval])), 6),
                             "ssim": round(float(np.mean([p["ssim"] for _, p in interval])), 5),
                             "kl": round(float(np.mean([p["kl"] for _, p in interval])), 4),
                             "lr": lr_at(step - 1, tc),
                             "samples_per_s": round(len(idx) / max(time.time() - ts, 1e-9), 2),
                             "elapsed_s": round(elapsed0 + time.time() - t0, 1)})
                interval = []
            if stop.reason is not None or (deadline is not None and time.time() > deadline):
                reason = stop.reason or "max_minutes"
                break
            if step % tc["checkpoint_every"] == 0 and step < tc["max_steps"]:
                checkpoint()
        checkpoint()
    finally:
        bar.close()
        stop.restore()
    return step, reason, out
