"""The diffusion prior: a diffusers UNet2DConditionModel (2 channels: real, imag of the normalised MVUE),
a DDPMScheduler (1000 steps, epsilon prediction) and a metadata/text condition encoder.

`build_prior(preset_or_config)` creates an untrained prior from a preset in `recon_core/prior/presets/`
(or a config dict of the same schema); `Prior.from_pretrained` / `save_pretrained` read and write checkpoint
directories (`checkpoint.py`: the parts; `manifest.py`: contextmri.json).

A *latent* prior (config key `latent: {vae: DIR}`, manifest `space: latent`) holds a frozen MR-VAE
(`recon_core.prior.vae`) and its UNet works on the VAE's scaled latents (B, c, H/f, W/f) instead of the image
(B, 2, H, W); `resolution` stays the image size. The pixel samplers (DDS, Score-MRI) refuse it; LDPM
(`recon_core.samplers.ldpm`) needs it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from ..device import resolve_device
from ..errors import InputError
from ..io_utils import preset_yaml
from ..metadata.encoders import build_encoder
from ..validate import check_mapping
from .attention import set_attention_window, window_layout
from .checkpoint import adapter_base, load_parts, read_checkpoint_manifest, save_prior
from .lora import load_adapter
from .manifest import make_manifest, resolve_model_path
from .vae import load_vae

PRESET_DIR = Path(__file__).with_name("presets")
CONFIG_KEYS = {"resolution", "prompt_format", "conditioned", "encoder", "unet", "scheduler", "latent"}
# Keys of the UNet config that build_prior fills itself (from the resolution and the encoder).
_UNET_FIXED = {"sample_size", "in_channels", "out_channels"}
_SCHEDULER_DEFAULTS = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4,
                       "beta_end": 0.02, "prediction_type": "epsilon", "clip_sample": False}


class Prior(torch.nn.Module):
    """Holder of the prior's parts.

    Attributes: `unet` (UNet2DConditionModel, 2 in / 2 out channels), `scheduler` (DDPMScheduler),
    `encoder` (ConditionEncoder: `encode(records) -> (B, L, D)`, `null_tokens(B)`), `manifest` (dict).
    An unconditional prior (`manifest["conditioned"] is False`, e.g. the unconditional twin) always
    uses the null tokens: `condition(records)` then equals `uncondition(len(records))`.
    """

    def __init__(self, unet, scheduler, encoder, manifest: dict, vae=None):
        super().__init__()
        self.unet = unet
        self.encoder = encoder
        self.scheduler = scheduler
        self.manifest = dict(manifest)
        self.vae = vae
        if vae is not None:
            vae.requires_grad_(False)
            vae.eval()
        set_attention_window(self.unet, self.attention_window)

    # --- properties -------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        """Training image size (square, pixels)."""
        return int(self.manifest.get("resolution", self.unet.config.sample_size))

    @property
    def attention_window(self) -> int | None:
        """Side of the token window the UNet's self-attention works in (`recon_core.prior.attention`): the
        manifest's `attention_window` (0 or null: global), else the token grid of the training size
        (sample_size / 2^(levels − 1): 16 for a 128² four-level UNet)."""
        if "attention_window" in self.manifest:
            w = self.manifest["attention_window"]
            if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 0):
                raise InputError(f"prior manifest: attention_window must be a token count ≥ 0 (0 or null: global "
                                 f"attention), got {w!r}")
            return int(w or 0) or None
        return max(1, int(self.unet.config.sample_size) // self.unet_down)

    @property
    def unet_down(self) -> int:
        """The UNet's own downsampling from its input to its lowest resolution: 2^(levels − 1)."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def attention_layout(self, shape) -> tuple:
        """(nh, nw) attention windows the UNet uses on an input of `shape` (B, C, H, W) (`window_layout`)."""
        return window_layout(int(shape[2]) // self.unet_down, int(shape[3]) // self.unet_down, self.attention_window)

    @property
    def is_latent(self) -> bool:
        """True for a latent prior (UNet on MR-VAE latents)."""
        return self.vae is not None

    @property
    def channels(self) -> int:
        """Channels of the space the UNet works in (2 for images, the VAE's latent channels otherwise)."""
        return int(self.unet.config.in_channels)

    @property
    def sample_shape(self) -> tuple:
        """(channels, size, size) of the UNet's input: (2, res, res) or the latent's (c, res/f, res/f)."""
        n = int(self.unet.config.sample_size)
        return (self.channels, n, n)

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 2, H, W) → scaled latent means (B, c, h, w) (identity for a pixel prior); no gradients."""
        if self.vae is None:
            return x
        with torch.no_grad():
            return self.vae.encode(x.float())

    def from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, c, h, w) → images (B, 2, H, W) (identity for a pixel prior)."""
        return z if self.vae is None else self.vae.decode(z.float())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()   # frozen: the VAE never trains with the prior
        return self

    @property
    def conditioned(self) -> bool:
        return bool(self.manifest.get("conditioned", True))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # --- conditioning -----------------------------------------------------------------------
    def condition(self, records) -> torch.Tensor:
        """Tokens (B, L, D) float32 for a list of MetadataRecord (null tokens if the prior is unconditional)."""
        records = list(records)
        if not self.conditioned:
            return self.uncondition(len(records))
        return self.encoder.encode(records).to(self.device)

    def uncondition(self, batch_size: int) -> torch.Tensor:
        """Unconditional (empty-metadata) tokens (B, L, D)."""
        return self.encoder.null_tokens(int(batch_size)).to(self.device)

    # --- network ------------------------------------------------------------------------------
    def predict_eps(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """ε̂(x_t, t, c): x (B, 2, H, W) float, t (B,) long in [0, 1000), tokens (B, L, D) → (B, 2, H, W) float32."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            what = "(B, 2, H, W) (real, imag)" if not self.is_latent else f"(B, {self.channels}, h, w) (VAE latents)"
            raise InputError(f"prior input must be {what}; got shape {tuple(x.shape)}")
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        out = self.unet(x, t, encoder_hidden_states=tokens.to(x.dtype) if tokens.dtype != x.dtype else tokens,
                        return_dict=False)[0]
        return out.float()

    def forward(self, x: torch.Tensor, t: torch.Tensor, records=None, tokens=None) -> torch.Tensor:
        """Training forward (used under DDP): tokens from `records` through the encoder (with gradients)."""
        if tokens is None:
            tokens = self.condition(records)
        return self.predict_eps(x, t, tokens)

    def save_pretrained(self, directory) -> Path:
        """Write the checkpoint directory (unet/, scheduler/, metadata_encoder/, contextmri.json) atomically."""
        return save_prior(self, directory)

    @classmethod
    def from_pretrained(cls, path_or_name="default", device="cpu", variant: str | None = None, adapter=None):
        """Load a prior checkpoint directory (or 'default', 'default-latent', or a ContextMRI MRI_checkpoint
        directory). `variant` picks the UNet folder of a ContextMRI layout ("fastmri" | "skm-tea"). `adapter`
        is an optional LoRA adapter directory (`recon_core.prior.lora`) applied onto the base; a directory
        whose manifest is itself a LoRA adapter loads its base (manifest key "base") plus the adapter.
        Returns the prior in eval mode on `device`."""
        directory = resolve_model_path(path_or_name)
        manifest = read_checkpoint_manifest(directory)
        base = adapter_base(directory, manifest) if manifest is not None else None
        if base is not None:
            return cls.from_pretrained(base, device=device, adapter=directory)
        unet, sched, encoder, manifest, vae = load_parts(directory, variant, manifest)
        prior = cls(unet, sched, encoder, manifest, vae=vae)
        if adapter is not None:
            load_adapter(prior, adapter)
        prior.eval()
        return prior.to(resolve_device(device) if isinstance(device, str) else device)


# ------------------------------------------------------------------------------------------------
def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict:
    """The config dict of a preset (`tiny`, `cpu-128`, `contextmri-320`) or of a YAML file path."""
    cfg, source = preset_yaml(name, PRESET_DIR, "prior")
    check_config(cfg, source)
    return cfg


def check_config(cfg: dict, source: str = "prior config") -> None:
    """Raise InputError naming `source` and the key for unknown or missing keys."""
    check_mapping(cfg, CONFIG_KEYS, ("resolution", "unet", "encoder"), source)
    fixed = sorted(_UNET_FIXED & set(cfg["unet"] or {}))
    if fixed:
        raise InputError(f"{source}: unet.{fixed[0]} is set from 'resolution' and must not be given")


def unet_config(cfg: dict, encoder_dim: int, vae=None) -> dict:
    """Full UNet2DConditionModel kwargs from a prior config and the encoder's token dim D (and the MR-VAE
    of a latent prior: the UNet then takes its latents)."""
    kw = dict(cfg["unet"])
    if vae is None:
        kw.update(sample_size=int(cfg["resolution"]), in_channels=2, out_channels=2)
    else:
        kw.update(sample_size=vae.latent_size, in_channels=vae.latent_channels, out_channels=vae.latent_channels)
    if kw.get("encoder_hid_dim") is not None:
        kw["encoder_hid_dim"] = int(encoder_dim)  # text_proj: D -> cross_attention_dim
        kw.setdefault("cross_attention_dim", int(encoder_dim))
    else:
        kw["cross_attention_dim"] = int(encoder_dim)
    return kw


def build_scheduler(cfg: dict | None):
    from diffusers import DDPMScheduler  # heavy (≈2 s): loaded when a prior is built or read

    kw = dict(_SCHEDULER_DEFAULTS)
    kw.update(cfg or {})
    if kw["prediction_type"] != "epsilon":
        raise InputError(f"scheduler.prediction_type must be 'epsilon', got {kw['prediction_type']!r}")
    return DDPMScheduler(**kw)


def build_prior(preset_or_config="tiny", seed: int | None = 0) -> Prior:
    """An untrained prior from a preset name / YAML path / config dict (schema: presets/*.yaml).

    The encoder is `recon_core.metadata.build_encoder(config["encoder"])`; the UNet's
    cross_attention_dim is the encoder's token dim. `seed` makes the initial weights reproducible.
    """
    from diffusers import UNet2DConditionModel  # heavy (≈2 s): loaded when a prior is built or read

    if isinstance(preset_or_config, (str, os.PathLike)):
        name = str(preset_or_config)
        cfg = load_preset(name)
    else:
        cfg = copy.deepcopy(dict(preset_or_config))
        check_config(cfg)
        name = cfg.get("name", "custom")
    vae = _latent_vae(cfg, name)
    if seed is not None:
        torch.manual_seed(int(seed))
    try:
        encoder = build_encoder(dict(cfg["encoder"]))
        unet = UNet2DConditionModel(**unet_config(cfg, encoder.dim, vae))
    except TypeError as exc:  # unknown UNet/encoder argument
        raise InputError(f"prior config {name!r}: {exc}") from exc
    scheduler = build_scheduler(cfg.get("scheduler"))
    manifest = make_manifest(cfg, encoder, preset=name if isinstance(preset_or_config, str) else None, vae=vae)
    return Prior(unet, scheduler, encoder, manifest, vae=vae)


def _latent_vae(cfg: dict, name: str):
    """The MR-VAE a latent prior config names (`latent: {vae: DIR}`), checked against `resolution`; else None."""
    lat = cfg.get("latent")
    if lat is None:
        return None
    if not isinstance(lat, dict) or not lat.get("vae"):
        raise InputError(f"prior config {name!r}: key 'latent' must be a mapping with key 'vae' (an MR-VAE directory)")
    vae = load_vae(Path(str(lat["vae"])).expanduser())
    if vae.resolution != int(cfg["resolution"]):
        raise InputError(f"prior config {name!r}: resolution {cfg['resolution']} but the VAE {lat['vae']} was "
                         f"trained for {vae.resolution}x{vae.resolution}")
    return vae


def count_parameters(module: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def load_prior(path_or_name="default", device="cpu", variant: str | None = None, adapter=None) -> Prior:
    """`Prior.from_pretrained` (see there)."""
    return Prior.from_pretrained(path_or_name, device=device, variant=variant, adapter=adapter)
