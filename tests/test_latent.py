"""Latent prior (issue 17): MR-VAE training/checkpoint, latent prior through the same training loop and
checkpoint format, synthesis, LDPM reconstruction, and the bad-input cases."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from recon_core.errors import InputError
from recon_core.fft import fft2c_np
from tests.test_dds import COILS, NX, NY, make_data, records, rel_residual

pytestmark = pytest.mark.usefixtures("one_thread")


def _dataset(n=32, res=NY):
    from recon_core.metadata import MetadataRecord
    from training.datasets import ImageDataset

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:res * 1j, -1:1:res * 1j]
    imgs = []
    for i in range(n):
        r = 0.5 + 0.3 * rng.random()
        disc = ((xx / r) ** 2 + (yy / (r * 0.8)) ** 2 < 1).astype(np.float32) * (0.5 + 0.5 * (i % 2))
        ph = np.exp(1j * rng.uniform(0, 2 * np.pi))
        c = disc * ph
        imgs.append(np.stack([c.real, c.imag]).astype(np.float32))
    recs = [MetadataRecord(anatomy="brain", contrast=("T1", "T2")[i % 2], pathology=[]) for i in range(n)]
    return ImageDataset(np.stack(imgs), recs)


@pytest.fixture(scope="module")
def latent_dirs(tmp_path_factory):
    """(vae dir, latent prior dir): a tiny VAE (6 steps) and a tiny latent prior (3 steps) on it."""
    from training.loop import train
    from training.vae import train_vae

    root = tmp_path_factory.mktemp("latent")
    ds = _dataset()
    train_vae({"vae": "vae-tiny", "train": {"max_steps": 6, "batch_size": 4, "checkpoint_every": 3}},
              out=root / "vae", dataset=ds, progress=False)
    train({"prior": "tiny", "latent_vae": str(root / "vae" / "model"),
           "train": {"max_steps": 3, "batch_size": 4, "checkpoint_every": 2}}, out=root / "prior", dataset=ds,
          progress=False)
    return root / "vae" / "model", root / "prior" / "model"


def test_vae_checkpoint_roundtrip_and_scaling(latent_dirs):
    from recon_core.prior.vae import load_vae

    vae = load_vae(latent_dirs[0])
    man = json.loads((latent_dirs[0] / "contextmri.json").read_text())
    assert man["format"] == "contextmri-vae" and man["training"]["steps"] == 6
    assert vae.latent_size == NY // 4 and vae.latent_channels == 4
    x = torch.from_numpy(_dataset(8).images)
    z = vae.encode(x)
    assert z.shape == (8, 4, NY // 4, NX // 4)
    # the scaling factor makes the training latents unit-variance (measured on the training images)
    assert 0.5 < float(z.std()) < 2.0
    assert vae.decode(z).shape == x.shape


def test_vae_training_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    from training.vae import train_vae

    ds = _dataset(16)
    cfg = {"vae": "vae-tiny", "train": {"max_steps": 4, "batch_size": 4, "checkpoint_every": 10}}
    train_vae(cfg, out=tmp_path / "a", dataset=ds, progress=False)
    train_vae(cfg, out=tmp_path / "b", dataset=ds, progress=False, max_steps=2)
    train_vae(cfg, resume=tmp_path / "b", dataset=ds, progress=False)
    a = load_file(str(tmp_path / "a" / "train_state" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "train_state" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_vae_loss_learns(tmp_path):
    """20 steps reduce the reconstruction loss of the tiny VAE (the loss/optimiser are wired correctly)."""
    import csv

    from training.vae import train_vae

    train_vae({"vae": "vae-tiny", "train": {"max_steps": 20, "batch_size": 4, "log_every": 5, "lr": 3e-3}},
              out=tmp_path, dataset=_dataset(16), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert float(rows[-1]["l1"]) < float(rows[0]["l1"])


def test_latent_prior_checkpoint(latent_dirs):
    from recon_core.prior import load_prior

    p = load_prior(latent_dirs[1])
    assert p.is_latent and p.sample_shape == (4, NY // 4, NX // 4) and p.resolution == NY
    man = json.loads((latent_dirs[1] / "contextmri.json").read_text())
    assert man["space"] == "latent" and man["parts"]["vae"] == "vae" and "latent" not in man["config"]
    assert (latent_dirs[1] / "vae" / "vae" / "config.json").is_file()   # the VAE travels with the prior
    # the VAE is frozen: training changed only the UNet (+ encoder); VAE weights equal the VAE run's
    from recon_core.prior.vae import load_vae

    v0 = load_vae(latent_dirs[0])
    for (n, a), (_, b) in zip(v0.named_parameters(), p.vae.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=n)


def test_generate_with_latent_prior(latent_dirs):
    from recon_core.prior import load_prior
    from recon_core.prior.sample import sample_prior

    p = load_prior(latent_dirs[1])
    x = sample_prior(p, records(2), n=2, cfg=2.0, nfe=4, seed=3)
    assert x.shape == (4, 2, NY, NX) and torch.isfinite(x).all()
    x2 = sample_prior(p, records(2), n=2, cfg=2.0, nfe=4, seed=3)
    torch.testing.assert_close(x, x2, rtol=0, atol=0)


def test_generate_cli_with_latent_prior(latent_dirs, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "g.png"
    r = subprocess.run([sys.executable, "-m", "gadget", "generate", "--model", str(latent_dirs[1]), "--metadata",
                        '{"anatomy": "brain", "contrast": "FLAIR", "pathology": ["Mass"]}', "--n", "2", "--nfe", "3",
                        "--out", str(out), "--npy", str(tmp_path / "g.npy")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and np.load(tmp_path / "g.npy").shape == (2, NY, NX)


def test_ldpm_reconstruction_is_data_consistent_and_deterministic(latent_dirs):
    from recon_core.samplers.ldpm import ldpm_reconstruct
    from recon_core.prior import load_prior

    p = load_prior(latent_dirs[1])
    x, ksp, maps, mask = make_data(B=2, accel=2)
    kw = dict(nfe=10, cfg=2.0, samples=2, seed=1, precision="fp32", final_cg_iters=30)
    a = ldpm_reconstruct(p, ksp, maps, mask, records(2), **kw)
    b = ldpm_reconstruct(p, ksp, maps, mask, records(2), **kw)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (2, NY, NX) and a.std.shape == (2, NY, NX) and a.samples.shape == (2, 2, NY, NX)
    # the final pixel-space CG makes the output agree with the measured k-space far better than D(ẑ0) does
    den = rel_residual(a.denoised, ksp, maps, mask)
    assert rel_residual(a.image, ksp, maps, mask) < 0.5 * den
    assert "vae_and_dc" in a.timings and a.config["method"] == "ldpm"
    # stage 2 (k-space gradient through the decoder) runs: a different gradient step changes the result
    c = ldpm_reconstruct(p, ksp, maps, mask, records(2), **{**kw, "ldpm_grad": 0.0})
    assert not np.array_equal(a.image, c.image)
    # any matrix (issue 23 item 3): a 30×27 crop is padded to the VAE × UNet multiple and cropped back
    from recon_core.masks import make_mask

    s2 = np.ascontiguousarray(maps[:, :, 1:31, 2:29])
    k2 = fft2c_np(s2 * x[:, None, 1:31, 2:29]).astype(np.complex64)
    m2 = make_mask("uniform1d", (30, 27), 2, seed=0).mask
    d = ldpm_reconstruct(p, k2, s2, m2, records(2), **kw)
    assert d.image.shape == (2, 30, 27) and np.isfinite(d.image).all()
    assert rel_residual(d.image, k2, s2, m2) < 0.5 * rel_residual(d.denoised, k2, s2, m2)


def test_samplers_refuse_the_wrong_prior_kind(latent_dirs):
    from recon_core.samplers.dds import dds_reconstruct
    from recon_core.samplers.ldpm import ldpm_reconstruct
    from recon_core.prior import build_prior, load_prior
    from recon_core.samplers.scoremri import scoremri_reconstruct

    lat, pix = load_prior(latent_dirs[1]), build_prior("tiny")
    x, ksp, maps, mask = make_data(B=1)
    with pytest.raises(InputError, match="latent prior.*use --method ldpm"):
        dds_reconstruct(lat, ksp, maps, mask, nfe=2)
    with pytest.raises(InputError, match="latent prior.*use --method ldpm"):
        scoremri_reconstruct(lat, ksp, maps, mask, scoremri_nfe=2)
    with pytest.raises(InputError, match="ldpm needs a latent prior"):
        ldpm_reconstruct(pix, ksp, maps, mask, nfe=2)


def test_bad_latent_checkpoints(latent_dirs, tmp_path):
    from recon_core.prior.vae import load_vae
    from recon_core.prior import build_prior, load_prior
    from recon_core.prior.model import load_preset

    with pytest.raises(InputError, match="VAE directory not found.*expected .*contextmri.json"):
        load_vae(tmp_path / "nope")
    # a latent prior whose vae/ was removed
    d = tmp_path / "novae"
    shutil.copytree(latent_dirs[1], d)
    shutil.rmtree(d / "vae")
    with pytest.raises(InputError, match="VAE directory .*vae is missing"):
        load_prior(d)
    # a VAE/UNet channel mismatch: the prior's vae/ replaced by a VAE with 8 latent channels
    from recon_core.prior.vae import build_vae
    from recon_core.prior.vae import load_vae_config

    d2 = tmp_path / "mismatch"
    shutil.copytree(latent_dirs[1], d2)
    shutil.rmtree(d2 / "vae")
    build_vae({**load_vae_config("vae-tiny"), "latent_channels": 8}).save_pretrained(d2 / "vae")
    with pytest.raises(InputError, match="in_channels.*is 4, expected 8 \\(the VAE's latent channels\\)"):
        load_prior(d2)
    # a config naming a VAE of another resolution
    pcfg = load_preset("tiny")
    pcfg["resolution"] = 64
    pcfg["latent"] = {"vae": str(latent_dirs[0])}
    with pytest.raises(InputError, match="VAE .* trained for 32x32"):
        build_prior(pcfg)
    pcfg["latent"] = {"vae": str(tmp_path / "missing")}
    with pytest.raises(InputError, match="VAE directory not found"):
        build_prior(pcfg)


def test_vae_config_errors(tmp_path):
    from training.vae import load_vae_train_config

    with pytest.raises(InputError, match="unknown key 'train.bogus'"):
        load_vae_train_config({"train": {"bogus": 1}})
    with pytest.raises(InputError, match="unknown VAE preset"):
        from recon_core.prior.vae import build_vae

        build_vae("nope")
    bad = tmp_path / "v.yaml"
    bad.write_text(yaml.safe_dump({"resolution": 30, "latent_channels": 4, "block_out_channels": [8, 8, 8]}))
    from recon_core.prior.vae import build_vae

    with pytest.raises(InputError, match="not divisible by the downsampling 4"):
        build_vae(str(bad))


def test_cli_train_vae_bad_config(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  bogus: 1\n")
    r = subprocess.run([sys.executable, "-m", "gadget", "train-vae", "--config", str(cfg), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown key 'train.bogus'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_latent_training_resumes_exactly(latent_dirs, tmp_path):
    """The latent prior uses the pixel prior's loop, so its exact resume holds too."""
    from safetensors.torch import load_file

    from training.loop import train

    ds = _dataset(16)
    cfg = {"prior": "tiny", "latent_vae": str(latent_dirs[0]), "train": {"max_steps": 4, "batch_size": 4}}
    train(cfg, out=tmp_path / "a", dataset=ds, progress=False)
    train(cfg, out=tmp_path / "b", dataset=ds, progress=False, max_steps=2)
    train(cfg, out=tmp_path / "b", resume=tmp_path / "b", dataset=ds, progress=False)
    a = load_file(str(tmp_path / "a" / "train_state" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "train_state" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_export_half_weights(latent_dirs, tmp_path):
    """export-model --half: float16 on disk, loaded as float32, same sampler output up to rounding."""
    import subprocess
    import sys

    from recon_core.samplers.ldpm import ldpm_reconstruct
    from recon_core.prior import load_prior

    r = subprocess.run([sys.executable, "-m", "gadget", "export-model", str(latent_dirs[1]), "--out",
                        str(tmp_path / "h")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "gadget", "export-model", str(latent_dirs[1]), "--out",
                        str(tmp_path / "h"), "--half"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "h" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(v.dtype == torch.float16 for v in w.values() if v.is_floating_point())
    a, b = load_prior(latent_dirs[1]), load_prior(tmp_path / "h")
    assert next(b.unet.parameters()).dtype == torch.float32 and b.is_latent
    assert json.loads((tmp_path / "h" / "contextmri.json").read_text())["weights_dtype"].startswith("float16")
    x, ksp, maps, mask = make_data(B=1, accel=2)
    # g = 1: on this untrained random decoder the default step (10) amplifies any weight rounding chaotically;
    # the comparison is about the export, not the step size
    kw = dict(nfe=5, precision="fp32", ldpm_grad=1.0)
    ra, rb = ldpm_reconstruct(a, ksp, maps, mask, **kw), ldpm_reconstruct(b, ksp, maps, mask, **kw)
    assert np.abs(ra.image - rb.image).max() < 0.02 * np.abs(ra.image).max()
    r = subprocess.run([sys.executable, "-m", "gadget", "export-model", str(tmp_path / "none"), "--out",
                        str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "model directory not found" in r.stderr and not (tmp_path / "x").exists()


def test_data_exclude_leaves_out_a_combination():
    from recon_core.metadata import MetadataRecord
    from training.config import load_config
    from training.datasets import ImageDataset, exclude_combinations

    recs = [MetadataRecord(contrast=c, pathology=p) for c in ("FLAIR", "T1") for p in ([], ["mass", "oedema"])]
    ds = ImageDataset(np.zeros((4, 2, 8, 8), np.float32), recs)
    kept = exclude_combinations(ds, [{"contrast": "flair", "pathology": "tumour"}])
    assert [(r.contrast, bool(r.pathology)) for r in kept.records] == [("FLAIR", False), ("T1", False), ("T1", True)]
    with pytest.raises(InputError, match="unknown field 'sex'"):
        load_config({"data": {"exclude": [{"sex": "F"}]}})
    with pytest.raises(InputError, match="leaves no training images"):
        exclude_combinations(ds, [{"contrast": "FLAIR"}, {"contrast": "T1"}])
    with pytest.raises(InputError, match="latent_vae.*cannot be combined"):
        load_config({"latent_vae": "x", "init": "default"})


assert COILS > 1
