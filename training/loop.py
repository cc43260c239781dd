"""Training loop of the prior: ε-MSE, AdamW, grad clip, EMA, CFG dropout, autocast, gradient
accumulation, DDP (torchrun / accelerate launch env), periodic checkpoints and exact resume.

Output directory:
    OUT/model/         exported prior (EMA weights), a checkpoint directory `load_prior` reads
                       (for LoRA runs: the adapter directory, manifest key "base")
    OUT/train_state/   model.safetensors (raw weights), ema.safetensors, optimizer.pt, rng.pt, state.json
    OUT/log.csv        step, epoch, loss, lr, ema_decay, samples_per_s, elapsed_s (rank 0)
    OUT/loss.png       loss curve
    OUT/config.yaml    the resolved config

Exact resume: the state holds model, EMA, optimiser, step, data position (epoch, cursor; the per-epoch
order is a deterministic function of seed, epoch and world size) and every RNG (torch global, the noise
generator, the numpy CFG-dropout generator; per rank). On CPU a resumed run equals the uninterrupted
run bit for bit (tests/test_training_resume.py).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from recon_core.device import autocast, resolve_device
from recon_core.errors import InputError
from recon_core.io_utils import atomic_dir as _atomic_dir
from recon_core.io_utils import atomic_path, write_json_atomic
from recon_core.metadata import MetadataRecord
from recon_core.metadata.dropout import apply_cfg_dropout
from recon_core.precision import PrecisionChoice, choose_precision, prior_key
from recon_core.prior import build_prior, load_prior
from recon_core.prior.domain import describe_domain
from recon_core.prior.lora import DEFAULT_TARGETS, add_lora, save_adapter
from recon_core.prior.model import load_preset
from training.config import load_config
from training.datasets import build_dataset
from training.ema import ema_weights, make_ema

STATE_DIR, MODEL_DIR = "train_state", "model"


@dataclass
class TrainResult:
    """What `train` returns: final step, stop reason, output dir, last losses, the prior (raw weights
    in `.prior`; EMA exported to out/model) and the dataset indices this rank saw (in order)."""
    step: int
    reason: str
    out: Path
    losses: list = field(default_factory=list)
    prior: object = None
    seen: list = field(default_factory=list)
    seconds_per_step: float = float("nan")
    rank: int = 0
    world_size: int = 1


# ------------------------------------------------------------------------------------------------
class _Dist:
    """torch.distributed from the environment torchrun / accelerate launch set (WORLD_SIZE, RANK, ...)."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.owns_group = False
        if self.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
            self.owns_group = True

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t.item()) / self.world

    def gather(self, obj):
        if not self.enabled:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def close(self):
        if self.owns_group:
            torch.distributed.destroy_process_group()


class _Order:
    """Deterministic per-epoch sample order (DistributedSampler: seed + epoch, shuffled, rank shard)."""

    def __init__(self, n: int, batch: int, rank: int, world: int, seed: int):

        if n // world < batch:
            raise InputError(f"training data: {n} images are too few for batch size {batch} x {world} processes")
        self.sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.batch = batch
        self.epoch, self.cursor, self._indices = 0, 0, None

    def _load(self):
        self.sampler.set_epoch(self.epoch)
        self._indices = list(self.sampler)

    def next_batch(self) -> list[int]:
        if self._indices is None:
            self._load()
        if self.cursor + self.batch > len(self._indices):
            self.epoch, self.cursor = self.epoch + 1, 0
            self._load()
        out = self._indices[self.cursor:self.cursor + self.batch]
        self.cursor += self.batch
        return out


def condition_records(records, mode: str, cond_cfg: dict, rng: np.random.Generator):
    """CFG dropout of a batch's records: "unconditional" → all-empty records (null tokens always);
    otherwise `recon_core.metadata.dropout.apply_cfg_dropout` (contextmri | independent | none)."""
    if mode == "unconditional":
        return [MetadataRecord() for _ in records]
    return apply_cfg_dropout(records, mode=mode, p_empty=cond_cfg["p_empty"], p_params=cond_cfg["p_params"],
                             p_field=cond_cfg["p_field"], generator=rng)


