"""Conditioning encoders: metadata records → tokens (B, L, D) for the UNet's cross-attention.

`build_encoder(config)` with `config["kind"]` in "typed" (default, per-field "Metadata Matters"),
"clip" (frozen CLIP text on the ContextMRI prompt) or "both" (CLIP tokens then typed tokens);
`load_encoder(dir)` reads what `encoder.save_pretrained(dir)` wrote (config.json + weights).
"""

from __future__ import annotations

import json
from pathlib import Path

from recon_core.errors import InputError
from recon_core.metadata.encoders.base import CONFIG_NAME, ConditionEncoder
from recon_core.metadata.encoders.clip import ClipTextEncoder
from recon_core.metadata.encoders.combined import CombinedEncoder
from recon_core.metadata.encoders.typed import (
    TypedMetadataEncoder,
    default_typed_config,
    resolve_typed_config,
    typed_config_from_records,
)

KINDS = ("typed", "clip", "both")

__all__ = ["ConditionEncoder", "TypedMetadataEncoder", "ClipTextEncoder", "CombinedEncoder", "build_encoder",
           "load_encoder", "default_typed_config", "resolve_typed_config", "typed_config_from_records", "KINDS"]


def build_encoder(config: dict | None = None) -> ConditionEncoder:
    """config dict (kind "typed" default | "clip" | "both") → a freshly initialised encoder.

    typed: optional dim, freq_dim, numeric_scale, fields, vocab, stats (defaults: defaults.json);
    clip: path (dir with tokenizer/ + text_encoder/), max_length 77, prompt_variant, min_vocab 1000;
    both: {"clip": {...}, "typed": {...}} (typed dim defaults to CLIP's).
    """
    config = dict(config or {})
    kind = config.get("kind", "typed")
    if kind == "typed":
        return TypedMetadataEncoder(config)
    if kind == "clip":
        return ClipTextEncoder(config)
    if kind == "both":
        return CombinedEncoder.from_config(config)
    raise InputError(f"encoder kind: expected one of {KINDS}, got {kind!r}")


def load_encoder(directory) -> ConditionEncoder:
    """Load an encoder saved with `save_pretrained(directory)` (reads config.json's "kind")."""
    d = Path(directory)
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        if (d / "tokenizer").is_dir() and (d / "text_encoder").is_dir():
            return ClipTextEncoder({"path": str(d)})  # a bare ContextMRI-style checkpoint directory
        raise InputError(f"load_encoder: expected {cfg_path} (written by save_pretrained), not found")
    try:
        kind = json.loads(cfg_path.read_text()).get("kind", "typed")
    except json.JSONDecodeError as exc:
        raise InputError(f"load_encoder: {cfg_path} is not valid JSON ({exc})") from None
    if kind == "typed":
        return TypedMetadataEncoder.from_pretrained(d)
    if kind == "clip":
        return ClipTextEncoder.from_pretrained(d)
    if kind == "both":
        return CombinedEncoder.from_pretrained(d)
    raise InputError(f"load_encoder: {cfg_path} has kind {kind!r}; expected one of {KINDS}")
