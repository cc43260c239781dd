"""Prior model format: build, save → load, manifest/version checks, ContextMRI layout, LoRA, generate CLI."""

import json
import shutil

import numpy as np
import pytest
import torch

from recon_core.errors import InputError
from recon_core.metadata import MetadataRecord
from recon_core.prior import build_prior, count_parameters, load_prior, sample_prior

torch.set_num_threads(1)
RECS = [MetadataRecord(anatomy="brain", contrast="T2", sequence="TurboSpinEcho", tr=4000.0, te=90.0, slice=10),
        MetadataRecord(anatomy="brain", contrast="T1", tr=500.0, pathology=["tumor"])]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    prior = build_prior("tiny", seed=0).eval()
    d = tmp_path_factory.mktemp("prior") / "m"
    prior.save_pretrained(d)
    return prior, d


def _eps(prior, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, 32, 32, generator=g)
    t = torch.tensor([3, 700])
    with torch.no_grad():
        return prior.predict_eps(x, t, prior.condition(RECS))


def test_tiny_preset_size_and_shapes():
    prior = build_prior("tiny")
    assert 80_000 < count_parameters(prior.unet) < 120_000
    assert prior.resolution == 32 and prior.unet.config.in_channels == 2 and prior.unet.config.out_channels == 2
    assert prior.scheduler.config.num_train_timesteps == 1000
    assert prior.scheduler.config.prediction_type == "epsilon"
    tok = prior.condition(RECS)
    assert tok.shape[0] == 2 and tok.shape[2] == prior.encoder.dim
    assert prior.uncondition(3).shape == (3,) + tok.shape[1:]
    assert _eps(prior).shape == (2, 2, 32, 32)


