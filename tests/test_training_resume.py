"""Exact resume: a run interrupted midway and resumed equals the uninterrupted run bit for bit (CPU)."""

import numpy as np
import torch
from safetensors.torch import load_file

from recon_core.metadata import MetadataRecord

torch.set_num_threads(1)


def _data(n=10, res=32):
    from training.datasets import ImageDataset

    rng = np.random.default_rng(3)
    imgs = rng.standard_normal((n, 2, res, res)).astype(np.float32) * 0.5
    recs = [MetadataRecord(contrast=["T1", "T2"][i % 2], tr=400.0 + i, anatomy="brain") for i in range(n)]
    return ImageDataset(imgs, recs)


def _cfg():
    # batch 3 of 10 images: epochs wrap mid-run; grad accumulation 2; CFG dropout, phase augmentation, bf16
    return {"name": "r", "prior": "tiny", "seed": 5, "data": {"augment_phase": True},
            "train": {"batch_size": 3, "grad_accum": 2, "max_steps": 6, "lr": 1e-3, "precision": "bf16",
                      "log_every": 1, "checkpoint_every": 100, "device": "cpu", "threads": 1},
            "conditioning": {"mode": "independent", "p_empty": 0.2, "p_field": 0.5}}


def test_resume_reproduces_uninterrupted_run_bit_for_bit(tmp_path):
    from training.loop import train

    full = train(_cfg(), out=tmp_path / "full", dataset=_data(), progress=False)
    part = train(_cfg(), out=tmp_path / "part", dataset=_data(), progress=False, max_steps=2)
    assert part.step == 2
    rest = train(_cfg(), out=tmp_path / "part", resume=tmp_path / "part", dataset=_data(), progress=False)
    assert rest.step == 6 and full.step == 6
    assert full.seen == part.seen + rest.seen
    assert full.losses == part.losses + rest.losses
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "full" / "train_state" / name))
        b = load_file(str(tmp_path / "part" / "train_state" / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    oa = torch.load(tmp_path / "full" / "train_state" / "optimizer.pt", weights_only=True)["state"]
    ob = torch.load(tmp_path / "part" / "train_state" / "optimizer.pt", weights_only=True)["state"]
    assert all(torch.equal(oa[i]["exp_avg_sq"], ob[i]["exp_avg_sq"]) for i in oa)
    ua = load_file(str(tmp_path / "full" / "model" / "unet" / "diffusion_pytorch_model.safetensors"))
    ub = load_file(str(tmp_path / "part" / "model" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(ua[k], ub[k]) for k in ua)
    # the exported model holds the EMA weights, not the raw ones
    raw = load_file(str(tmp_path / "full" / "train_state" / "model.safetensors"))
    k = next(k for k in ua if k.endswith("conv_in.weight"))
    assert not torch.equal(ua[k], raw["unet." + k])


def test_wall_time_limit_stops_cleanly_with_checkpoint(tmp_path):
    from training.loop import train

    res = train(_cfg(), out=tmp_path / "w", dataset=_data(), progress=False, max_minutes=1e-9)
    assert res.reason == "max_minutes" and res.step == 1
    assert (tmp_path / "w" / "train_state" / "state.json").is_file()
    assert (tmp_path / "w" / "model" / "contextmri.json").is_file()


def test_stop_at_keeps_the_cosine_horizon_and_resumes_exactly(tmp_path):
    """A run split by stop_at (the LR schedule keeps its horizon) equals the uninterrupted run; a run cut by a
    smaller max_steps does not (its cosine ends earlier), which is why stop_at exists."""
    from training.loop import train

    cfg = _cfg()
    cfg["train"].update({"lr_schedule": "cosine", "warmup_steps": 1, "grad_accum": 1})
    full = train(cfg, out=tmp_path / "full", dataset=_data(), progress=False)
    part = train(cfg, out=tmp_path / "part", dataset=_data(), progress=False, stop_at=3)
    assert part.step == 3 and part.reason == "stop_at"
    rest = train(cfg, out=tmp_path / "part", resume=tmp_path / "part", dataset=_data(), progress=False)
    assert rest.step == 6 and rest.reason == "max_steps"
    assert full.losses == part.losses + rest.losses
    a = load_file(str(tmp_path / "full" / "train_state" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "train_state" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    cut = train(cfg, out=tmp_path / "cut", dataset=_data(), progress=False, max_steps=3)
    cut_rest = train(cfg, out=tmp_path / "cut", resume=tmp_path / "cut", dataset=_data(), progress=False,
                     max_steps=6)
    assert cut.losses[:2] == full.losses[:2]       # same LR until the schedules part
    c = load_file(str(tmp_path / "cut" / "train_state" / "model.safetensors"))
    assert cut_rest.step == 6 and not all(torch.equal(a[k], c[k]) for k in a)
