"""`ConditionEncoder`: the interface every metadata → tokens encoder follows.

`encode(records) -> (B, L, D)` float tokens for cross-attention; `null_tokens(B)` = encode of all-empty
records (the unconditional branch of classifier-free guidance); `dim` = D; `kind` = "typed"|"clip"|"both";
`num_tokens` = L. Saved as a directory: `config.json` (with "kind") + `model.safetensors` (+ subdirs).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import nn

from recon_core.errors import InputError
from recon_core.metadata.record import MetadataRecord

from ...io_utils import write_bytes_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def as_records(records) -> list[MetadataRecord]:
    """list of MetadataRecord | dict (| a single record) → list[MetadataRecord]."""
    if isinstance(records, (MetadataRecord, dict)):
        records = [records]
    out = []
    for r in records:
        if isinstance(r, MetadataRecord):
            out.append(r)
        elif isinstance(r, dict):
            out.append(MetadataRecord.from_dict(r))
        elif r is None:
            out.append(MetadataRecord())
        else:
            raise InputError(f"encoder: expected MetadataRecord or dict records, got {type(r).__name__}")
    if not out:
        raise InputError("encoder: expected at least one record, got an empty batch")
    return out


def atomic_write_bytes(path: Path, data: bytes):

    write_bytes_atomic(path, data)


def write_json(path: Path, obj: dict):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8"))


def save_weights(module: nn.Module, path: Path, prefix_filter=None):
    """Save a module's state dict (optionally only keys passing `prefix_filter`) as safetensors, atomically."""
    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
          if prefix_filter is None or prefix_filter(k)}
    atomic_write_bytes(Path(path), st_save(sd))


def load_weights(module: nn.Module, path: Path, strict: bool = True):

    sd = load_file(str(path))
    missing, unexpected = module.load_state_dict(sd, strict=False)
    if strict and (unexpected or [k for k in missing if not k.startswith(("clip.", "text_encoder."))]):
        raise InputError(f"{path}: weights do not match the encoder config "
                         f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})")


class ConditionEncoder(nn.Module):
    """Base class: subclasses implement `encode`, `get_config`, `save_pretrained`, `from_pretrained`."""

    kind: str = "base"

    def __init__(self):
        super().__init__()

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def num_tokens(self) -> int:
        """L: number of tokens per sample."""
        return int(self.null_tokens(1).shape[1])

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def encode(self, records) -> torch.Tensor:
        """records (list of B MetadataRecord) → tokens (B, L, D) float32 on the encoder's device."""
        raise NotImplementedError

    def forward(self, records) -> torch.Tensor:
        return self.encode(records)

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        """Unconditional tokens (B, L, D) = encode of `batch_size` all-empty records."""
        if int(batch_size) < 1:
            raise InputError(f"null_tokens: expected batch_size >= 1, got {batch_size}")
        return self.encode([MetadataRecord() for _ in range(int(batch_size))])

    def get_config(self) -> dict:
        raise NotImplementedError

    def save_pretrained(self, directory) -> None:
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, directory) -> "ConditionEncoder":
        raise NotImplementedError