def _phase_rotate(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Multiply each complex image (B, 2, H, W) by a random global phase e^{iφ}, φ ~ U[0, 2π)."""
    phi = torch.rand(x.shape[0], generator=gen) * (2 * math.pi)
    c, s = torch.cos(phi)[:, None, None], torch.sin(phi)[:, None, None]
    re, im = x[:, 0], x[:, 1]
    return torch.stack([re * c - im * s, re * s + im * c], dim=1)


def lr_at(step: int, tc: dict, time_frac: float | None = None) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warm-up over `warmup_steps`, then constant
    or cosine decay to `lr * lr_min_ratio` at `max_steps`: a pure function of the step (exact resume).
    With `lr_horizon: minutes` the cosine runs over wall time instead: `time_frac` is the fraction of this
    run's `max_minutes` spent (a fixed lease of a machine whose speed is not known in advance)."""
    base, warm, total = float(tc["lr"]), int(tc["warmup_steps"]), int(tc["max_steps"])
    if warm > 0 and step < warm:
        return base * (step + 1) / warm
    if tc["lr_schedule"] == "cosine":
        span = max(total - warm, 1)
        frac = min(max(step - warm, 0) / span, 1.0)
        if tc.get("lr_horizon", "steps") == "minutes" and time_frac is not None:
            frac = min(max(float(time_frac), 0.0), 1.0)
        lo = base * float(tc["lr_min_ratio"])
        return lo + 0.5 * (base - lo) * (1.0 + math.cos(math.pi * frac))
    return base


def loss_weights(alphas_t: torch.Tensor, tc: dict) -> torch.Tensor | None:
    """Per-sample weights of the ε-MSE: None (uniform) or min-SNR-γ, w = min(SNR, γ)/SNR with
    SNR = ᾱ/(1−ᾱ) (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting", 2023, ε-prediction form)."""
    if tc["loss_weighting"] == "uniform":
        return None
    snr = alphas_t / (1.0 - alphas_t)
    return torch.clamp(snr, max=float(tc["min_snr_gamma"])) / snr


def _training_precision(tc, prior, ds, dev, state, log):
    """Resolve train.precision ("auto": timed trial of one forward+backward at the training batch; a resumed
    run keeps the precision its state recorded, so the resumed run equals the uninterrupted one)."""
    if state is not None and state.get("precision") and tc["precision"] == "auto":
        return PrecisionChoice(**state["precision"]) if isinstance(state["precision"], dict) else \
            PrecisionChoice(precision=str(state["precision"]), requested="auto", source="resumed")
    bs = int(tc["batch_size"])
    g = torch.Generator().manual_seed(99)
    x = torch.randn((bs, *prior.sample_shape), generator=g).to(dev)
    t = torch.randint(0, 1000, (bs,), generator=g).to(dev)
    recs = [ds[i % len(ds)][1] for i in range(bs)]
    params = [p for p in prior.parameters() if p.requires_grad]

    def trial(p):
        with autocast(dev, p):
            out = prior(x, t, records=recs)
        loss = out.float().pow(2).mean()
        loss.backward()
        for q in params:
            q.grad = None
        return None

    key = f"train:{prior_key(prior)}:b{bs}:{x.shape[-2]}x{x.shape[-1]}"
    return choose_precision(tc["precision"], dev, trial, key, reps=2, log=log)


# ------------------------------------------------------------------------------------------------
def _trainable(prior):
    return [(n, p) for n, p in prior.named_parameters() if p.requires_grad]


def _save_state(out: Path, prior, named, ema, opt, step, order, rng_all, cfg, world, elapsed, log_rows,
                precision=None):


    tmp, commit = _atomic_dir(out / STATE_DIR)
    try:
        sd = {k: v.detach().cpu().contiguous() for k, v in prior.state_dict().items()}
        save_file(sd, str(tmp / "model.safetensors"))
        save_file({n: s.detach().cpu().contiguous() for (n, _), s in zip(named, ema.shadow_params)},
                  str(tmp / "ema.safetensors"))
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_all, tmp / "rng.pt")
        ema_meta = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
        write_json_atomic(tmp / "state.json", {
            "step": step, "epoch": order.epoch, "cursor": order.cursor, "world_size": world,
            "ema": ema_meta, "elapsed_s": elapsed, "config": {k: v for k, v in cfg.items() if k != "_source"},
            "params": [n for n, _ in named], "log_rows": log_rows, "precision": precision})
        commit()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load_state(state_dir: Path, prior, named, ema, opt, order, world):

    st_path = state_dir / "state.json"
    for name in ("state.json", "model.safetensors", "ema.safetensors", "optimizer.pt", "rng.pt"):
        if not (state_dir / name).is_file():
            raise InputError(f"cannot resume: {state_dir / name} missing")
    state = json.loads(st_path.read_text())
    if state.get("params") != [n for n, _ in named]:
        raise InputError(f"cannot resume: {st_path} key 'params' does not match this model's trainable parameters")
    if int(state.get("world_size", 1)) != world:
        raise InputError(f"cannot resume exactly: {st_path} key 'world_size' is {state.get('world_size')}, "
                         f"this run has {world} processes")
    missing, unexpected = prior.load_state_dict(load_file(str(state_dir / "model.safetensors")), strict=False)
    if unexpected or missing:
        raise InputError(f"cannot resume: {state_dir / 'model.safetensors'} does not match the model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    shadow = load_file(str(state_dir / "ema.safetensors"))
    ema_state = dict(state["ema"])
    ema_state["shadow_params"] = [shadow[n].to(p.device) for n, p in named]
    ema.load_state_dict(ema_state)
    opt.load_state_dict(torch.load(state_dir / "optimizer.pt", weights_only=True))
    order.epoch, order.cursor, order._indices = int(state["epoch"]), int(state["cursor"]), None
    rng_all = torch.load(state_dir / "rng.pt", weights_only=False)
    return state, rng_all


def _write_log(out: Path, rows: list[dict], title: str):
    """CSV log and PNG loss curve (rank 0)."""
    if not rows:
        return

    keys = list(rows[0].keys())
    with atomic_path(out / "log.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in rows]
        loss = [r["loss"] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, loss, lw=0.8, label="loss (mean per log interval)")
        if len(loss) >= 5:
            k = max(2, len(loss) // 20)
            sm = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], sm, lw=1.5, label=f"moving mean ({k})")
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("ε-MSE")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        with atomic_path(out / "loss.png", suffix=".png") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)
    except Exception as exc:  # the plot is a convenience; never lose a checkpoint over it
        print(f"warning: loss plot not written ({exc})")


