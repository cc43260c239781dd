"""Conditioning encoders: typed (default), tiny CLIP built from a config + a tiny vocab, and both."""

import json
import logging

import pytest
import torch
from tokenizers import pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel

from recon_core.errors import InputError
from recon_core.metadata.encoders import build_encoder, load_encoder, typed_config_from_records
from recon_core.metadata.prompt import build_prompt
from recon_core.metadata.record import MetadataRecord

REC = MetadataRecord(anatomy="knee", slice=20, contrast="PDFS", sequence="TurboSpinEcho", tr=3120, te=33, ti=100,
                     flip_angle=140, field_strength=3, age=40, sex="F", pathology=["Meniscus Tear"])


@pytest.fixture(scope="module")
def typed():
    torch.manual_seed(0)
    enc = build_encoder({"kind": "typed", "dim": 32, "freq_dim": 16})
    with torch.no_grad():  # non-trivial empty embeddings so "is it the empty one?" is a real check
        enc.empty.normal_()
    return enc


def _pos(enc, field):
    return 1 + enc.fields.index(field)


def test_typed_shapes_any_batch(typed):
    K = len(typed.fields)
    assert typed.kind == "typed" and typed.dim == 32 and typed.num_tokens == 1 + K
    for B in (1, 3, 7):
        t = typed.encode([REC] * B)
        assert t.shape == (B, 1 + K, 32) and t.dtype == torch.float32 and torch.isfinite(t).all()
        assert typed.null_tokens(B).shape == (B, 1 + K, 32)
    assert torch.allclose(typed.null_tokens(2), typed.encode([MetadataRecord(), MetadataRecord()]))
    # a batch mixing conditional and unconditional rows (CFG in one forward) equals the separate encodes
    mixed = typed.encode([REC, MetadataRecord(), REC])
    assert torch.allclose(mixed[1], typed.null_tokens(1)[0]) and torch.allclose(mixed[0], typed.encode([REC])[0])


def test_missing_fields_give_the_empty_embedding(typed):
    t_full = typed.encode([REC])[0]
    t_miss = typed.encode([REC.replace(tr=None, contrast=None, pathology=None)])[0]
    null = typed.null_tokens(1)[0]
    for f in ("tr", "contrast", "pathology"):
        k = _pos(typed, f)
        expected = typed.norm(typed.empty[k - 1])
        assert torch.allclose(t_miss[k], expected, atol=1e-6) and torch.allclose(null[k], expected, atol=1e-6)
        assert not torch.allclose(t_full[k], t_miss[k])
    for f in ("te", "anatomy", "slice"):  # other fields untouched
        assert torch.allclose(t_full[_pos(typed, f)], t_miss[_pos(typed, f)])


def test_pathology_labels_change_tokens(typed):
    k = _pos(typed, "pathology")
    variants = [["Meniscus Tear"], ["Joint Effusion"], ["Meniscus Tear", "Joint Effusion"], [], None]
    toks = typed.encode([REC.replace(pathology=p) for p in variants])[:, k]
    for i in range(len(variants)):
        for j in range(i + 1, len(variants)):
            assert not torch.allclose(toks[i], toks[j]), (variants[i], variants[j])
    # matching is by label text, case/punctuation-insensitive (the upstream tuple defect is gone)
    same = typed.encode([REC.replace(pathology=["meniscus-tear"])])[0, k]
    assert torch.allclose(same, toks[0])


def test_unknown_category_is_missing_and_logged_once(typed, caplog):
    k = _pos(typed, "contrast")
    with caplog.at_level(logging.WARNING):
        a = typed.encode([REC.replace(contrast="SWI-weird"), REC.replace(contrast="SWI-weird")])
    assert torch.allclose(a[0, k], typed.norm(typed.empty[k - 1]), atol=1e-6)
    assert sum("SWI-weird" in r.message for r in caplog.records) == 1
    assert torch.allclose(typed.encode([REC.replace(contrast="pdfs")])[0, k], typed.encode([REC])[0, k])


def test_numbers_clamped_and_distinguished(typed):
    k = _pos(typed, "tr")
    t = typed.encode([REC.replace(tr=v) for v in (500, 3000, 16000, 99999)])[:, k]
    assert not torch.allclose(t[0], t[1]) and torch.allclose(t[2], t[3])


def test_gradients_and_save_load(typed, tmp_path):
    enc = build_encoder({"dim": 16, "freq_dim": 8, "fields": ["contrast", "tr", "pathology"]})
    out = enc.encode([REC, MetadataRecord()])
    (out * torch.randn_like(out)).sum().backward()  # a generic downstream loss
    assert enc.empty.grad is not None and enc.empty.grad.abs().sum() > 0
    assert enc.pathology_weight.grad.abs().sum() > 0
    typed.save_pretrained(tmp_path / "enc")
    cfg = json.loads((tmp_path / "enc" / "config.json").read_text())
    assert cfg["kind"] == "typed" and "stats" in cfg and "vocab" in cfg
    back = load_encoder(tmp_path / "enc")
    recs = [REC, MetadataRecord(), REC.replace(pathology=[])]
    assert torch.equal(back.encode(recs), typed.encode(recs))
    with pytest.raises(InputError, match="config.json"):
        load_encoder(tmp_path / "nothing")
    with pytest.raises(InputError, match="kind"):
        build_encoder({"kind": "bert"})
    with pytest.raises(InputError, match="stats"):
        build_encoder({"stats": {"tr": {"min": 5, "max": 1}}})


