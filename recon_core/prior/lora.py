"""LoRA adapters (peft) on the UNet's attention projections ("Metadata Matters": rank 4, alpha 32 on
to_q / to_k / to_v / to_out.0), base frozen.

Adapter directory: `adapter_config.json` (peft LoraConfig), `adapter_model.safetensors`
(peft state dict), `contextmri.json` (kind "lora-adapter", key "base" = base model path or "default").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..io_utils import atomic_dir as _atomic_dir
from ..io_utils import write_json_atomic
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST

DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def lora_config(rank: int = 4, alpha: float = 32, targets=DEFAULT_TARGETS, dropout: float = 0.0):
    from peft import LoraConfig

    return LoraConfig(r=int(rank), lora_alpha=alpha, target_modules=list(targets), lora_dropout=float(dropout),
                      init_lora_weights="gaussian")


def add_lora(prior, rank: int = 4, alpha: float = 32, targets=DEFAULT_TARGETS, dropout: float = 0.0) -> list:
    """Freeze the whole prior (UNet and encoder), inject LoRA layers into the UNet; return the trainable params."""
    from peft import inject_adapter_in_model

    prior.requires_grad_(False)
    inject_adapter_in_model(lora_config(rank, alpha, targets, dropout), prior.unet)
    params = [p for n, p in prior.unet.named_parameters() if "lora_" in n]
    if not params:
        raise InputError(f"LoRA targets {list(targets)} match no module of the UNet")
    for p in params:
        p.requires_grad_(True)
    prior.manifest["lora"] = {"rank": int(rank), "alpha": alpha, "targets": list(targets)}
    return params


def save_adapter(prior, directory, base: str | None = None) -> Path:
    """Write the LoRA weights of `prior.unet` (+ config, manifest) atomically to `directory`."""
    from peft import get_peft_model_state_dict

    lora = prior.manifest.get("lora")
    if not lora:
        raise InputError("this prior has no LoRA adapter to save (call add_lora first)")
    state = {k: v.detach().float().contiguous().cpu() for k, v in get_peft_model_state_dict(prior.unet).items()}
    tmp, commit = _atomic_dir(Path(directory))
    try:
        save_file(state, str(tmp / ADAPTER_WEIGHTS))
        cfg = lora_config(lora["rank"], lora["alpha"], lora["targets"]).to_dict()
        cfg = {k: (sorted(v) if isinstance(v, set) else v) for k, v in cfg.items()}
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2, default=str))
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "kind": "lora-adapter", "base": base,
                    "lora": lora, "resolution": prior.resolution, "parts": {},
                    "base_manifest": {k: prior.manifest.get(k) for k in ("preset", "encoder_kind", "resolution")}}
        write_json_atomic(tmp / MANIFEST, manifest)
        commit()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Path(directory)


def load_adapter(prior, directory):
    """Inject the adapter stored in `directory` into `prior.unet` and load its weights (in place)."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    directory = Path(directory)
    cfg_path, w_path = directory / ADAPTER_CONFIG, directory / ADAPTER_WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise InputError(f"LoRA adapter part missing: {p}")
    cfg = json.loads(cfg_path.read_text())
    for key in ("r", "lora_alpha", "target_modules"):
        if key not in cfg:
            raise InputError(f"{cfg_path}: missing key {key!r}")
    config = lora_config(cfg["r"], cfg["lora_alpha"], cfg["target_modules"])
    inject_adapter_in_model(config, prior.unet)
    state = load_file(str(w_path))
    result = set_peft_model_state_dict(prior.unet, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise InputError(f"{w_path}: mismatched adapter: key {unexpected[0]!r} has no place in the base UNet")
    prior.manifest["lora"] = {"rank": cfg["r"], "alpha": cfg["lora_alpha"], "targets": list(cfg["target_modules"]),
                              "adapter": str(directory)}
    prior.requires_grad_(False)
    return prior