def _export(out: Path, prior, named, ema, cfg, step, lora: bool, precision=None, domain=None):

    training = {"steps": step, "config": cfg.get("_source"), "name": cfg["name"],
                "data": {k: cfg["data"].get(k) for k in ("kind", "path", "split", "exclude")},
                "conditioning": cfg["conditioning"], "ema_decay": cfg["train"]["ema_decay"],
                "batch_size": cfg["train"]["batch_size"], "grad_accum": cfg["train"]["grad_accum"],
                "recipe": {k: cfg["train"][k] for k in ("lr", "lr_schedule", "warmup_steps", "lr_min_ratio",
                                                        "loss_weighting", "min_snr_gamma")},
                "precision": precision, "domain": domain}
    with ema_weights(ema, [p for _, p in named]):
        if lora:
            init = cfg["init"]
            base = init if init == "default" else str(Path(init).resolve())
            save_adapter(prior, out / MODEL_DIR, base=base)
        else:
            prior.manifest["training"] = training
            prior.manifest["conditioned"] = cfg["conditioning"]["mode"] != "unconditional"
            prior.save_pretrained(out / MODEL_DIR)


# ------------------------------------------------------------------------------------------------
def _state_dir(out, resume) -> tuple[Path, Path | None]:
    """(output dir, train_state dir to resume from or None)."""
    if out is None:
        if resume is None:
            raise InputError("train: give an output directory (--out) or --resume DIR")
        out = resume
    state_dir = None
    if resume is not None:
        r = Path(resume)
        state_dir = r if (r / "state.json").is_file() else r / STATE_DIR
        if not (state_dir / "state.json").is_file():
            raise InputError(f"--resume {resume}: no training state (expected {state_dir / 'state.json'})")
    return Path(out), state_dir


