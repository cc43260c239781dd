"""MR-VAE: a small diffusers `AutoencoderKL` on the same 2-channel (real, imag) normalised MVUE images the
pixel prior models, so a latent prior can be used for *reconstruction*: the decoder output is a complex
image that a SENSE operator can compare with measured k-space (a magnitude VAE would lose the phase the
data consistency needs).

    image x (B, 2, H, W) float32 (percentile-normalised)  ->  z = E(x) · s  (B, c, H/f, W/f)
    z  ->  x̂ = D(z / s)

`s` (`scaling_factor`) is 1 / std of the training latents (measured by `contextmri train-vae`), so the
latent prior sees unit-variance data as the DDPM schedule assumes; f = 2^(len(block_out_channels) − 1).

Checkpoint directory (diffusers style):
    DIR/contextmri.json   {"format": "contextmri-vae", "version": 1, "resolution", "latent_channels",
                           "downsample", "scaling_factor", "training": {...}}
    DIR/vae/              AutoencoderKL (config.json + diffusion_pytorch_model.safetensors)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ..errors import InputError
from ..io_utils import atomic_directory, preset_yaml, write_json_atomic
from ..validate import check_mapping

FORMAT = "contextmri-vae"
FORMAT_VERSION = 1
MANIFEST = "contextmri.json"
PRESET_DIR = Path(__file__).with_name("vae_presets")
_AE_FIXED = {"in_channels", "out_channels", "sample_size", "down_block_types", "up_block_types"}
CONFIG_KEYS = {"resolution", "latent_channels", "block_out_channels", "layers_per_block", "norm_num_groups",
               "mid_block_add_attention"}


class MRVAE(torch.nn.Module):
    """AutoencoderKL + the latent scaling factor. `encode(x)` → scaled latent mean (or a sample with
    `generator`); `decode(z)` → image; `reconstruct(x)` = decode(encode(x))."""

    def __init__(self, ae, manifest: dict):
        super().__init__()
        self.ae = ae
        self.manifest = dict(manifest)

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    @property
    def latent_channels(self) -> int:
        return int(self.ae.config.latent_channels)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.resolution // self.downsample

    @property
    def scaling_factor(self) -> float:
        return float(self.manifest.get("scaling_factor", 1.0))

    def _check(self, x: torch.Tensor, channels: int, multiple: int, what: str):
        """(B, channels, H, W) with H, W multiples of `multiple` (the VAE is convolutional: any such size)."""
        if x.ndim != 4 or x.shape[1] != channels or x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise InputError(f"VAE {what}: expected (B, {channels}, H, W) with H, W divisible by {multiple}, "
                             f"got {tuple(x.shape)}")

    def posterior(self, x: torch.Tensor):
        """diffusers DiagonalGaussianDistribution of the (unscaled) latent of x (B, 2, H, W)."""
        self._check(x, 2, self.downsample, "input")
        return self.ae.encode(x).latent_dist

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, 2, H, W) → scaled latent (B, c, H/f, W/f) float32 (the mean unless `generator` is given)."""
        dist = self.posterior(x)
        z = dist.sample(generator=generator) if generator is not None else dist.mean
        return z.float() * self.scaling_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """scaled latent (B, c, h, w) → image (B, 2, H, W) float32."""
        self._check(z, self.latent_channels, 1, "latent")
        return self.ae.decode(z / self.scaling_factor).sample.float()

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def save_pretrained(self, directory, training: dict | None = None) -> Path:
        """Write DIR/vae/ + DIR/contextmri.json atomically."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.ae.save_pretrained(tmp / "vae", safe_serialization=True)
            manifest = dict(self.manifest)
            if training is not None:
                manifest["training"] = training
            manifest.update(format=FORMAT, version=FORMAT_VERSION, latent_channels=self.latent_channels,
                            downsample=self.downsample)
            write_json_atomic(tmp / MANIFEST, manifest)
        return directory


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_vae_config(name_or_cfg) -> dict:
    """A VAE config dict from a preset name (`recon_core/prior/vae_presets/`), a YAML path or a dict."""
    if isinstance(name_or_cfg, dict):
        cfg, source = copy.deepcopy(name_or_cfg), "VAE config"
    else:
        cfg, source = preset_yaml(name_or_cfg, PRESET_DIR, "VAE")
    check_mapping(cfg, CONFIG_KEYS, ("resolution", "latent_channels", "block_out_channels"), source)
    f = 2 ** (len(cfg["block_out_channels"]) - 1)
    if int(cfg["resolution"]) % f:
        raise InputError(f"{source}: resolution {cfg['resolution']} is not divisible by the downsampling {f}")
    return cfg


def build_vae(name_or_cfg="vae-128", seed: int | None = 0) -> MRVAE:
    """An untrained MR-VAE (AutoencoderKL, 2 in / 2 out channels) from a preset / YAML / dict."""
    from diffusers import AutoencoderKL

    cfg = load_vae_config(name_or_cfg)
    n = len(cfg["block_out_channels"])
    if seed is not None:
        torch.manual_seed(int(seed))
    try:
        ae = AutoencoderKL(in_channels=2, out_channels=2, sample_size=int(cfg["resolution"]),
                           down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                           block_out_channels=tuple(cfg["block_out_channels"]),
                           layers_per_block=int(cfg.get("layers_per_block", 1)),
                           latent_channels=int(cfg["latent_channels"]),
                           norm_num_groups=int(cfg.get("norm_num_groups", 32)),
                           mid_block_add_attention=bool(cfg.get("mid_block_add_attention", False)))
    except (TypeError, ValueError) as exc:
        raise InputError(f"VAE config: {exc}") from exc
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "resolution": int(cfg["resolution"]),
                "scaling_factor": 1.0, "config": json.loads(json.dumps(cfg)), "training": {}}
    return MRVAE(ae, manifest)


def is_vae_dir(directory) -> bool:
    p = Path(directory) / MANIFEST
    try:
        return p.is_file() and json.loads(p.read_text()).get("format") == FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def load_vae(directory, device="cpu") -> MRVAE:
    """Load an MR-VAE checkpoint directory (layout in the module docstring); InputError naming the file
    and the expected layout when something is missing."""
    from diffusers import AutoencoderKL

    directory = Path(directory)
    layout = f"expected {directory}/{MANIFEST} (format {FORMAT!r}) and {directory}/vae/ (AutoencoderKL)"
    man_path = directory / MANIFEST
    if not directory.is_dir():
        raise InputError(f"VAE directory not found: {directory} ({layout})")
    if not man_path.is_file():
        raise InputError(f"{man_path} missing: not a VAE checkpoint ({layout})")
    try:
        manifest = json.loads(man_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{man_path}: not valid JSON ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise InputError(f"{man_path}: key 'format' is {manifest.get('format')!r}, expected {FORMAT!r} ({layout})")
    vdir = directory / "vae"
    if not (vdir / "config.json").is_file() or not any((vdir / f).is_file() for f in
                                                      ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
        raise InputError(f"{vdir}: missing config.json or weights ({layout})")
    try:
        ae = AutoencoderKL.from_pretrained(vdir, local_files_only=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise InputError(f"{vdir}: cannot load the AutoencoderKL ({str(exc).splitlines()[0]})") from exc
    if ae.config.in_channels != 2 or ae.config.out_channels != 2:
        raise InputError(f"{vdir / 'config.json'}: in/out channels {ae.config.in_channels}/{ae.config.out_channels}, "
                         f"expected 2/2 (real, imag)")
    vae = MRVAE(ae, manifest)
    vae.eval()
    vae.requires_grad_(False)
    return vae.to(device)