def test_config_from_records():
    recs = [REC, REC.replace(contrast="DIXON", tr=10.0), REC.replace(tr=20000.0)]
    cfg = typed_config_from_records(recs)
    assert "DIXON" in cfg["vocab"]["contrast"] and cfg["stats"]["tr"]["min"] == 10.0
    assert cfg["stats"]["tr"]["max"] == 20000.0
    enc = build_encoder(cfg)
    k = 1 + enc.fields.index("contrast")
    assert not torch.allclose(enc.encode([recs[1]])[0, k], enc.null_tokens(1)[0, k])


# ------------------------------------------------------------------------------------------ CLIP
def write_tiny_clip(root, hidden=32):
    """A tiny byte-level BPE vocab (517 tokens) + a 1-layer CLIPTextModel saved like a checkpoint."""
    tok = root / "tokenizer"
    tok.mkdir(parents=True)
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["k n", "kn e", "kne e</w>", "b r", "br a", "bra i", "brai n</w>"]
    for m in merges:
        vocab[m.replace(" ", "")] = len(vocab)
    (tok / "vocab.json").write_text(json.dumps(vocab))
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)
    CLIPTextModel(cfg).save_pretrained(str(root / "text_encoder"))
    return root


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_clip_encoder(clip_dir, tmp_path):
    enc = build_encoder({"kind": "clip", "path": str(clip_dir), "min_vocab": 100})
    assert enc.kind == "clip" and enc.dim == 32 and enc.num_tokens == 77
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.text_encoder.training
    recs = [REC, REC.replace(anatomy="brain", contrast="FLAIR"), MetadataRecord()]
    t = enc.encode(recs)
    assert t.shape == (3, 77, 32)
    assert not torch.allclose(t[0], t[1])
    assert torch.allclose(t[2], enc.null_tokens(1)[0], atol=1e-6)
    assert enc.prompts(recs[:1]) == [build_prompt(REC)]
    enc.save_pretrained(tmp_path / "saved")
    back = load_encoder(tmp_path / "saved")
    assert torch.allclose(back.encode(recs), t, atol=1e-6)
    # a bare checkpoint directory (tokenizer/ + text_encoder/) with a tiny vocab trips the vocab check
    with pytest.raises(InputError, match="tokenizer"):
        load_encoder(clip_dir)


def test_clip_offline_trap(clip_dir, tmp_path):
    # default min_vocab (1000): the tiny test vocabulary is refused, naming the directory
    with pytest.raises(InputError, match=str(clip_dir / "tokenizer")):
        build_encoder({"kind": "clip", "path": str(clip_dir)})
    # tokenizer files missing: transformers "succeeds" with a 2-token vocab → loud failure
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "text_encoder").symlink_to(clip_dir / "text_encoder")
    with pytest.raises(InputError, match="offline tokenizer trap"):
        build_encoder({"kind": "clip", "path": str(tmp_path), "min_vocab": 100})
    with pytest.raises(InputError, match="text_encoder"):
        build_encoder({"kind": "clip", "path": str(tmp_path / "nowhere")})
    with pytest.raises(InputError, match="hidden size 32"):
        build_encoder({"kind": "clip", "path": str(clip_dir), "min_vocab": 100, "dim": 768})
    assert build_encoder({"kind": "clip", "path": str(clip_dir), "min_vocab": 100, "dim": 32}).dim == 32


def test_both_encoder(clip_dir, tmp_path):
    enc = build_encoder({"kind": "both", "clip": {"path": str(clip_dir), "min_vocab": 100},
                         "typed": {"dim": 16, "freq_dim": 8}})
    K1 = enc.typed.num_tokens
    t = enc.encode([REC, MetadataRecord()])
    assert t.shape == (2, 77 + K1, 32) and enc.num_tokens == 77 + K1 and enc.dim == 32
    assert torch.allclose(t[1], enc.null_tokens(1)[0], atol=1e-6)
    # the typed part reacts to pathology, the CLIP part to the prompt
    t2 = enc.encode([REC.replace(pathology=["Joint Effusion"])])
    assert not torch.allclose(t2[0, 77:], t[0, 77:]) and not torch.allclose(t2[0, :77], t[0, :77])
    enc.save_pretrained(tmp_path / "both")
    back = load_encoder(tmp_path / "both")
    assert back.kind == "both"
    assert torch.allclose(back.encode([REC, MetadataRecord()]), t, atol=1e-6)
    same_dim = build_encoder({"kind": "both", "clip": {"path": str(clip_dir), "min_vocab": 100}})
    assert same_dim.typed.dim == 32 and isinstance(same_dim.proj, torch.nn.Identity)