def _build_model(cfg: dict, seed: int):
    """The prior to train: built from the preset, or loaded from `init` (+ LoRA adapters); (prior, lora?)."""
    lora = cfg["lora"] is not None
    if cfg["init"]:
        prior = load_prior(cfg["init"], device="cpu")
        prior.train()
        if lora:
            lc = cfg["lora"]
            torch.manual_seed(seed)
            add_lora(prior, rank=lc.get("rank", 4), alpha=lc.get("alpha", 32),
                     targets=lc.get("targets") or DEFAULT_TARGETS, dropout=lc.get("dropout", 0.0))
    elif cfg["latent_vae"]:
        pcfg = load_preset(cfg["prior"]) if isinstance(cfg["prior"], str) else dict(cfg["prior"])
        pcfg["latent"] = {"vae": str(Path(cfg["latent_vae"]).expanduser().resolve())}
        prior = build_prior(pcfg, seed=seed)
        prior.manifest["preset"] = cfg["prior"] if isinstance(cfg["prior"], str) else None
    else:
        prior = build_prior(cfg["prior"], seed=seed)
    return prior, lora


class _StopFlag:
    """SIGINT/SIGTERM → a stop reason the loop polls (main thread only; restored by `restore`)."""

    def __init__(self):
        self.reason = None
        self._old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._on_signal)
        except ValueError:  # not the main thread: no signal handling
            pass

    def _on_signal(self, signum, _frame):
        self.reason = signal.Signals(signum).name

    def restore(self):
        for sig, h in self._old.items():
            signal.signal(sig, h)


def _micro_step(model, batch_items, cc, cfg, tc, nprng, gen, alphas, n_t, dev, precision, accum, sync) -> float:
    """Forward + backward of one micro-batch (CFG dropout, phase augmentation, noising, weighted ε-MSE);
    returns its loss. The RNG draws are in a fixed order (exact resume)."""
    bs = len(batch_items)
    x0 = torch.from_numpy(np.stack([it[0] for it in batch_items])).float()
    recs = condition_records([it[1] for it in batch_items], cc["mode"], cc, nprng)
    if cfg["data"]["augment_phase"]:
        x0 = _phase_rotate(x0, gen)
    base = getattr(model, "module", model)
    if base.is_latent:   # a latent prior learns the frozen MR-VAE's latents of the same images
        with autocast(dev, precision):
            x0 = base.to_latent(x0.to(dev)).float().cpu()
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, n_t, (bs,), generator=gen)
    x0, noise, t = x0.to(dev), noise.to(dev), t.to(dev)
    a = alphas[t].float()[:, None, None, None]
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    with (model.no_sync() if not sync else _null()):
        with autocast(dev, precision):
            eps = model(xt, t, records=recs)
        wts = loss_weights(a[:, 0, 0, 0], tc)
        per = (eps.float() - noise).pow(2).mean(dim=(1, 2, 3))
        loss = per.mean() if wts is None else (wts * per).mean()
        (loss / accum).backward()
    return float(loss.detach())


def _optimiser(prior, tc: dict, dev):
    """(trainable named parameters, AdamW, EMA of them on `dev`); InputError when nothing is trainable."""
    named = _trainable(prior)
    if not named:
        raise InputError("train: the model has no trainable parameters")
    params = [p for _, p in named]
    opt = torch.optim.AdamW(params, lr=tc["lr"], weight_decay=tc["weight_decay"], betas=tuple(tc["betas"]))
    ema = make_ema(params, tc["ema_decay"], tc["ema_warmup"])
    ema.to(dev)
    return named, opt, ema


def _restore(state_dir, prior, named, ema, opt, order, world: int, rank: int, gen, nprng):
    """Resume from `state_dir` (None: a fresh start) → (step, elapsed seconds, log rows, state dict or
    None); restores weights, EMA, optimiser, data order and this rank's random generators."""
    if state_dir is None:
        return 0, 0.0, [], None
    state, rng_all = _load_state(state_dir, prior, named, ema, opt, order, world)
    mine = rng_all[rank]
    gen.set_state(mine["gen"])
    nprng.bit_generator.state = mine["np"]
    torch.set_rng_state(mine["torch"])
    return int(state["step"]), float(state.get("elapsed_s", 0.0)), list(state.get("log_rows") or []), state