def test_save_load_identical_outputs(saved):
    prior, d = saved
    assert sorted(p.name for p in d.iterdir()) == ["contextmri.json", "metadata_encoder", "scheduler", "unet"]
    assert (d / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = load_prior(d)
    assert torch.equal(_eps(prior), _eps(loaded))
    man = json.loads((d / "contextmri.json").read_text())
    assert man["version"] == 1 and man["resolution"] == 32 and man["encoder_kind"] == "typed"
    assert man["prompt_format"] == "contextmri" and man["normalisation"]["percentile"] == 99.0


def test_unconditional_prior_ignores_metadata(saved, tmp_path):
    _, d = saved
    shutil.copytree(d, tmp_path / "u")
    man = json.loads((tmp_path / "u" / "contextmri.json").read_text())
    man["conditioned"] = False
    (tmp_path / "u" / "contextmri.json").write_text(json.dumps(man))
    p = load_prior(tmp_path / "u")
    assert torch.equal(p.condition(RECS), p.uncondition(2))


def test_newer_manifest_and_missing_or_mismatched_parts(saved, tmp_path):
    _, d = saved
    bad = tmp_path / "newer"
    shutil.copytree(d, bad)
    man = json.loads((bad / "contextmri.json").read_text())
    man["version"] = 99
    (bad / "contextmri.json").write_text(json.dumps(man))
    with pytest.raises(InputError, match=r"contextmri\.json.*'version'.*newer"):
        load_prior(bad)

    miss = tmp_path / "missing"
    shutil.copytree(d, miss)
    shutil.rmtree(miss / "unet")
    with pytest.raises(InputError, match=r"missing.*unet"):
        load_prior(miss)

    mism = tmp_path / "mismatch"
    shutil.copytree(d, mism)
    shutil.rmtree(mism / "metadata_encoder")
    from recon_core.metadata.encoders import build_encoder

    build_encoder({"kind": "typed", "dim": 48}).save_pretrained(mism / "metadata_encoder")
    with pytest.raises(InputError, match=r"mismatched.*cross_attention_dim.*48"):
        load_prior(mism)

    with pytest.raises(InputError, match="not a prior checkpoint"):
        load_prior(tmp_path)


def test_preset_unknown_key_and_unknown_preset(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("resolution: 32\nunet: {}\nencoder: {kind: typed}\nschedular: {}\n")
    with pytest.raises(InputError, match=r"p\.yaml.*unknown key 'schedular'"):
        build_prior(str(cfg))
    with pytest.raises(InputError, match="unknown prior preset"):
        build_prior("nope")


def _write_tiny_clip(root, hidden=32):
    """Byte-level BPE vocab with > 1000 entries (passes the offline-trap check) + 1-layer CLIPTextModel."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = root / "tokenizer"
    tok.mkdir(parents=True)
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for i in range(600):
        vocab[f"zz{i}</w>"] = len(vocab)
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)
    CLIPTextModel(cfg).save_pretrained(str(root / "text_encoder"))


def test_contextmri_checkpoint_layout_loads_unchanged(tmp_path):
    """A directory laid out like ContextMRI's MRI_checkpoint (fastmri/ + text_encoder/ + tokenizer/ + scheduler/)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from recon_core.prior.model import load_preset, unet_config

    root = tmp_path / "MRI_checkpoint"
    _write_tiny_clip(root, hidden=32)
    cfg = load_preset("tiny")
    kw = unet_config(cfg, 32)
    kw["encoder_hid_dim"] = 32  # as ContextMRI's config_mri.json (text_proj)
    UNet2DConditionModel(**kw).save_pretrained(root / "fastmri")
    DDPMScheduler(num_train_timesteps=1000, prediction_type="epsilon").save_pretrained(root / "scheduler")
    prior = load_prior(root)
    assert prior.encoder.kind == "clip" and prior.manifest["prompt_format"] == "contextmri"
    tok = prior.condition(RECS)
    assert tok.shape == (2, 77, 32)
    assert not torch.equal(tok, prior.uncondition(2))
    assert _eps(prior).shape == (2, 2, 32, 32)
    x = sample_prior(prior, RECS[:1], n=1, cfg=2.0, nfe=2)
    assert x.shape == (1, 2, 32, 32) and torch.isfinite(x).all()
    from gadget.cli import main

    png = tmp_path / "p.png"
    assert main(["generate", "--model", str(root), "--prompt", "brain, Slice 3, T1", "--n", "2", "--nfe", "2",
                 "--cfg", "3", "--out", str(png), "--device", "cpu"]) == 0 and png.is_file()
    shutil.rmtree(root / "text_encoder")
    with pytest.raises(InputError):
        load_prior(root)


def test_lora_adapter_roundtrip(saved, tmp_path):
    from recon_core.prior.lora import add_lora, save_adapter

    _, d = saved
    prior = load_prior(d)
    params = add_lora(prior, rank=4, alpha=32)
    trainable = [n for n, p in prior.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(params) == len(trainable)
    base_out = _eps(load_prior(d))
    assert torch.allclose(_eps(prior), base_out)  # LoRA B = 0 at init
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    ref = _eps(prior)
    assert not torch.allclose(ref, base_out)
    save_adapter(prior, tmp_path / "adapter", base=str(d))
    again = load_prior(d, adapter=tmp_path / "adapter")
    assert torch.allclose(_eps(again), ref, atol=1e-6)
    via_manifest = load_prior(tmp_path / "adapter")
    assert torch.allclose(_eps(via_manifest), ref, atol=1e-6)


def test_generate_cli(saved, tmp_path, capsys):
    from PIL import Image

    from gadget.cli import main

    _, d = saved
    out = tmp_path / "grid.png"
    rc = main(["generate", "--model", str(d), "--metadata", json.dumps(RECS[0].to_dict()), "--cfg", "5",
               "--n", "3", "--nfe", "3", "--out", str(out), "--npy", str(tmp_path / "s.npy"), "--device", "cpu"])
    assert rc == 0 and out.is_file()
    img = np.asarray(Image.open(out))
    assert img.shape == (32, 3 * 32 + 2 * 2)
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (3, 32, 32) and s.dtype == np.complex64 and np.isfinite(s).all()
    assert main(["generate", "--model", str(d), "--prompt", "brain, Slice 3, T1", "--out", str(out)]) == 2
    assert "CLIP" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "nope"), "--out", str(out)]) == 2
