"""Windowed self-attention (recon_core.prior.attention): global and identical to diffusers' processor up to the
trained token grid; beyond it, each window attends only to itself and to the metadata tokens."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.attention_processor import AttnAddedKVProcessor2_0

from recon_core.errors import InputError
from recon_core.prior import build_prior
from recon_core.prior.attention import set_attention_window, window_layout


@pytest.fixture(scope="module")
def prior():
    return build_prior("tiny", seed=5).eval()


def _stock(unet):
    u = copy.deepcopy(unet)
    for m in u.modules():
        if type(m).__name__ == "Attention" and m.added_kv_proj_dim is not None:
            m.set_processor(AttnAddedKVProcessor2_0())
    return u


def _eps(unet, x, prior):
    t = torch.full((x.shape[0],), 300, dtype=torch.long)
    with torch.no_grad():
        return unet(x, t, encoder_hidden_states=prior.uncondition(x.shape[0]).detach(), return_dict=False)[0]


def test_layout_splits_into_equal_windows_no_larger_than_the_trained_grid():
    assert window_layout(16, 16, 16) == (1, 1)
    assert window_layout(32, 32, 16) == (2, 2)
    assert window_layout(24, 40, 16) == (2, 4)        # 12 and 10 tokens per window
    assert window_layout(17, 32, 16) == (1, 2)        # a prime side cannot be split evenly: global along it
    assert window_layout(64, 64, None) == (1, 1)


def test_up_to_the_trained_grid_the_processor_is_diffusers_own(prior):
    assert prior.attention_window == 16                 # tiny: 32² trained, two levels → 16² tokens
    x = torch.randn(2, 2, 32, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(_eps(prior.unet, x, prior), _eps(_stock(prior.unet), x, prior), atol=1e-6)


def test_beyond_it_each_window_attends_only_to_itself_and_the_metadata(prior):
    """One attention layer on a 32² grid (2 × 2 windows): window (0, 0) is reflected about its own per-channel mean,
    which keeps the group norm's statistics but changes its keys and values. Windowed, the other windows' outputs
    do not move; with diffusers' global processor they do."""
    attn = next(m for m in prior.unet.modules() if type(m).__name__ == "Attention" and m.added_kv_proj_dim)
    stock = copy.deepcopy(attn)
    stock.set_processor(AttnAddedKVProcessor2_0())
    g = torch.Generator().manual_seed(2)
    enc = torch.randn(1, 4, attn.added_kv_proj_dim, generator=g)
    h = torch.randn(1, attn.to_q.in_features, 32, 32, generator=g)
    h2 = h.clone()
    w = h[..., :16, :16]
    h2[..., :16, :16] = 2 * w.mean(dim=(-2, -1), keepdim=True) - w
    with torch.no_grad():
        win, win2 = attn(h, encoder_hidden_states=enc), attn(h2, encoder_hidden_states=enc)
        glob, glob2 = stock(h, encoder_hidden_states=enc), stock(h2, encoder_hidden_states=enc)
    assert not torch.allclose(win, glob, atol=1e-4)     # windowing changes the result on a grid larger than 16²
    for sl in ((..., slice(16, None), slice(None)), (..., slice(None, 16), slice(16, None))):
        assert torch.allclose(win2[sl], win[sl], atol=1e-5)
        assert not torch.allclose(glob2[sl], glob[sl], atol=1e-4)
    assert not torch.allclose(win2[..., :16, :16], win[..., :16, :16], atol=1e-3)


def test_the_manifest_can_ask_for_global_attention(prior):
    p = copy.deepcopy(prior)
    p.manifest["attention_window"] = 0
    assert p.attention_window is None
    set_attention_window(p.unet, p.attention_window)
    x = torch.randn(1, 2, 64, 64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_eps(p.unet, x, p), _eps(_stock(prior.unet), x, p), atol=1e-5)
    assert not torch.allclose(_eps(prior.unet, x, prior), _eps(p.unet, x, p), atol=1e-4)


@pytest.mark.parametrize("bad", [-1, 2.5, "16", True])
def test_a_bad_attention_window_in_the_manifest_is_refused_naming_it(prior, bad):
    p = copy.deepcopy(prior)
    p.manifest["attention_window"] = bad
    with pytest.raises(InputError, match="attention_window"):
        p.attention_window
