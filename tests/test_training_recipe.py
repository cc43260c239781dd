"""Training recipe options: LR warm-up/cosine schedule, min-SNR-γ loss weighting, precision "auto" (timed,
recorded, kept on resume), config errors; and the fixed validation used for A/B runs."""

import json
import math

import numpy as np
import pytest
import torch

from recon_core.errors import InputError
from tests.test_training import make_images, tiny_cfg
from training.loop import loss_weights, lr_at

torch.set_num_threads(1)


def test_lr_schedule_values():
    tc = {"lr": 1e-3, "warmup_steps": 10, "max_steps": 110, "lr_schedule": "cosine", "lr_min_ratio": 0.1}
    assert lr_at(0, tc) == pytest.approx(1e-4) and lr_at(9, tc) == pytest.approx(1e-3)
    assert lr_at(10, tc) == pytest.approx(1e-3)
    assert lr_at(60, tc) == pytest.approx(1e-4 + 0.5 * 0.9e-3)           # half-way down the cosine
    assert lr_at(110, tc) == pytest.approx(1e-4) and lr_at(500, tc) == pytest.approx(1e-4)
    const = dict(tc, lr_schedule="constant", warmup_steps=0)
    assert {lr_at(s, const) for s in (0, 50, 200)} == {1e-3}
    lrs = [lr_at(s, tc) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))                      # monotone decay after warm-up


def test_lr_horizon_minutes_follows_wall_time():
    """A fixed lease: the cosine runs over the fraction of max_minutes spent, whatever the step count."""
    tc = {"lr": 1e-3, "warmup_steps": 10, "max_steps": 10_000, "lr_schedule": "cosine", "lr_min_ratio": 0.1,
          "lr_horizon": "minutes", "max_minutes": 4.0}
    assert lr_at(5, tc, 0.9) == pytest.approx(6e-4)                     # warm-up stays step-based
    assert lr_at(20, tc, 0.5) == pytest.approx(1e-4 + 0.5 * 0.9e-3)      # half the time: half-way down
    assert lr_at(20, tc, 1.3) == pytest.approx(1e-4)
    assert lr_at(20, dict(tc, lr_horizon="steps"), 0.5) == pytest.approx(lr_at(20, dict(tc, lr_horizon="steps")))
    assert lr_at(20, tc, None) == lr_at(20, dict(tc, lr_horizon="steps"))  # no clock given: the step horizon


def test_min_snr_weights():
    a = torch.tensor([0.999, 0.9, 0.5, 0.01])
    assert loss_weights(a, {"loss_weighting": "uniform"}) is None
    w = loss_weights(a, {"loss_weighting": "min_snr", "min_snr_gamma": 5.0})
    snr = a / (1 - a)
    np.testing.assert_allclose(w.numpy(), (torch.clamp(snr, max=5.0) / snr).numpy(), rtol=1e-6)
    assert w[0] < 0.01 and w[2] == 1.0 and w[3] == 1.0   # low noise (high SNR) down-weighted, high noise kept


@pytest.mark.parametrize("key,value,msg", [
    ("lr_schedule", "linear", "lr_schedule"), ("loss_weighting", "p2", "loss_weighting"),
    ("warmup_steps", -1, "warmup_steps"), ("lr_min_ratio", 2.0, "lr_min_ratio"), ("min_snr_gamma", 0, "min_snr_gamma"),
    ("precision", "fp8", "precision"), ("compile", "yes", "compile"), ("preload", "x", "preload"),
    ("lr_horizon", "epochs", "lr_horizon"), ("lr_horizon", "minutes", "max_minutes")])
def test_recipe_config_errors(key, value, msg):
    from training.config import load_config

    with pytest.raises(InputError, match=msg):
        load_config(tiny_cfg(**{key: value}))


