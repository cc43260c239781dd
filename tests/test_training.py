"""Training pipeline: loss decreases, CFG dropout reaches the model, config errors, export data + CLI, LoRA."""

import json

import numpy as np
import pytest
import torch

from recon_core.errors import InputError
from recon_core.metadata import MetadataRecord

torch.set_num_threads(1)
CONTRASTS = ["T1", "T2", "FLAIR", "PD"]


def make_images(n, res=32, seed=0):
    """n complex disc images (2, res, res) float32 with a random global phase + matching metadata records."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:1:res * 1j, -1:1:res * 1j]
    imgs, recs = [], []
    for i in range(n):
        c = CONTRASTS[i % 4]
        r = 0.4 + 0.4 * rng.random()
        z = ((xx ** 2 + yy ** 2) < r * r) * (1.0 + 0.3 * (i % 4)) * np.exp(1j * rng.uniform(0, 2 * np.pi))
        imgs.append(np.stack([z.real, z.imag]).astype(np.float32))
        recs.append(MetadataRecord(anatomy="brain", contrast=c, tr=500.0 + 100 * i, te=10.0, slice=i))
    return np.stack(imgs), recs


def write_export(root, n=16, res=32, split="train"):
    d = root / split
    d.mkdir(parents=True)
    imgs, recs = make_images(n, res)
    np.save(d / "mvue.npy", imgs)
    np.save(d / "scale.npy", np.ones(n, np.float32))
    (d / "metadata.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in recs))
    (d / "index.jsonl").write_text("".join(json.dumps({"subject_seed": i, "slice_index": 0}) + "\n" for i in range(n)))
    (d / "info.json").write_text(json.dumps({"count": n}))
    return root


def tiny_cfg(**train):
    t = {"batch_size": 4, "max_steps": 4, "lr": 1e-3, "precision": "fp32", "log_every": 1, "checkpoint_every": 100,
         "device": "cpu", "threads": 1}
    t.update(train)
    return {"name": "t", "prior": "tiny", "data": {"augment_phase": False}, "train": t,
            "conditioning": {"mode": "contextmri"}}


def test_few_steps_lower_loss_on_fixed_batch(tmp_path):
    from recon_core.prior import build_prior
    from training.datasets import ImageDataset
    from training.loop import train

    imgs, recs = make_images(4)
    g = torch.Generator().manual_seed(1)
    x0 = torch.from_numpy(imgs)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor([50, 200, 400, 800])

    def loss_of(prior):
        a = prior.scheduler.alphas_cumprod[t].float()[:, None, None, None]
        with torch.no_grad():
            eps = prior.predict_eps(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, prior.condition(recs))
        return float(torch.mean((eps - noise) ** 2))

    before = loss_of(build_prior("tiny", seed=0).eval())
    cfg = tiny_cfg(max_steps=15, lr=3e-3)
    cfg["conditioning"]["mode"] = "none"
    res = train(cfg, out=tmp_path / "run", dataset=ImageDataset(imgs, recs), progress=False)
    assert res.step == 15 and res.reason == "max_steps"
    after = loss_of(res.prior.eval())
    assert after < 0.7 * before, (before, after)
    assert (tmp_path / "run" / "log.csv").read_text().count("\n") == 16
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


def test_cfg_dropout_reaches_the_model():
    from recon_core.prior import build_prior
    from training.loop import condition_records

    prior = build_prior("tiny").eval()
    _, recs = make_images(6)
    x = torch.randn(6, 2, 32, 32)
    t = torch.randint(0, 1000, (6,))
    cc = {"p_empty": 1.0, "p_params": 0.5, "p_field": 0.5}
    with torch.no_grad():
        uncond = prior.predict_eps(x, t, prior.uncondition(6))
        cond = prior(x, t, records=recs)
        for mode in ("contextmri", "independent", "unconditional"):
            dropped = condition_records(recs, mode, cc, np.random.default_rng(0))
            assert torch.equal(prior(x, t, records=dropped), uncond), mode  # the loop's forward call
        kept = condition_records(recs, "contextmri", dict(cc, p_empty=0.0, p_params=0.0), np.random.default_rng(0))
        assert torch.equal(prior(x, t, records=kept), cond)
        assert not torch.allclose(cond, uncond)
        # ContextMRI's MR-parameter block dropped alone: tokens differ from both
        part = condition_records(recs, "contextmri", dict(cc, p_empty=0.0, p_params=1.0), np.random.default_rng(0))
        assert part[0].tr is None and part[0].contrast == "T1"
        assert not torch.allclose(prior.condition(part), prior.condition(recs))


def test_config_errors_name_file_and_key(tmp_path):
    from training.config import load_config

    p = tmp_path / "bad.yaml"
    p.write_text("prior: tiny\ntrain:\n  batchsize: 4\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*'train\.batchsize'"):
        load_config(p)
    p.write_text("prior: tiny\nconditioning: {mode: sometimes}\n")
    with pytest.raises(InputError, match=r"bad\.yaml.*conditioning\.mode"):
        load_config(p)
    p.write_text("prior: tiny\nlora: {rank: 4}\n")
    with pytest.raises(InputError, match=r"'lora' needs key 'init'"):
        load_config(p)
    cfg = load_config("training/configs/tiny.yaml")
    assert cfg["train"]["batch_size"] == 4


def test_data_also_adds_exports(tmp_path):
    """`data.also`: images of several exports in one training set (the variety export beside the classic one)."""
    from training.config import load_config
    from training.datasets import build_dataset

    a, b = write_export(tmp_path / "a", n=6), write_export(tmp_path / "b", n=4)
    ds = build_dataset({"kind": "export", "path": str(a), "split": "train", "also": [str(b)]}, 32)
    assert len(ds) == 10 and len(ds.records) == 10 and "+" in ds.source
    cfg = tiny_cfg()
    cfg["data"].update(kind="fastmri", path=str(a), also=[str(b)])
    with pytest.raises(InputError, match="data.also"):
        load_config(cfg)


def test_export_data_cli_train_then_generate_and_lora(tmp_path, capsys):
    import yaml

    from gadget.cli import main
    from recon_core.prior import load_prior

    data = write_export(tmp_path / "export", n=12)
    cfg = tiny_cfg(max_steps=3, checkpoint_every=2)
    cfg["data"].update(kind="export", path=str(data), augment_phase=True)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--out", str(out), "--no-progress"]) == 0
    assert "stopped at step 3" in capsys.readouterr().out
    prior = load_prior(out / "model")
    assert prior.manifest["training"]["steps"] == 3 and prior.conditioned
    # resume from the run's own config.yaml towards 6 steps, ending this run at step 5 (--stop-at), then bad --stop-at
    assert main(["train", "--resume", str(out), "--max-steps", "6", "--stop-at", "5", "--no-progress"]) == 0
    assert "stopped at step 5 (stop_at)" in capsys.readouterr().out
    assert load_prior(out / "model").manifest["training"]["steps"] == 5
    assert main(["train", "--resume", str(out), "--stop-at", "0", "--no-progress"]) == 2
    assert "--stop-at must be >= 1" in capsys.readouterr().err
    # wrong resolution data → clear error
    bad = write_export(tmp_path / "export64", n=8, res=64)
    cfg["data"]["path"] = str(bad)
    (tmp_path / "c64.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(tmp_path / "c64.yaml"), "--out", str(tmp_path / "r64")]) == 2
    assert "64x64" in capsys.readouterr().err
    # LoRA fine-tune on the trained base: base frozen, adapter exported and loadable onto the base
    lcfg = tiny_cfg(max_steps=2)
    lcfg.update(init=str(out / "model"), lora={"rank": 2, "alpha": 8})
    lcfg["data"].update(kind="export", path=str(data))
    from training.loop import train

    res = train(lcfg, out=tmp_path / "lora", progress=False)
    trainable = [n for n, p in res.prior.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert (tmp_path / "lora" / "model" / "adapter_model.safetensors").is_file()
    adapted = load_prior(tmp_path / "lora" / "model")
    assert adapted.manifest["lora"]["rank"] == 2
    gen = tmp_path / "g.png"
    assert main(["generate", "--model", str(tmp_path / "lora" / "model"), "--n", "2", "--nfe", "2",
                 "--out", str(gen), "--device", "cpu"]) == 0 and gen.is_file()


def test_ismrmrd_raw_dataset_matches_reference(tmp_path):
    """Fully sampled ISMRMRD raw (simulator) → ESPIRiT → MVUE → normalised; agrees with the file's reference."""
    import ismrmrd

    from gadget.cli import main
    from training.datasets import ismrmrd_dataset

    raw = tmp_path / "raw.h5"
    assert main(["simulate", "--out", str(raw), "--contrast", "T2", "--slices", "2", "--matrix", "64", "--coils", "4",
                 "--mask", "uniform1d", "--accel", "1", "--seed", "0"]) == 0
    ds = ismrmrd_dataset(raw, tmp_path / "cache", 64, progress=False)
    assert len(ds) == 2 and ds.resolution == (64, 64)
    assert ds.records[1].contrast == "T2" and ds.records[1].slice == 1
    dset = ismrmrd.Dataset(str(raw), "dataset", False)
    try:
        for s in range(2):
            ref = np.abs(np.squeeze(dset.read_image("reference", s).data))
            ref /= np.percentile(ref, 99)
            x, _ = ds[s]
            mag = np.hypot(x[0], x[1])
            assert abs(np.percentile(mag, 99) - 1.0) < 1e-3
            obj = ref > 0.1
            assert np.linalg.norm((mag - ref)[obj]) / np.linalg.norm(ref[obj]) < 0.08
    finally:
        dset.close()
    under = tmp_path / "under.h5"
    assert main(["simulate", "--out", str(under), "--contrast", "T1", "--slices", "1", "--matrix", "64", "--coils", "4",
                 "--mask", "uniform1d", "--accel", "4", "--seed", "0"]) == 0
    with pytest.raises(InputError, match="fully sampled"):
        ismrmrd_dataset(under, tmp_path / "cache2", 32, progress=False)


