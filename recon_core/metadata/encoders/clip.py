"""Frozen CLIP text encoder on the ContextMRI prompt (transformers CLIPTokenizer + CLIPTextModel).

Loaded from a local directory holding `tokenizer/` and `text_encoder/` (a ContextMRI checkpoint layout,
or a directory written by `save_pretrained`). Tokens: last hidden state (B, max_length=77, D) of the
prompt padded to max_length (no attention mask, as upstream). Null tokens = encode of "".
Offline trap: `CLIPTokenizer.from_pretrained` may "succeed" with a 2-token vocabulary when the files are
missing; a tokenizer with `len(tokenizer) <= min_vocab` (default 1000) raises InputError naming the dir.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from recon_core.errors import InputError
from recon_core.metadata.encoders.base import CONFIG_NAME, ConditionEncoder, as_records, write_json
from recon_core.metadata.prompt import VARIANTS, build_prompt

_CONFIG_KEYS = {"kind", "path", "max_length", "prompt_variant", "min_vocab", "dim"}


def load_clip_parts(path, min_vocab: int = 1000):
    """dir with tokenizer/ + text_encoder/ → (CLIPTokenizer, CLIPTextModel), offline, frozen, eval."""
    from transformers import CLIPTextModel, CLIPTokenizer

    d = Path(path)
    tok_dir, te_dir = d / "tokenizer", d / "text_encoder"
    for sub in (tok_dir, te_dir):
        if not sub.is_dir():
            raise InputError(f"CLIP encoder: expected directory {sub} (a checkpoint with tokenizer/ and text_encoder/)")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    except Exception as exc:
        raise InputError(f"CLIP encoder: cannot load the tokenizer from {tok_dir}: {exc}") from None
    if len(tokenizer) <= int(min_vocab):
        raise InputError(f"CLIP encoder: the tokenizer in {tok_dir} has only {len(tokenizer)} tokens "
                         f"(expected > {min_vocab}); vocab.json/merges.txt are missing or wrong (offline tokenizer trap)")
    try:
        text_encoder = CLIPTextModel.from_pretrained(str(te_dir), local_files_only=True)
    except Exception as exc:
        raise InputError(f"CLIP encoder: cannot load the text encoder from {te_dir}: {exc}") from None
    text_encoder.requires_grad_(False)
    text_encoder.eval()
    return tokenizer, text_encoder


class ClipTextEncoder(ConditionEncoder):
    """Frozen CLIP text tokens (B, max_length, D) of `build_prompt(record, prompt_variant)`."""

    kind = "clip"

    def __init__(self, config: dict):
        super().__init__()
        config = dict(config or {})
        extra = set(config) - _CONFIG_KEYS
        if extra:
            raise InputError(f"clip encoder config: unknown key(s) {sorted(extra)}; expected some of {sorted(_CONFIG_KEYS)}")
        if not config.get("path"):
            raise InputError("clip encoder config: expected 'path' = a directory with tokenizer/ and text_encoder/")
        self.config = {"kind": "clip", "path": str(config["path"]), "max_length": int(config.get("max_length", 77)),
                       "prompt_variant": config.get("prompt_variant", "contextmri"),
                       "min_vocab": int(config.get("min_vocab", 1000))}
        if self.config["prompt_variant"] not in VARIANTS:
            raise InputError(f"clip encoder config prompt_variant: expected one of {VARIANTS}, got {self.config['prompt_variant']!r}")
        self.tokenizer, self.text_encoder = load_clip_parts(self.config["path"], self.config["min_vocab"])
        if config.get("dim") is not None and int(config["dim"]) != self.dim:  # optional consistency check
            raise InputError(f"clip encoder config dim: expected the text encoder's hidden size {self.dim} "
                             f"({self.config['path']}/text_encoder), got {config['dim']}")

    @property
    def dim(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    @property
    def num_tokens(self) -> int:
        return self.config["max_length"]

    def train(self, mode: bool = True):
        super().train(mode)
        self.text_encoder.eval()  # frozen: never in training mode (no dropout)
        return self

    def prompts(self, records) -> list[str]:
        return [build_prompt(r, self.config["prompt_variant"]) for r in as_records(records)]

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """prompt strings (B) → last hidden state (B, max_length, D) float32, no gradient."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.config["max_length"],
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        with torch.no_grad():
            return self.text_encoder(ids)[0]

    def encode(self, records) -> torch.Tensor:
        return self.encode_text(self.prompts(records))

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        if int(batch_size) < 1:
            raise InputError(f"null_tokens: expected batch_size >= 1, got {batch_size}")
        return self.encode_text([""] * int(batch_size))

    def get_config(self) -> dict:
        return copy.deepcopy(self.config)

    def save_pretrained(self, directory) -> None:
        """Writes config.json + tokenizer/ + text_encoder/ (transformers save_pretrained)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(d / "tokenizer"))
        self.text_encoder.save_pretrained(str(d / "text_encoder"))
        cfg = self.get_config()
        cfg["path"] = "."  # relative: the directory itself
        write_json(d / CONFIG_NAME, cfg)

    @classmethod
    def from_pretrained(cls, directory) -> "ClipTextEncoder":
        d = Path(directory)
        cfg = json.loads((d / CONFIG_NAME).read_text()) if (d / CONFIG_NAME).is_file() else {"kind": "clip"}
        path = Path(cfg.get("path", "."))
        cfg["path"] = str(path if path.is_absolute() else (d / path))
        return cls(cfg)