def test_recipe_runs_logs_lr_and_records_precision(tmp_path):
    from training.datasets import ImageDataset
    from training.loop import train

    imgs, recs = make_images(8)
    cfg = tiny_cfg(max_steps=4, lr_schedule="cosine", warmup_steps=2, loss_weighting="min_snr", precision="auto",
                   checkpoint_every=2)
    r = train(cfg, out=tmp_path / "run", dataset=ImageDataset(imgs, recs), progress=False, max_steps=2)
    assert r.step == 2 and all(math.isfinite(v) for v in r.losses)
    state = json.loads((tmp_path / "run" / "train_state" / "state.json").read_text())
    assert state["precision"]["requested"] == "auto" and state["precision"]["precision"] in ("fp32", "bf16")
    assert set(state["precision"]["seconds"]) == {"fp32", "bf16"}
    rows = state["log_rows"]
    assert [row["lr"] for row in rows] == pytest.approx([lr_at(s, {**state["config"]["train"]}) for s in (0, 1)])
    manifest = json.loads((tmp_path / "run" / "model" / "contextmri.json").read_text())
    assert manifest["training"]["recipe"]["loss_weighting"] == "min_snr"
    assert manifest["training"]["precision"]["precision"] == state["precision"]["precision"]
    # a resumed run keeps the recorded precision (no new trial)
    r2 = train(cfg, out=tmp_path / "run", resume=tmp_path / "run", dataset=ImageDataset(imgs, recs), progress=False)
    state2 = json.loads((tmp_path / "run" / "train_state" / "state.json").read_text())
    assert r2.step == 4 and state2["precision"] == state["precision"]


def test_validation_bins_and_dds(tmp_path):
    from recon_core.prior import build_prior
    from training.validation import eps_mse_by_bin

    prior = build_prior("tiny").eval()
    imgs, recs = make_images(6)
    a = eps_mse_by_bin(prior, imgs, recs, n_bins=4, seed=1, batch=4)
    b = eps_mse_by_bin(prior, imgs, recs, n_bins=4, seed=1, batch=3)
    assert a["t"] == [125, 375, 625, 875] and len(a["mse"]) == 4
    np.testing.assert_allclose(a["mse"], b["mse"], rtol=1e-4)   # independent of the batching
    assert a["mean"] == pytest.approx(float(np.mean(a["mse"])))
    with pytest.raises(InputError):
        eps_mse_by_bin(prior, imgs, recs[:3])


def test_gpu_recipe_config_is_valid_and_preload_trains_identically(tmp_path):
    """training/configs/gpu.yaml loads (CUDA, batch 128, compile auto); `preload` (RAM instead of memmap)
    trains bit-identically to the memmap run on the CPU."""
    from pathlib import Path

    from training.config import load_config
    from training.datasets import ImageDataset
    from training.loop import train

    cfg = load_config(Path(__file__).resolve().parent.parent / "training" / "configs" / "gpu.yaml")
    assert cfg["train"]["device"] == "cuda" and cfg["train"]["compile"] == "auto" and cfg["train"]["batch_size"] == 128
    imgs, recs = make_images(8)
    np.save(tmp_path / "imgs.npy", imgs)
    mm = np.load(tmp_path / "imgs.npy", mmap_mode="r")
    a = train(tiny_cfg(max_steps=2, preload=True), out=tmp_path / "a", dataset=ImageDataset(mm, recs), progress=False)
    b = train(tiny_cfg(max_steps=2), out=tmp_path / "b", dataset=ImageDataset(mm, recs), progress=False)
    assert a.losses == b.losses


def test_lease_run_anneals_over_its_minutes(tmp_path):
    """lr_horizon minutes: a run stopped by max_minutes has walked its cosine down (LR falls row by row)."""
    from training.datasets import ImageDataset
    from training.loop import train

    imgs, recs = make_images(8)
    cfg = tiny_cfg(max_steps=100_000, lr_schedule="cosine", lr_horizon="minutes", max_minutes=0.04,
                   lr_min_ratio=0.0, checkpoint_every=100_000)
    r = train(cfg, out=tmp_path / "run", dataset=ImageDataset(imgs, recs), progress=False)
    assert r.reason == "max_minutes" and r.step >= 3
    lrs = [row["lr"] for row in json.loads((tmp_path / "run" / "train_state" / "state.json").read_text())["log_rows"]]
    assert lrs[0] > 0.9e-3 and lrs[-1] < 0.25e-3 and all(a >= b for a, b in zip(lrs, lrs[1:]))
