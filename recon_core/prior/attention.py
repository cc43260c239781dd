"""Windowed self-attention for images larger than the prior was trained on.

The UNet's attention layers (diffusers' `SimpleCrossAttn*` blocks: each spatial token attends to the metadata tokens
and to the spatial tokens) sit at its lowest resolution. The prior is trained on 128² images or 128² crops, so each
of its attention layers has only ever attended over a 16² token grid covering a 128² pixel window. On a larger image
(256²: 32² tokens) global attention is both out of the training distribution and quadratic in cost (11× the time of
128² for 4× the pixels). `WindowedAddedKVProcessor` splits the token grid into equal non-overlapping windows of about
the trained size (Swin-style partition, without shifts: the convolutions around the layers mix neighbouring windows)
and lets each window attend to itself and to the metadata tokens; the group norm and the projections stay global
(per token). A grid no larger than the window is attended globally, exactly as diffusers' `AttnAddedKVProcessor2_0`
does (same operations, same result).

`window_layout(h, w, window)` → (nh, nw) windows per axis. Exported engines trace one layout per graph, so a
processor can be pinned to a layout (`layout=(nh, nw)`): the traced reshapes then hold for every (h, w) that
the layout divides.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _parts(side: int, window: int) -> int:
    """Windows along one axis of `side` tokens: the fewest equal parts no longer than `window` (1 when side ≤ window);
    1 (global along this axis) when no such split leaves parts of at least window/2 tokens."""
    if side <= window:
        return 1
    for n in range(-(-side // window), side + 1):
        if side % n == 0:
            return n if 2 * (side // n) >= window else 1
    return 1


def window_layout(h: int, w: int, window: int | None) -> tuple:
    """(nh, nw): windows per axis for an h×w token grid and a window of `window` tokens per side (None: global)."""
    if not window:
        return (1, 1)
    return (_parts(int(h), int(window)), _parts(int(w), int(window)))


def _to_windows(t: torch.Tensor, h: int, w: int, nh: int, nw: int) -> torch.Tensor:
    """(B, heads, h·w, d) row-major tokens → (B·nh·nw, heads, (h/nh)·(w/nw), d)."""
    b, heads, _, d = t.shape
    t = t.reshape(b, heads, nh, h // nh, nw, w // nw, d).permute(0, 2, 4, 1, 3, 5, 6)
    return t.reshape(b * nh * nw, heads, (h // nh) * (w // nw), d)


def _from_windows(t: torch.Tensor, b: int, h: int, w: int, nh: int, nw: int) -> torch.Tensor:
    """Inverse of `_to_windows`: (B·nh·nw, heads, (h/nh)·(w/nw), d) → (B, heads, h·w, d)."""
    heads, d = t.shape[1], t.shape[-1]
    t = t.reshape(b, nh, nw, heads, h // nh, w // nw, d).permute(0, 3, 1, 4, 2, 5, 6)
    return t.reshape(b, heads, h * w, d)


class WindowedAddedKVProcessor:
    """diffusers attention processor for `Attention` layers with added (metadata) K/V: self-attention within windows
    of `window`² spatial tokens (None: global), cross-attention to the metadata tokens in every window.
    `layout`: fixed (nh, nw) instead of `window_layout` of the input (for tracing one layout into an exported graph).
    Input/output (B, C, H, W) float, residual added, as `AttnAddedKVProcessor2_0`."""

    def __init__(self, window: int | None = None, layout: tuple | None = None):
        self.window = int(window) if window else None
        self.layout = tuple(layout) if layout is not None else None

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 *args, **kwargs) -> torch.Tensor:
        residual = hidden_states
        b, c, h, w = hidden_states.shape
        nh, nw = self.layout if self.layout is not None else window_layout(h, w, self.window)
        if attention_mask is not None and (nh, nw) != (1, 1):
            raise ValueError("windowed attention does not take an attention mask")
        x = hidden_states.reshape(b, c, -1).transpose(1, 2)                      # (B, N, C)
        mask = attn.prepare_attention_mask(attention_mask, x.shape[1], b, out_dim=4)
        if encoder_hidden_states is None:
            encoder_hidden_states = x
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        q = attn.head_to_batch_dim(attn.to_q(x), out_dim=4)                      # (B, heads, N, d)
        ek = attn.head_to_batch_dim(attn.add_k_proj(encoder_hidden_states), out_dim=4)   # (B, heads, L, d)
        ev = attn.head_to_batch_dim(attn.add_v_proj(encoder_hidden_states), out_dim=4)
        if attn.only_cross_attention:
            k, v = ek, ev
            windows = False
        else:
            k = attn.head_to_batch_dim(attn.to_k(x), out_dim=4)
            v = attn.head_to_batch_dim(attn.to_v(x), out_dim=4)
            windows = (nh, nw) != (1, 1)
            if windows:
                q, k, v = (_to_windows(z, h, w, nh, nw) for z in (q, k, v))
                ek, ev = (z.repeat_interleave(nh * nw, dim=0) for z in (ek, ev))
            k = torch.cat([ek, k], dim=2)
            v = torch.cat([ev, v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
        if windows:
            out = _from_windows(out, b, h, w, nh, nw)
        out = out.transpose(1, 2).reshape(b, -1, c)
        out = attn.to_out[1](attn.to_out[0](out))
        return out.transpose(-1, -2).reshape(residual.shape) + residual


def set_attention_window(unet, window: int | None, layout: tuple | None = None) -> None:
    """Install `WindowedAddedKVProcessor(window, layout)` on every attention layer of `unet` that has added K/V
    (the `SimpleCrossAttn*` blocks); other layers keep their processors."""
    for module in unet.modules():
        if type(module).__name__ == "Attention" and getattr(module, "added_kv_proj_dim", None) is not None:
            module.set_processor(WindowedAddedKVProcessor(window, layout))