def test_fastmri_h5_dataset(tmp_path):
    """fastMRI-style multi-coil h5 (kspace + ismrmrd_header) built from a simulated fully sampled scan."""
    import h5py
    import ismrmrd

    from gadget.cli import main
    from recon_core.raw.reader import read_slices
    from training.datasets import fastmri_dataset

    raw = tmp_path / "raw.h5"
    assert main(["simulate", "--out", str(raw), "--contrast", "FLAIR", "--slices", "2", "--matrix", "64",
                 "--coils", "4", "--mask", "uniform1d", "--accel", "1", "--seed", "1"]) == 0
    slices = {sd.key.slice: sd.kspace for sd in read_slices(raw).slices}
    dset = ismrmrd.Dataset(str(raw), "dataset", False)
    xml = dset.read_xml_header()
    dset.close()
    fm = tmp_path / "file_brain_AXFLAIR_1.h5"
    with h5py.File(fm, "w") as h5:
        h5.create_dataset("kspace", data=np.stack([slices[s] for s in sorted(slices)]))
        h5.create_dataset("ismrmrd_header", data=xml)
        h5.attrs["acquisition"] = "AXFLAIR"
    ds = fastmri_dataset(fm, tmp_path / "cache", 32, progress=False)
    assert len(ds) == 2 and ds.resolution == (32, 32) and ds.records[0].contrast == "FLAIR"
    assert (tmp_path / "cache" / "train" / "info.json").is_file()
    again = fastmri_dataset(fm, tmp_path / "cache", 32, progress=False)  # from the cache
    assert np.array_equal(np.asarray(again.images), np.asarray(ds.images))