def _optimizer_step(model, ds, order, seen: list, opt, ema, params, step: int, cc, cfg, tc, nprng, gen, alphas,
                    n_t, dev, precision, distributed: bool, time_frac: float | None = None) -> tuple[float, float]:
    """One optimiser step (grad_accum micro-batches, clip, AdamW, EMA) at the scheduled LR → (loss, lr).
    The indices of the samples used are appended to `seen`; `time_frac` feeds `lr_horizon: minutes`."""
    lr_now = lr_at(step, tc, time_frac)
    for group in opt.param_groups:
        group["lr"] = lr_now
    accum = tc["grad_accum"]
    step_loss = 0.0
    for micro in range(accum):
        idx = order.next_batch()
        seen.extend(idx)
        sync = (micro == accum - 1) or not distributed
        step_loss += _micro_step(model, [ds[i] for i in idx], cc, cfg, tc, nprng, gen, alphas, n_t, dev,
                                 precision, accum, sync) / accum
    if not math.isfinite(step_loss):
        raise RuntimeError(f"training diverged: loss {step_loss} at step {step + 1}")
    if tc["grad_clip"] > 0:
        torch.nn.utils.clip_grad_norm_(params, tc["grad_clip"])
    opt.step()
    opt.zero_grad(set_to_none=True)
    ema.step(params)
    return step_loss, lr_now


def _log_row(step: int, epoch: int, mean_loss: float, lr: float, ema, sps: float, elapsed: float) -> dict:
    """One log.csv row (the loss is the mean over the last log_every steps)."""
    return {"step": step, "epoch": epoch, "loss": round(mean_loss, 6), "lr": lr,
            "ema_decay": round(float(ema.cur_decay_value or 0.0), 6), "samples_per_s": round(sps, 3),
            "elapsed_s": round(elapsed, 1)}


def _write_config(out: Path, cfg: dict) -> None:

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k != "_source"},
                                                    sort_keys=False))


