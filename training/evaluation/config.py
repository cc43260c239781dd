"""Settings of one evaluation run (`contextmri evaluate`): cells, CFG weights, baselines, the sampler."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from recon_core import baselines, samplers
from recon_core.errors import InputError
from recon_core.masks import parse_mask_spec
from recon_core.metrics import CONVENTIONS
from recon_core.samplers import SamplerConfig

DEFAULT_MASKS = ("uniform1d:4", "uniform1d:8", "poisson2d:8", "poisson2d:15")
DEFAULT_CFG = (0.0, 1.0, 2.0, 3.0)
BASELINES = baselines.methods()                                     # the registry's classical methods
BART_BASELINES = baselines.methods(requires="bart")
CLASSICAL_CS = baselines.methods(regularised=True)                   # "best classical" = max over these
LAMBDA_GRID = {n: s.lambda_grid for n, s in baselines.BASELINES.items() if s.lambda_grid}
METRICS = ("psnr", "ssim", "nmse")
OTHER_SAMPLERS = tuple(m for m in samplers.DIFFUSION_METHODS if m != "dds")   # evaluated beside DDS
# settings only one sampler reads: kept out of the other samplers' cache keys (a new LDPM field does not
# invalidate cached DDS units)
METHOD_ONLY_FIELDS = {name: tuple(f.name for f in dataclasses.fields(spec.options))
                      for name, spec in samplers.SAMPLERS.items() if spec.options is not None and name != "dds"}
CACHE_VERSION = 1


@dataclass
class EvalConfig:
    """Settings of one evaluation run (see module docstring and `contextmri evaluate --help`)."""

    model: str
    data: str
    out: str
    masks: tuple = DEFAULT_MASKS
    cfg: tuple = DEFAULT_CFG
    sampler: SamplerConfig = field(default_factory=SamplerConfig)   # DDS settings (cfg and seed come from this config)
    samples: int = 4            # posterior samples for the uncertainty panel (example slices only)
    limit: int | None = None
    seed: int = 0               # masks (seed·1_000_003 + slice) and DDS sampling
    device: str = "auto"
    batch: int = 8
    split: str = "test"
    val_split: str = "val"
    tune_limit: int = 4
    baselines: tuple | None = None        # None: every baseline, BART's skipped (with a note) without the binary
    oracle_maps: bool = False             # also DDS with the export's fully sampled maps (maps.npy)
    ablations: bool = True
    ablation_cfg: float | None = None
    calibration: tuple = ()              # K values: DDS with K posterior samples, std vs actual error (issue 27)
    ablation_masks: tuple | None = None   # cells for ablations/pathology (None: all)
    pathology: bool = True
    twin: str | None = None
    methods: tuple = ()                   # other prior samplers beside DDS: "scoremri", "ldpm" (on methods_limit slices)
    methods_limit: int = 4
    latent_model: str = "default-latent"  # the latent prior LDPM uses
    convention: str = "fastmri"
    figures: bool = True
    command: str = ""

    @property
    def nfe(self) -> int:
        return self.sampler.nfe

    def dds_settings(self) -> SamplerConfig:
        """The sampler settings every DDS unit of this run uses (seed from this config; cfg set per unit)."""
        return self.sampler.sampler().replace(seed=int(self.seed), samples=1)

    def resolved_baselines(self, log=None) -> tuple:
        """The baselines to run: explicit ones must all be runnable (a missing `bart` is an error);
        the default set drops BART's when the binary is missing (and says so through `log`)."""
        if self.baselines is not None:
            missing = [b for b in self.baselines if not baselines.available(b)]
            if missing:
                tools = sorted({baselines.get_spec(b).requires for b in missing})
                raise InputError(f"baselines {', '.join(missing)} need the {', '.join(map(repr, tools))} binary, which "
                                 f"is not on PATH (Debian: apt-get install {' '.join(tools)})")
            return tuple(self.baselines)
        if all(baselines.available(b) for b in BASELINES):
            return BASELINES
        if log:
            log("evaluate: 'bart' is not on PATH: BART baselines (bart-w, bart-tv) skipped")
        return tuple(b for b in BASELINES if b not in BART_BASELINES)

    def check(self) -> None:
        if not self.masks:
            raise InputError("masks: expected at least one KIND:ACCEL")
        for m in self.masks:
            parse_mask_spec(m)
        if not self.cfg or any((not math.isfinite(w)) or w < 0 for w in self.cfg):
            raise InputError(f"cfg: expected a list of weights ≥ 0, got {list(self.cfg)}")
        if not isinstance(self.sampler, SamplerConfig):
            raise InputError(f"sampler: expected a SamplerConfig, got {type(self.sampler).__name__}")
        self.sampler.validate()
        if self.limit is not None and self.limit < 1:
            raise InputError(f"limit must be ≥ 1, got {self.limit}")
        if self.batch < 1 or self.samples < 1 or self.tune_limit < 1:
            raise InputError("batch, samples and tune-limit must be ≥ 1")
        known = baselines.methods()      # the registry now (run-time registrations included)
        bad = [b for b in (self.baselines or ()) if b not in known]
        if bad:
            raise InputError(f"baselines: unknown {bad}, expected some of {', '.join(known)}")
        others = tuple(m for m in samplers.diffusion_methods() if m != "dds")
        bad = [m for m in self.methods if m not in others]
        if bad:
            raise InputError(f"methods: unknown {bad}, expected some of {', '.join(others)}")
        if self.methods_limit < 1:
            raise InputError(f"methods-limit must be ≥ 1, got {self.methods_limit}")
        if self.convention not in CONVENTIONS:
            raise InputError(f"convention: expected one of {CONVENTIONS}, got {self.convention!r}")
        if self.ablation_masks is not None and not set(self.ablation_masks) <= set(self.masks):
            raise InputError(f"ablation masks {list(self.ablation_masks)} must be among --masks {list(self.masks)}")
        if any(int(k) < 2 for k in self.calibration):
            raise InputError(f"calibration: sample counts must be ≥ 2, got {list(self.calibration)}")
        if self.ablation_cfg is not None and self.ablation_cfg < 0:
            raise InputError(f"ablation cfg must be ≥ 0, got {self.ablation_cfg}")


