"""CLIP text tokens followed by typed metadata tokens ("Metadata Matters"): (B, L_clip + 1 + K, D).

If the typed encoder's dim differs from CLIP's, its tokens go through a learnable Linear projection.
Saved as config.json + clip/ + typed/ (+ model.safetensors holding the projection).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from recon_core.errors import InputError
from recon_core.metadata.encoders.base import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ConditionEncoder,
    as_records,
    save_weights,
    write_json,
)
from recon_core.metadata.encoders.clip import ClipTextEncoder
from recon_core.metadata.encoders.typed import TypedMetadataEncoder


class CombinedEncoder(ConditionEncoder):
    """kind "both": `clip` (frozen) tokens then `typed` tokens projected to CLIP's dim."""

    kind = "both"

    def __init__(self, clip: ClipTextEncoder, typed: TypedMetadataEncoder):
        super().__init__()
        self.clip, self.typed = clip, typed
        self.proj = nn.Linear(typed.dim, clip.dim) if typed.dim != clip.dim else nn.Identity()

    @classmethod
    def from_config(cls, config: dict) -> "CombinedEncoder":
        extra = set(config) - {"kind", "clip", "typed"}
        if extra or "clip" not in config:
            raise InputError(f"'both' encoder config: expected keys clip (and typed), got {sorted(config)}")
        clip = ClipTextEncoder({**config["clip"], "kind": "clip"})
        typed_cfg = dict(config.get("typed") or {})
        typed_cfg.setdefault("dim", clip.dim)
        typed_cfg["kind"] = "typed"
        return cls(clip, TypedMetadataEncoder(typed_cfg))

    @property
    def dim(self) -> int:
        return self.clip.dim

    @property
    def num_tokens(self) -> int:
        return self.clip.num_tokens + self.typed.num_tokens

    def encode(self, records) -> torch.Tensor:
        recs = as_records(records)
        return torch.cat([self.clip.encode(recs), self.proj(self.typed.encode(recs))], dim=1)

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        return torch.cat([self.clip.null_tokens(batch_size), self.proj(self.typed.null_tokens(batch_size))], dim=1)

    def get_config(self) -> dict:
        return {"kind": "both", "clip": self.clip.get_config(), "typed": self.typed.get_config()}

    def save_pretrained(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.clip.save_pretrained(d / "clip")
        self.typed.save_pretrained(d / "typed")
        save_weights(self, d / WEIGHTS_NAME, prefix_filter=lambda k: k.startswith("proj."))
        write_json(d / CONFIG_NAME, {"kind": "both", "clip": "clip", "typed": "typed"})

    @classmethod
    def from_pretrained(cls, directory) -> "CombinedEncoder":
        d = Path(directory)
        cfg = json.loads((d / CONFIG_NAME).read_text())
        enc = cls(ClipTextEncoder.from_pretrained(d / cfg.get("clip", "clip")),
                  TypedMetadataEncoder.from_pretrained(d / cfg.get("typed", "typed")))
        if isinstance(enc.proj, nn.Linear):
            sd = load_file(str(d / WEIGHTS_NAME))
            enc.proj.load_state_dict({k[len("proj."):]: v for k, v in sd.items()})
        return enc