def train(config, out=None, resume=None, max_steps: int | None = None, device: str | None = None,
          max_minutes: float | None = None, dataset=None, progress: bool = True,
          overrides: dict | None = None, stop_at: int | None = None) -> TrainResult:
    """Train (or resume) the prior described by `config` (YAML path or dict; see training/config.py).

    `dataset`: optional in-memory dataset (len, item i → ((2,H,W) float32, MetadataRecord)) instead of
    `config["data"]`. `max_steps` overrides train.max_steps (the total step count), `max_minutes` sets a
    wall-time limit for this run. `stop_at` ends this run at that step with a checkpoint while the LR schedule
    keeps its horizon (max_steps): how an interrupted run is reproduced exactly, or a run split into sessions.
    Stops cleanly (checkpoint + export) on SIGINT/SIGTERM.
    """

    ov = dict(overrides or {})
    ov.update({"train.max_steps": max_steps, "train.device": device, "train.max_minutes": max_minutes})
    cfg = load_config(config, ov)
    tc, cc = cfg["train"], cfg["conditioning"]
    if tc["threads"]:
        torch.set_num_threads(int(tc["threads"]))
    dev = resolve_device(tc["device"])
    dist = _Dist(dev)
    if dist.enabled and dev.type == "cuda":
        dev = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(dev)
    rank, world = dist.rank, dist.world
    out, state_dir = _state_dir(out, resume)

    seed = int(cfg["seed"])
    # model (same initial weights on every rank; DDP also broadcasts rank 0's at wrap time)
    prior, lora = _build_model(cfg, seed)
    prior.to(dev).train()
    named, opt, ema = _optimiser(prior, tc, dev)
    params = [p for _, p in named]

    ds = dataset if dataset is not None else build_dataset(cfg["data"], prior.resolution, progress and rank == 0)
    if tc["preload"] and hasattr(ds, "images"):
        ds.images = np.ascontiguousarray(ds.images)   # memmap → RAM (one read)
    if tc["compile"] is True or (tc["compile"] == "auto" and dev.type == "cuda"):
        prior.unet.compile()                           # in place: parameter names (checkpoints) unchanged
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    order = _Order(len(ds), tc["batch_size"], rank, world, seed)

    domain = describe_domain(getattr(ds, "records", []), getattr(ds, "fov_mm", None), (prior.resolution,) * 2,
                             getattr(ds, "geometry", None))

    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919 * rank + 1)
    nprng = np.random.default_rng([seed, rank, 17])
    torch.manual_seed(seed + rank)
    step, elapsed0, log_rows, state = _restore(state_dir, prior, named, ema, opt, order, world, rank, gen, nprng)
    total = int(tc["max_steps"])
    end = total if stop_at is None else min(total, int(stop_at))
    prec = _training_precision(tc, prior, ds, dev, state, (lambda m: print(m, flush=True)) if rank == 0 else None)
    precision, prec_meta = prec.precision, prec.to_meta()

    model = prior
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            prior, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True)
    stop = _StopFlag()
    if rank == 0:
        _write_config(out, cfg)
    alphas = prior.scheduler.alphas_cumprod.to(dev)
    n_t = prior.scheduler.config.num_train_timesteps
    accum, bs = tc["grad_accum"], tc["batch_size"]
    t_start = time.time()
    deadline = t_start + 60.0 * tc["max_minutes"] if tc["max_minutes"] else None
    losses, seen, interval = [], [], []
    bar = tqdm(total=total, initial=step, desc=f"train {cfg['name']}", disable=not (progress and rank == 0),
               dynamic_ncols=True)
    steps_this_run, t_first = 0, None
    reason = "max_steps"

    def checkpoint():
        rng_mine = {"gen": gen.get_state(), "np": nprng.bit_generator.state, "torch": torch.get_rng_state()}
        rng_all = dist.gather(rng_mine)
        if rank == 0:
            el = elapsed0 + time.time() - t_start
            _save_state(out, prior, named, ema, opt, step, order, rng_all, cfg, world, el, log_rows, prec_meta)
            _export(out, prior, named, ema, cfg, step, lora, prec_meta, domain)
            _write_log(out, log_rows, f"{cfg['name']}: ε-MSE")
        dist.barrier()

    try:
        while step < end:
            t0 = time.time()
            tf = None                              # lr_horizon minutes: the fraction of this run's minutes spent
            if tc["lr_horizon"] == "minutes":
                tf = dist.mean((t0 - t_start) / (60.0 * tc["max_minutes"]))   # every rank at the same LR
            step_loss, lr_now = _optimizer_step(model, ds, order, seen, opt, ema, params, step, cc, cfg, tc,
                                                nprng, gen, alphas, n_t, dev, precision, dist.enabled, tf)
            step += 1
            steps_this_run += 1
            losses.append(step_loss)
            interval.append(step_loss)
            dt = time.time() - t0
            if t_first is None:
                t_first = time.time()
            sps = bs * accum * world / max(dt, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", samples_s=f"{sps:.1f}")
            if step % tc["log_every"] == 0 or step == total:
                log_rows.append(_log_row(step, order.epoch, dist.mean(float(np.mean(interval))), lr_now, ema, sps,
                                         elapsed0 + time.time() - t_start))
                interval = []
            halt = stop.reason is not None or (deadline is not None and time.time() > deadline)
            if dist.any(halt):
                reason = stop.reason or "max_minutes"
                break
            if step % tc["checkpoint_every"] == 0 and step < end:
                checkpoint()
        if reason == "max_steps" and end < total:
            reason = "stop_at"
        checkpoint()
    finally:
        bar.close()
        stop.restore()
        dist.close()
    sec = (time.time() - t_first) / (steps_this_run - 1) if steps_this_run > 1 and t_first else float("nan")
    return TrainResult(step=step, reason=reason, out=out, losses=losses, prior=prior, seen=seen,
                       seconds_per_step=sec, rank=rank, world_size=world)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False
