"""Typed per-field metadata encoder ("Metadata Matters"), fixed.

Tokens (B, 1+K, D) = LayerNorm(cat[separator, field_1 .. field_K]) with, per field:
- categorical (anatomy, contrast, sequence, sex): an embedding table over the configured vocabulary
  (matched case/punctuation-insensitively; an unknown category is treated as missing, logged once);
- numeric (slice, tr, te, ti, flip_angle, field_strength, age): clamp to [min, max] of the stored stats,
  scale to [0, 1] (linear or log1p), multiply by `numeric_scale` (1000), sinusoidal embedding
  (θ = 10000, diffusers `get_timestep_embedding`) → MLP Linear-SiLU-Linear (diffusers `TimestepEmbedding`);
- pathology (multi-label): normalised multi-hot (rows sum to 1) @ weight (P, D); an explicit empty list
  encodes the "none" label, `None` (unknown) is missing; labels are plain strings (the upstream defect of
  (name, count) tuples never matching is fixed); unknown labels are ignored (logged once);
- missing / dropped values → a learnable per-field empty embedding (zeros at init).
Any batch size works (no fixed CFG batch, fixing the upstream CFG batch mismatch).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from recon_core.errors import InputError
from recon_core.metadata.encoders.base import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ConditionEncoder,
    as_records,
    load_weights,
    save_weights,
    write_json,
)
from recon_core.metadata.record import CATEGORICAL_FIELDS, NUMERIC_FIELDS, MetadataRecord

log = logging.getLogger(__name__)
_LOGGED: set[str] = set()
ALL_FIELDS = MetadataRecord.field_names()
_CONFIG_KEYS = {"kind", "dim", "freq_dim", "numeric_scale", "fields", "vocab", "stats"}


def default_typed_config() -> dict:
    """The packaged defaults (dim 256, all 12 fields, vocabularies, numeric stats) as a fresh dict."""
    text = resources.files("recon_core.metadata.encoders").joinpath("defaults.json").read_text()
    cfg = json.loads(text)
    cfg.pop("_doc", None)
    cfg["kind"] = "typed"
    return cfg


def category_key(s: str) -> str:
    """Matching key for categories: lower case, punctuation and spaces removed ("Meniscus-Tear" → "meniscustear")."""
    return re.sub(r"[^a-z0-9]+", "", str(s).lower())


def _log_once(key, msg):
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.warning(msg)


def resolve_typed_config(config: dict | None) -> dict:
    """Fill a partial typed config from the defaults and validate it (InputError naming the key)."""
    config = dict(config or {})
    extra = set(config) - _CONFIG_KEYS
    if extra:
        raise InputError(f"typed encoder config: unknown key(s) {sorted(extra)}; expected some of {sorted(_CONFIG_KEYS)}")
    cfg = default_typed_config()
    for k in ("dim", "freq_dim", "numeric_scale", "fields"):
        if k in config:
            cfg[k] = config[k]
    for k in ("vocab", "stats"):  # per-field replacement
        cfg[k] = {**cfg[k], **copy.deepcopy(config.get(k, {}))}
    cfg["kind"] = "typed"
    cfg["dim"], cfg["freq_dim"] = int(cfg["dim"]), int(cfg["freq_dim"])
    if cfg["dim"] < 1 or cfg["freq_dim"] < 2 or cfg["freq_dim"] % 2:
        raise InputError(f"typed encoder config: expected dim >= 1 and an even freq_dim >= 2, got {cfg['dim']}, {cfg['freq_dim']}")
    fields = list(cfg["fields"])
    bad = [f for f in fields if f not in ALL_FIELDS]
    if bad or len(set(fields)) != len(fields) or not fields:
        raise InputError(f"typed encoder config 'fields': expected distinct names from {list(ALL_FIELDS)}, got {fields}")
    for f in fields:
        if f in CATEGORICAL_FIELDS or f == "pathology":
            voc = cfg["vocab"].get(f)
            if not voc or not all(isinstance(v, str) for v in voc):
                raise InputError(f"typed encoder config vocab[{f!r}]: expected a non-empty list of strings, got {voc!r}")
            keys = [category_key(v) for v in voc]
            if len(set(keys)) != len(keys):
                raise InputError(f"typed encoder config vocab[{f!r}]: duplicate entries (after normalisation)")
        if f in NUMERIC_FIELDS:
            st = cfg["stats"].get(f)
            if not isinstance(st, dict) or "min" not in st or "max" not in st or not float(st["max"]) > float(st["min"]):
                raise InputError(f"typed encoder config stats[{f!r}]: expected {{'min': a, 'max': b}} with b > a, got {st!r}")
            st.setdefault("transform", "linear")
            if st["transform"] not in ("linear", "log"):
                raise InputError(f"typed encoder config stats[{f!r}].transform: expected linear or log, got {st['transform']!r}")
    cfg["fields"] = fields
    # keep only the vocab/stats of used fields, so the saved config describes exactly this model
    cfg["vocab"] = {f: list(cfg["vocab"][f]) for f in fields if f in cfg["vocab"] and (f in CATEGORICAL_FIELDS or f == "pathology")}
    cfg["stats"] = {f: dict(cfg["stats"][f]) for f in fields if f in NUMERIC_FIELDS}
    return cfg


def typed_config_from_records(records, base: dict | None = None, margin: float = 0.0) -> dict:
    """A typed config whose vocabularies include every category seen in `records` (after the base ones)
    and whose numeric stats are the observed [min, max] (widened by `margin` × range; fields never seen
    keep the base stats). For building a model from a training set."""
    cfg = resolve_typed_config(base)
    recs = as_records(records)
    for f in cfg["vocab"]:
        seen = {category_key(v) for v in cfg["vocab"][f]}
        for r in recs:
            vals = getattr(r, f)
            vals = vals if isinstance(vals, list) else [vals]
            for v in vals:
                if v is not None and category_key(v) not in seen:
                    seen.add(category_key(v))
                    cfg["vocab"][f].append(v)
    for f in cfg["stats"]:
        vals = [float(getattr(r, f)) for r in recs if getattr(r, f) is not None]
        if vals:
            lo, hi = min(vals), max(vals)
            pad = margin * (hi - lo)
            lo, hi = max(0.0, lo - pad), hi + pad
            if hi <= lo:
                hi = lo + 1.0
            cfg["stats"][f] = {**cfg["stats"][f], "min": lo, "max": hi}
    return cfg


class TypedMetadataEncoder(ConditionEncoder):
    """Per-field typed tokens (B, 1+K, D); see the module docstring. Build with `build_encoder({"kind": "typed", ...})`."""

    kind = "typed"

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = resolve_typed_config(config)
        self.config = cfg
        D, F = cfg["dim"], cfg["freq_dim"]
        self.fields = list(cfg["fields"])
        self._index = {f: {category_key(v): i for i, v in enumerate(cfg["vocab"][f])} for f in cfg["vocab"]}
        from diffusers.models.embeddings import TimestepEmbedding

        self.tables = nn.ModuleDict({f: nn.Embedding(len(cfg["vocab"][f]), D)
                                     for f in self.fields if f in CATEGORICAL_FIELDS})
        self.mlps = nn.ModuleDict({f: TimestepEmbedding(F, D, act_fn="silu") for f in self.fields if f in NUMERIC_FIELDS})
        if "pathology" in self.fields:
            self.pathology_weight = nn.Parameter(torch.randn(len(cfg["vocab"]["pathology"]), D) * (1.0 / math.sqrt(D)))
        self.empty = nn.Parameter(torch.zeros(len(self.fields), D))
        self.separator = nn.Parameter(torch.randn(D) * 0.02)
        self.norm = nn.LayerNorm(D)

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def num_tokens(self) -> int:
        return 1 + len(self.fields)

    # ------------------------------------------------------------------ per-field features
    def _cat_index(self, field, value) -> int:
        if value is None:
            return -1
        i = self._index[field].get(category_key(value))
        if i is None:
            _log_once(f"{field}:{value}", f"typed encoder: unknown {field} {value!r} (not in the vocabulary) → treated as missing")
            return -1
        return i

    def _scaled(self, field, value) -> float:
        st = self.config["stats"][field]
        lo, hi, x = float(st["min"]), float(st["max"]), float(value)
        if st.get("transform") == "log":
            lo, hi, x = math.log1p(max(lo, 0.0)), math.log1p(hi), math.log1p(max(x, 0.0))
        return min(max((x - lo) / (hi - lo), 0.0), 1.0)

    def _multi_hot(self, labels) -> list[float] | None:
        if labels is None:
            return None
        P = len(self.config["vocab"]["pathology"])
        row = [0.0] * P
        if len(labels) == 0:
            if "none" not in self._index["pathology"]:
                return None
            row[self._index["pathology"]["none"]] = 1.0
            return row
        for lab in labels:
            i = self._index["pathology"].get(category_key(lab))
            if i is None:
                _log_once(f"pathology:{lab}", f"typed encoder: unknown pathology label {lab!r} → ignored")
            else:
                row[i] = 1.0
        s = sum(row)
        return [v / s for v in row] if s > 0 else None

    # ------------------------------------------------------------------ encode
    def encode(self, records) -> torch.Tensor:
        """records (B) → (B, 1+K, D) float tokens (differentiable w.r.t. the encoder's parameters)."""
        from diffusers.models.embeddings import get_timestep_embedding

        recs = as_records(records)
        B = len(recs)
        dev, dtype = self.separator.device, self.separator.dtype
        toks = []
        for k, f in enumerate(self.fields):
            if f in CATEGORICAL_FIELDS:
                idx = torch.tensor([self._cat_index(f, getattr(r, f)) for r in recs], device=dev, dtype=torch.long)
                present = idx >= 0
                emb = self.tables[f](idx.clamp(min=0))
            elif f in NUMERIC_FIELDS:
                vals = [getattr(r, f) for r in recs]
                present = torch.tensor([v is not None for v in vals], device=dev)
                t = torch.tensor([self._scaled(f, v) if v is not None else 0.0 for v in vals], device=dev,
                                 dtype=torch.float32) * float(self.config["numeric_scale"])
                sin = get_timestep_embedding(t, self.config["freq_dim"], flip_sin_to_cos=True, downscale_freq_shift=0)
                emb = self.mlps[f](sin.to(dtype))
            else:  # pathology
                rows = [self._multi_hot(r.pathology) for r in recs]
                present = torch.tensor([row is not None for row in rows], device=dev)
                P = self.pathology_weight.shape[0]
                mh = torch.tensor([row if row is not None else [0.0] * P for row in rows], device=dev, dtype=dtype)
                emb = mh @ self.pathology_weight
            emb = torch.where(present[:, None], emb.to(dtype), self.empty[k].expand(B, -1))
            toks.append(emb)
        x = torch.stack([self.separator.expand(B, -1)] + toks, dim=1)
        return self.norm(x)

    # ------------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        return copy.deepcopy(self.config)

    def save_pretrained(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_weights(self, d / WEIGHTS_NAME)
        write_json(d / CONFIG_NAME, self.get_config())

    @classmethod
    def from_pretrained(cls, directory) -> "TypedMetadataEncoder":
        d = Path(directory)
        cfg = json.loads((d / CONFIG_NAME).read_text())
        enc = cls(cfg)
        load_weights(enc, d / WEIGHTS_NAME)
        return enc
