"""Evaluation harness: DDS (CFG sweep, metadata ablations, pathology, unconditional twin) vs classical
baselines on a held-out simulator split, in the ContextMRI Table-1 layout.

Per cell (mask kind × acceleration, e.g. "uniform1d:8"), for the selected test slices:
- the fully sampled k-space of the export (`recon_core.sim.export.load_split`) is undersampled with a
  seeded mask per slice (`recon_core.masks.make_mask`, seed = `seed`·1_000_003 + slice index), coil
  maps are estimated by ESPIRiT from the undersampled data's ACS (`recon_core.coils.espirit_maps`);
- baselines (`recon_core.baselines`): zero-filled, SENSE, L1-wavelet and TV, λ of the last two tuned
  per cell on the validation split (grid `LAMBDA_GRID`, best mean PSNR on `tune_limit` val slices);
- DDS (`recon_core.dds.dds_reconstruct`) for every CFG weight w (w = 0: unconditional branch only);
- metadata ablations at the cell's best w > 0 (or `ablation_cfg`), cumulative: all fields →
  − MR params (sequence, TR, TE, TI, flip angle, field strength) → − contrast → − slice → unconditional;
- pathology: correct labels vs wrong ones (none ↔ tumour, lesions ↔ tumour) vs unknown, same w;
- optional unconditional twin model (`twin`): its DDS (no conditioning) on the same cells.
Metrics (`recon_core.metrics`, convention "fastmri" by default: magnitudes, data range = max |ref|)
against the export's reference (MVUE of the full k-space, scanner units); mean ± std over slices.

Outputs in OUTDIR: results.json, results.md, fig_psnr_vs_cfg.png, examples_<cell>.png.
Every unit of work (method × cell × chunk of slices) is cached in OUTDIR/.cache/<hash>.npz keyed by
everything that determines it, so an interrupted run continues where it stopped (delete .cache to
recompute; do not commit it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import InputError

DEFAULT_MASKS = ("uniform1d:4", "uniform1d:8", "poisson2d:8", "poisson2d:15")
DEFAULT_CFG = (0.0, 1.0, 2.0, 3.0)
BASELINES = ("zerofilled", "sense", "l1wavelet", "tv")
LAMBDA_GRID = {"l1wavelet": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), "tv": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)}
MR_PARAM_FIELDS = ("sequence", "tr", "te", "ti", "flip_angle", "field_strength")
ABLATIONS = ("all", "-mr", "-mr-contrast", "-mr-contrast-slice", "uncond")
ABLATION_LABELS = {"all": "all metadata", "-mr": "− MR params", "-mr-contrast": "− MR params − contrast",
                   "-mr-contrast-slice": "− MR params − contrast − slice", "uncond": "unconditional (w = 0)"}
WRONG_PATHOLOGY = {"none": "tumour", "wm_lesions": "tumour", "tumour": "wm_lesions"}
METRICS = ("psnr", "ssim", "nmse")
CACHE_VERSION = 1


@dataclass
class EvalConfig:
    """Settings of one evaluation run (see module docstring and `contextmri evaluate --help`)."""

    model: str
    data: str
    out: str
    masks: tuple = DEFAULT_MASKS
    cfg: tuple = DEFAULT_CFG
    nfe: int = 50
    eta: float = 0.8
    gamma: float = 5.0
    cg_iters: int = 5
    samples: int = 4            # posterior samples for the uncertainty panel (example slices only)
    limit: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    batch: int = 8
    split: str = "test"
    val_split: str = "val"
    tune_limit: int = 4
    baselines: tuple = BASELINES
    ablations: bool = True
    ablation_cfg: float | None = None
    ablation_masks: tuple | None = None   # cells for ablations/pathology (None: all)
    pathology: bool = True
    twin: str | None = None
    convention: str = "fastmri"
    figures: bool = True
    command: str = ""

    def check(self) -> None:
        from .masks import parse_mask_spec
        from .metrics import CONVENTIONS

        if not self.masks:
            raise InputError("masks: expected at least one KIND:ACCEL")
        for m in self.masks:
            parse_mask_spec(m)
        if not self.cfg or any((not math.isfinite(w)) or w < 0 for w in self.cfg):
            raise InputError(f"cfg: expected a list of weights ≥ 0, got {list(self.cfg)}")
        if self.nfe < 1:
            raise InputError(f"nfe must be ≥ 1, got {self.nfe}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"limit must be ≥ 1, got {self.limit}")
        if self.batch < 1 or self.samples < 1 or self.tune_limit < 1:
            raise InputError("batch, samples and tune-limit must be ≥ 1")
        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise InputError(f"baselines: unknown {bad}, expected some of {', '.join(BASELINES)}")
        if self.convention not in CONVENTIONS:
            raise InputError(f"convention: expected one of {CONVENTIONS}, got {self.convention!r}")
        if self.ablation_masks is not None and not set(self.ablation_masks) <= set(self.masks):
            raise InputError(f"ablation masks {list(self.ablation_masks)} must be among --masks {list(self.masks)}")
        if self.ablation_cfg is not None and self.ablation_cfg < 0:
            raise InputError(f"ablation cfg must be ≥ 0, got {self.ablation_cfg}")


# ------------------------------------------------------------------------------------------ helpers
def cell_label(spec: str) -> str:
    kind, accel = spec.split(":")
    return f"{kind} ×{float(accel):g}"


def select_slices(n: int, limit: int | None) -> np.ndarray:
    """`limit` slice indices spread evenly over the split (all when limit is None or ≥ n)."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, int(limit)).round().astype(int))


def summarise(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "n": int(v.size)}


def paired(a, b) -> dict:
    """Per-slice paired difference a − b: mean, standard error, wins (a > b)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = d.size
    return {"mean": float(d.mean()), "sem": float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
            "wins": int((d > 0).sum()), "n": int(n)}


def drop_fields(record, variant: str):
    """Cumulative ablation of a MetadataRecord (see module docstring)."""
    kw = {}
    if variant in ("-mr", "-mr-contrast", "-mr-contrast-slice"):
        kw.update({f: None for f in MR_PARAM_FIELDS})
    if variant in ("-mr-contrast", "-mr-contrast-slice"):
        kw["contrast"] = None
    if variant == "-mr-contrast-slice":
        kw["slice"] = None
    return record.replace(**kw) if kw else record


def pathology_kind(record) -> str:
    labels = [s.lower() for s in (record.pathology or [])]
    if not labels:
        return "none"
    if any("lesion" in s for s in labels):
        return "wm_lesions"
    return "tumour"


def wrong_pathology(record):
    from .sim.pathology import LABELS

    return record.replace(pathology=list(LABELS[WRONG_PATHOLOGY[pathology_kind(record)]]))


def _atomic_write(path: str, write_fn, suffix: str = "") -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", suffix=suffix, dir=d)
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _key(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class CellData:
    spec: str
    kind: str
    accel: float
    ksp: np.ndarray            # (L, C, ny, nx) complex64 undersampled (zeros elsewhere), scanner units
    mask: np.ndarray           # (L, ny, nx) bool
    maps: np.ndarray           # (L, C, ny, nx) complex64 ESPIRiT from the undersampled ACS
    ref: np.ndarray            # (L, ny, nx) complex64
    realised_accel: float
    slices: np.ndarray         # split indices


# ------------------------------------------------------------------------------------------ the run
class Evaluation:
    """Runs an `EvalConfig`; `run()` returns the results dict and writes OUTDIR files."""

    def __init__(self, config: EvalConfig, progress: bool = True, log=None):
        config.check()
        self.c = config
        self.progress = progress
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        from .sim.export import load_split

        self.test = load_split(config.data, config.split)
        if self.test.kspace is None or self.test.reference is None:
            raise InputError(f"{config.data}/{config.split}: the split has no kspace.npy/reference.npy "
                             f"(export val/test splits with k-space)")
        self.val = None
        if any(b in LAMBDA_GRID for b in config.baselines):
            try:
                self.val = load_split(config.data, config.val_split)
                if self.val.kspace is None or self.val.reference is None:
                    self.val = None
            except InputError:
                self.val = None
            if self.val is None:
                self.log(f"evaluate: no usable {config.val_split!r} split with k-space: λ not tuned (defaults)")
        self.slices = select_slices(len(self.test), config.limit)
        self.records = [self.test.records[i] for i in self.slices]
        ny, nx = self.test.kspace.shape[-2:]
        self.shape = (int(ny), int(nx))
        os.makedirs(config.out, exist_ok=True)
        self.cache = os.path.join(config.out, ".cache")
        os.makedirs(self.cache, exist_ok=True)
        self.examples = self._example_slices()
        self._cells: dict = {}
        self._prior = None
        self._twin = None
        self.model_id = self._model_id(config.model)
        self.twin_id = self._model_id(config.twin) if config.twin else None
        self.warnings: list[str] = []
        self.timings: dict = {}
        self._bar = None

    # ---- identity of inputs (cache keys) -----------------------------------------------------------
    @staticmethod
    def _model_id(path) -> dict:
        from .prior.checkpoint import resolve_model_path

        p = resolve_model_path(path)
        sig = []
        for root, _, files in os.walk(p):
            for f in sorted(files):
                st = os.stat(os.path.join(root, f))
                sig.append((os.path.relpath(os.path.join(root, f), p), st.st_size, int(st.st_mtime)))
        return {"path": str(p), "sig": _key({"files": sorted(sig)})}

    def _data_id(self) -> dict:
        return {"data": os.path.abspath(self.c.data), "split": self.c.split, "info": _key(self.test.info)}

    def _example_slices(self) -> list:
        """Position (in the selection) of the example slice: a pathological one if any, else the middle."""
        pos = [i for i, r in enumerate(self.records) if pathology_kind(r) != "none"]
        return [pos[len(pos) // 2] if pos else len(self.records) // 2]

    # ---- priors ------------------------------------------------------------------------------------
    @property
    def prior(self):
        if self._prior is None:
            from .device import resolve_device
            from .prior import load_prior

            self._prior = load_prior(self.c.model, device=resolve_device(self.c.device))
        return self._prior

    @property
    def twin(self):
        if self._twin is None:
            from .device import resolve_device
            from .prior import load_prior

            self._twin = load_prior(self.c.twin, device=resolve_device(self.c.device))
        return self._twin

    # ---- cells ---------------------------------------------------------------------------------------
    def _masks(self, kind, accel, split_indices, offset=0):
        """(L, ny, nx) bool masks, one per slice (seed = seed·1_000_003 + offset + index), cached
        (sigpy's Poisson-disc generator can take seconds per mask)."""
        from .masks import make_mask

        seeds = [self.c.seed * 1_000_003 + offset + int(i) for i in split_indices]

        def compute():
            out = [make_mask(kind, self.shape, accel, seed=s) for s in seeds]
            return {"mask": np.stack([m.mask for m in out]), "accel": np.asarray([m.accel for m in out])}

        r = self.cached({"stage": "masks", "kind": kind, "accel": accel, "shape": self.shape, "seeds": seeds}, compute)
        return r["mask"].astype(bool), float(np.mean(r["accel"]))

    def _undersample(self, split, idx, kind, accel, offset):
        import torch

        from .coils import espirit_maps

        mask, racc = self._masks(kind, accel, idx, offset)
        full = np.asarray(split.kspace[idx])
        ksp = (full * mask[:, None]).astype(np.complex64)
        with torch.no_grad():
            maps = espirit_maps(torch.from_numpy(ksp), mask=mask).cpu().numpy().astype(np.complex64)
        ref = np.asarray(split.reference[idx]).astype(np.complex64)
        return ksp, mask, maps, ref, racc

    def cell(self, spec: str) -> CellData:
        if spec not in self._cells:
            from .masks import parse_mask_spec

            kind, accel = parse_mask_spec(spec)
            t0 = time.perf_counter()
            ksp, mask, maps, ref, racc = self._undersample(self.test, self.slices, kind, accel, 0)
            self.timings.setdefault("espirit_s", 0.0)
            self.timings["espirit_s"] += time.perf_counter() - t0
            self._cells[spec] = CellData(spec, kind, accel, ksp, mask, maps, ref, racc, self.slices)
        return self._cells[spec]

    # ---- cache -------------------------------------------------------------------------------------
    def cached(self, key: dict, fn) -> dict:
        key = {**key, "cache_version": CACHE_VERSION}
        path = os.path.join(self.cache, _key(key) + ".npz")
        if os.path.exists(path):
            try:
                with np.load(path, allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except (OSError, ValueError):
                os.unlink(path)
        res = fn()
        _atomic_write(path, lambda tmp: np.savez(tmp, **res), suffix=".npz")
        _atomic_write(path[:-4] + ".json", lambda tmp: _write_text(tmp, json.dumps(key, default=str)))
        return res

    def _metrics(self, ref, rec) -> dict:
        from .metrics import all_metrics

        m = all_metrics(ref, rec, self.c.convention)
        return {k: np.asarray(m[k], np.float64) for k in METRICS}

    def _with_examples(self, res: dict, rec: np.ndarray, lo: int, std=None) -> dict:
        for p in self.examples:
            if lo <= p < lo + len(rec):
                res[f"img_{p}"] = rec[p - lo].astype(np.complex64)
                if std is not None:
                    res[f"std_{p}"] = std[p - lo].astype(np.float32)
        return res

    # ---- baselines -----------------------------------------------------------------------------------
    def tune_lambda(self, spec: str, method: str) -> float | None:
        from .baselines import DEFAULT_LAMBDA, reconstruct
        from .masks import parse_mask_spec

        if self.val is None:
            return DEFAULT_LAMBDA[method]
        kind, accel = parse_mask_spec(spec)
        vidx = select_slices(len(self.val), self.c.tune_limit)
        key = {"stage": "tune", "method": method, "cell": spec, "grid": LAMBDA_GRID[method],
               "val": {"data": os.path.abspath(self.c.data), "split": self.c.val_split, "info": _key(self.val.info)},
               "slices": vidx.tolist(), "seed": self.c.seed, "convention": self.c.convention}

        def compute():
            ksp, mask, maps, ref, _ = self._undersample(self.val, vidx, kind, accel, 10_000_000)
            ps = [float(np.mean(self._metrics(ref, reconstruct(method, ksp, maps, mask, lamda=lam))["psnr"]))
                  for lam in LAMBDA_GRID[method]]
            return {"psnr": np.asarray(ps)}

        ps = self.cached(key, compute)["psnr"]
        return float(LAMBDA_GRID[method][int(np.argmax(ps))])

    def baseline(self, spec: str, method: str) -> dict:
        from .baselines import reconstruct

        lam = self.tune_lambda(spec, method) if method in LAMBDA_GRID else None
        key = {"stage": "baseline", "method": method, "cell": spec, "lambda": lam, "data": self._data_id(),
               "slices": self.slices.tolist(), "seed": self.c.seed, "convention": self.c.convention}

        def compute():
            cd = self.cell(spec)
            t0 = time.perf_counter()
            rec = reconstruct(method, cd.ksp, cd.maps, cd.mask, lamda=lam)
            dt = time.perf_counter() - t0
            res = self._metrics(cd.ref, rec)
            res["seconds"] = np.asarray(dt / len(rec))
            return self._with_examples(res, rec, 0)

        res = self.cached(key, compute)
        if lam is not None:
            res["lambda"] = np.asarray(lam)
        return res

    # ---- DDS -----------------------------------------------------------------------------------------
    def dds(self, spec: str, w: float, variant: str = "all", model: str = "main", samples: int = 1,
            positions=None) -> dict:
        """DDS over the selected slices (or `positions` within them), chunked and cached."""
        from .dds import dds_reconstruct

        pos = np.arange(len(self.slices)) if positions is None else np.asarray(positions)
        params = {"nfe": self.c.nfe, "eta": self.c.eta, "gamma": self.c.gamma, "cg_iters": self.c.cg_iters,
                  "seed": self.c.seed, "precision": self.c.precision}
        mid = self.model_id if model == "main" else self.twin_id
        base = {"stage": "dds", "cell": spec, "cfg": float(w), "variant": variant, "model": mid, "samples": samples,
                "params": params, "data": self._data_id(), "convention": self.c.convention}
        parts = []
        for lo in range(0, len(pos), self.c.batch):
            chunk = pos[lo:lo + self.c.batch]
            key = {**base, "slices": self.slices[chunk].tolist()}

            def compute(chunk=chunk):
                cd = self.cell(spec)
                prior = self.prior if model == "main" else self.twin
                recs = self._records(chunk, variant)
                r = dds_reconstruct(prior, cd.ksp[chunk], cd.maps[chunk], cd.mask[chunk], recs, cfg=w,
                                    nfe=self.c.nfe, eta=self.c.eta, gamma=self.c.gamma, cg_iters=self.c.cg_iters,
                                    samples=samples, seed=self.c.seed, device=self.c.device,
                                    precision=self.c.precision)
                res = self._metrics(cd.ref[chunk], r.image)
                res["seconds"] = np.asarray(r.timings["total"] / len(chunk))
                res["scale_ratio"] = r.scale / np.asarray(self.test.scale[self.slices[chunk]], np.float32)
                res["pos"] = np.asarray(chunk)
                out = {}
                for j, p in enumerate(chunk):
                    if int(p) in self.examples:
                        out[f"img_{int(p)}"] = r.image[j]
                        if r.std is not None:
                            out[f"std_{int(p)}"] = r.std[j]
                res.update(out)
                return res

            parts.append(self.cached(key, compute))
            self._tick()
        merged = {k: np.concatenate([np.atleast_1d(p[k]) for p in parts]) for k in METRICS + ("scale_ratio",)}
        merged["seconds"] = np.asarray(float(np.mean([float(p["seconds"]) for p in parts])))
        for p in parts:
            for k, v in p.items():
                if k.startswith(("img_", "std_")):
                    merged[k] = v
        return merged

    def _records(self, chunk, variant):
        recs = [self.records[int(p)] for p in chunk]
        if variant == "none":
            return None
        if variant == "wrong-pathology":
            return [wrong_pathology(r) for r in recs]
        if variant == "unknown-pathology":
            return [r.replace(pathology=None) for r in recs]
        return [drop_fields(r, variant) for r in recs]

    # ---- progress ----------------------------------------------------------------------------------
    def _tick(self):
        if self._bar is not None:
            self._bar.update(1)

    def _n_chunks(self, n=None):
        n = len(self.slices) if n is None else n
        return math.ceil(n / self.c.batch)

    # ---- the whole run -----------------------------------------------------------------------------
    def _ablate(self, spec) -> bool:
        return self.c.ablation_masks is None or spec in self.c.ablation_masks

    def _planned_runs(self, cfgs, w_ab, spec=None) -> set:
        """The (w, variant, model) DDS runs of one cell (w_ab: the ablation/pathology weight)."""
        c = self.c
        runs = {(w, "uncond" if w == 0 else "all", "main") for w in cfgs}
        if w_ab is not None and w_ab > 0 and (spec is None or self._ablate(spec)):
            if c.ablations:
                runs |= {(w_ab, v, "main") for v in ABLATIONS if v != "uncond"} | {(0.0, "uncond", "main")}
            if c.pathology:
                runs |= {(w_ab, v, "main") for v in ("all", "wrong-pathology", "unknown-pathology")}
                runs |= {(0.0, "uncond", "main")}
        if c.twin:
            runs.add((0.0, "none", "twin"))
        return runs

    def run(self) -> dict:
        from tqdm.auto import tqdm

        c = self.c
        t_start = time.perf_counter()
        cfgs = [float(w) for w in c.cfg]
        cond = [w for w in cfgs if w > 0]
        w_guess = c.ablation_cfg if c.ablation_cfg is not None else (cond[0] if cond else None)
        total = sum(len(self._planned_runs(cfgs, w_guess, spec)) * self._n_chunks() + (1 if c.figures else 0)
                    for spec in c.masks)
        self._bar = tqdm(total=total, desc="evaluate (DDS chunks)", disable=not self.progress,
                         unit="chunk", file=sys.stderr)
        cells = []
        try:
            for spec in c.masks:
                self._bar.set_postfix_str(spec)
                cells.append(self._run_cell(spec, cfgs))
        finally:
            self._bar.close()
            self._bar = None
        self.timings["total_s"] = time.perf_counter() - t_start
        results = self._assemble(cells, cfgs)
        self.write(results)
        return results

    def _run_cell(self, spec, cfgs) -> dict:
        c = self.c
        cell = {"mask": spec, "label": cell_label(spec), "methods": {}, "per_slice": {}, "images": {}}
        memo = {}

        def run(w, variant, model="main"):
            k = (float(w), variant, model)
            if k not in memo:
                memo[k] = self.dds(spec, float(w), variant, model=model)
            return memo[k]

        for method in c.baselines:
            r = self.baseline(spec, method)
            cell["methods"][method] = self._entry(r, {"lambda": float(r["lambda"]) if "lambda" in r else None})
            cell["per_slice"][method] = {k: r[k].tolist() for k in METRICS}
            cell["images"][method] = r
        dds = {}
        for w in cfgs:
            r = dds[w] = run(w, "uncond" if w == 0 else "all")
            name = f"dds_w{w:g}"
            cell["methods"][name] = self._entry(r, {"cfg": w})
            cell["per_slice"][name] = {k: r[k].tolist() for k in METRICS}
            cell["images"][name] = r
        cd = self.cell(spec)
        cell["realised_accel"] = cd.realised_accel
        cond = [w for w in cfgs if w > 0]
        best_w = max(cond, key=lambda w: float(np.mean(dds[w]["psnr"]))) if cond else None
        cell["best_cfg"] = best_w
        cell["scale_ratio"] = summarise(next(iter(dds.values()))["scale_ratio"])
        w_ab = c.ablation_cfg if c.ablation_cfg is not None else best_w
        if not self._ablate(spec):
            w_ab = None
        if c.ablations and w_ab is not None and w_ab > 0:
            abl = {v: run(0.0, "uncond") if v == "uncond" else run(w_ab, v) for v in ABLATIONS}
            cell["ablations"] = {"cfg": w_ab, "variants": {v: self._entry(abl[v]) for v in ABLATIONS},
                                 "minus_all": {v: paired(abl[v]["psnr"], abl["all"]["psnr"]) for v in ABLATIONS if v != "all"},
                                 "per_slice_psnr": {v: abl[v]["psnr"].tolist() for v in ABLATIONS}}
        if c.pathology and w_ab is not None and w_ab > 0:
            correct, wrong = run(w_ab, "all"), run(w_ab, "wrong-pathology")
            unknown, unc = run(w_ab, "unknown-pathology"), run(0.0, "uncond")
            kinds = [pathology_kind(r) for r in self.records]
            cell["pathology"] = {"cfg": w_ab, "variants": {"correct": self._entry(correct), "wrong": self._entry(wrong),
                                                           "unknown": self._entry(unknown), "uncond": self._entry(unc)},
                                 "correct_minus_wrong": paired(correct["psnr"], wrong["psnr"]),
                                 "wrong_minus_uncond": paired(wrong["psnr"], unc["psnr"]),
                                 "slices_with_pathology": int(sum(k != "none" for k in kinds))}
        if c.twin:
            tw = run(0.0, "none", "twin")
            ref_w = best_w if best_w is not None else cfgs[0]
            cell["twin"] = {"twin": self._entry(tw), "cond_best": self._entry(dds[ref_w]), "cfg": ref_w,
                            "cond_minus_twin": paired(dds[ref_w]["psnr"], tw["psnr"]),
                            "cond_w0_minus_twin": paired(dds[0.0]["psnr"], tw["psnr"]) if 0.0 in dds else None}
            cell["images"]["twin"] = tw
        if c.figures:
            w_ex = best_w if best_w is not None else cfgs[0]
            cell["images"]["uncert"] = self.dds(spec, w_ex, "all" if w_ex > 0 else "uncond", samples=c.samples,
                                                positions=self.examples)
            cell["example_cfg"] = w_ex
        return cell

    @staticmethod
    def _entry(r, extra=None) -> dict:
        e = {k: summarise(r[k]) for k in METRICS}
        e["seconds_per_slice"] = float(r["seconds"]) if "seconds" in r else None
        if extra:
            e.update({k: v for k, v in extra.items() if v is not None})
        return e

    # ---- assembly and outputs ----------------------------------------------------------------------
    def _assemble(self, cells, cfgs) -> dict:
        from . import __version__

        c = self.c
        man = {}
        try:
            man = {k: self.prior.manifest.get(k) for k in ("name", "preset", "resolution", "conditioned", "training")
                   if k in self.prior.manifest}
            if self.prior.resolution not in self.shape:
                self.warnings.append(f"model resolution {self.prior.resolution} differs from the data matrix {self.shape}")
        except Exception as exc:  # pragma: no cover - manifest is informative only
            man = {"error": str(exc)}
        summary = []
        for cell in cells:
            m = cell["methods"]
            s = {"mask": cell["mask"]}
            if 0.0 in cfgs and cell.get("best_cfg") is not None:
                s["best_cfg"] = cell["best_cfg"]
                s["cond_best_minus_uncond_psnr"] = paired(cell["per_slice"][f"dds_w{cell['best_cfg']:g}"]["psnr"],
                                                          cell["per_slice"]["dds_w0"]["psnr"])
            cs = [b for b in ("l1wavelet", "tv") if b in m]
            if cs:
                best_cs = max(cs, key=lambda b: m[b]["psnr"]["mean"])
                best_dds = max((k for k in m if k.startswith("dds_")), key=lambda k: m[k]["psnr"]["mean"])
                s["best_cs"] = best_cs
                s["best_dds"] = best_dds
                s["dds_minus_best_cs_psnr"] = paired(cell["per_slice"][best_dds]["psnr"], cell["per_slice"][best_cs]["psnr"])
            summary.append(s)
        public = [{k: v for k, v in cell.items() if k != "images"} for cell in cells]
        return {"version": 1, "command": c.command, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                              for k, v in asdict(c).items()},
                "model": {**self.model_id, "manifest": man}, "twin": self.twin_id,
                "data": {"dir": os.path.abspath(c.data), "split": c.split, "n_slices": int(len(self.slices)),
                         "slice_indices": self.slices.tolist(), "matrix": list(self.shape),
                         "coils": int(self.test.kspace.shape[1]),
                         "subject_seeds": sorted({int(self.test.index[i]["subject_seed"]) for i in self.slices}),
                         "val_tuning_slices": int(min(c.tune_limit, len(self.val))) if self.val is not None else 0},
                "metric_convention": c.convention, "cells": public, "summary": summary,
                "warnings": self.warnings, "timings": self.timings, "_images": cells}

    def write(self, results: dict) -> None:
        out = self.c.out
        cells = results.pop("_images")
        _atomic_write(os.path.join(out, "results.json"),
                      lambda tmp: _write_text(tmp, json.dumps(results, indent=1, default=_json_default)))
        md = render_markdown(results)
        _atomic_write(os.path.join(out, "results.md"), lambda tmp: _write_text(tmp, md))
        if self.c.figures:
            figures(self, results, cells)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


# ------------------------------------------------------------------------------------------ markdown
def _fmt(e, metric):
    s = e.get(metric) if e else None
    if not s or s.get("mean") is None:
        return "–"
    if metric == "nmse":
        return f"{s['mean']:.4f} ± {s['std']:.4f}"
    if metric == "ssim":
        return f"{s['mean']:.3f} ± {s['std']:.3f}"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def _method_label(name):
    labels = {"zerofilled": "Zero-filled", "sense": "SENSE (CG)", "l1wavelet": "L1-wavelet", "tv": "TV"}
    if name in labels:
        return labels[name]
    if name.startswith("dds_w"):
        w = float(name[5:])
        return "DDS uncond (w = 0)" if w == 0 else f"DDS cond (w = {w:g})"
    return name


def _pm(p, unit=" dB"):
    if not p:
        return "–"
    sem = f" ± {p['sem']:.2f}" if p.get("sem") is not None else ""
    return f"{p['mean']:+.2f}{sem}{unit} ({p['wins']}/{p['n']} slices better)"


def render_markdown(res: dict) -> str:
    cells = res["cells"]
    c = res["config"]
    L = []
    L.append("# Evaluation results\n")
    L.append(f"Command: `{res['command']}`\n" if res.get("command") else "")
    L.append(f"Model: `{res['model']['path']}` {json.dumps(res['model'].get('manifest', {}), default=str)}  ")
    L.append(f"Data: `{res['data']['dir']}` split `{res['data']['split']}`, {res['data']['n_slices']} slices, "
             f"matrix {res['data']['matrix'][0]}×{res['data']['matrix'][1]}, {res['data']['coils']} coils, "
             f"{len(res['data']['subject_seeds'])} subjects (seeds disjoint from training by construction).  ")
    L.append(f"DDS: NFE {c['nfe']}, η {c['eta']}, γ {c['gamma']}, {c['cg_iters']} CG iterations, seed {c['seed']}, "
             f"{c['precision']}; ESPIRiT maps from each undersampled scan's ACS; one seeded mask per slice.  ")
    conv = ("magnitudes, data range = max |reference| (fastMRI)" if res["metric_convention"] == "fastmri"
            else "magnitudes min–max normalised to [0, 1]; SSIM data range 2 (ContextMRI code)")
    L.append(f"Metrics: PSNR (dB), SSIM, NMSE on {conv}; mean ± std over slices. "
             f"λ of L1-wavelet/TV tuned per cell on {res['data']['val_tuning_slices']} validation slices.\n")
    for w in res.get("warnings") or []:
        L.append(f"> warning: {w}\n")
    # Table 1
    L.append("## Table 1: reconstruction quality per mask × acceleration\n")
    head = "| Method | " + " | ".join(f"{cell['label']} PSNR | SSIM | NMSE" for cell in cells) + " |"
    L.append(head)
    L.append("|---|" + "---|---|---|" * len(cells))
    names = []
    for cell in cells:
        for n in cell["methods"]:
            if n not in names:
                names.append(n)
    best = {}
    for i, cell in enumerate(cells):
        for metric, better in (("psnr", max), ("ssim", max), ("nmse", min)):
            vals = {n: e[metric]["mean"] for n, e in cell["methods"].items() if e[metric]["mean"] is not None}
            if vals:
                best[(i, metric)] = better(vals, key=vals.get)
    for n in names:
        row = [_method_label(n)]
        for i, cell in enumerate(cells):
            e = cell["methods"].get(n)
            for metric in METRICS:
                v = _fmt(e, metric)
                row.append(f"**{v}**" if best.get((i, metric)) == n else v)
        L.append("| " + " | ".join(row) + " |")
    lam = []
    for cell in cells:
        for b in ("l1wavelet", "tv"):
            e = cell["methods"].get(b)
            if e and e.get("lambda") is not None:
                lam.append(f"{cell['label']} {b} λ = {e['lambda']:g}")
    if lam:
        L.append("\nTuned λ: " + "; ".join(lam) + ".")
    L.append("\nRealised acceleration (mean over slices): " +
             "; ".join(f"{cell['label']} {cell['realised_accel']:.2f}" for cell in cells) + ".")
    L.append("Scale estimate / true 99th percentile (DDS normalisation): " +
             "; ".join(f"{cell['label']} {cell['scale_ratio']['mean']:.3f} ± {cell['scale_ratio']['std']:.3f}"
                       for cell in cells if cell.get("scale_ratio", {}).get("mean") is not None) + ".\n")
    # headline
    L.append("## Headline comparisons (paired over slices, PSNR)\n")
    for s in res["summary"]:
        parts = [f"**{cell_label(s['mask'])}**"]
        if "cond_best_minus_uncond_psnr" in s:
            parts.append(f"best-CFG conditional (w = {s['best_cfg']:g}) − unconditional: {_pm(s['cond_best_minus_uncond_psnr'])}")
        if "dds_minus_best_cs_psnr" in s:
            parts.append(f"best DDS ({_method_label(s['best_dds'])}) − best CS ({_method_label(s['best_cs'])}): "
                         f"{_pm(s['dds_minus_best_cs_psnr'])}")
        L.append("- " + "; ".join(parts))
    L.append("")
    # ablations
    if any("ablations" in cell for cell in cells):
        L.append("## Metadata ablation (cumulative removal; DDS at the cell's best w)\n")
        cl = [cell for cell in cells if "ablations" in cell]
        L.append("| Metadata | " + " | ".join(f"{cell['label']} (w = {cell['ablations']['cfg']:g}) PSNR | SSIM | − all"
                                              for cell in cl) + " |")
        L.append("|---|" + "---|---|---|" * len(cl))
        for v in ABLATIONS:
            row = [ABLATION_LABELS[v]]
            for cell in cl:
                e = cell["ablations"]["variants"][v]
                row += [_fmt(e, "psnr"), _fmt(e, "ssim"),
                        "–" if v == "all" else _pm(cell["ablations"]["minus_all"][v], " dB")]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
    if any("pathology" in cell for cell in cells):
        L.append("## Pathology in the condition: correct vs wrong vs unknown vs unconditional\n")
        cl = [cell for cell in cells if "pathology" in cell]
        L.append("| Pathology | " + " | ".join(f"{cell['label']} PSNR | SSIM" for cell in cl) + " |")
        L.append("|---|" + "---|---|" * len(cl))
        for v, lab in (("correct", "correct labels"), ("wrong", "wrong labels"), ("unknown", "unknown (None)"),
                       ("uncond", "unconditional (w = 0)")):
            row = [lab]
            for cell in cl:
                e = cell["pathology"]["variants"][v]
                row += [_fmt(e, "psnr"), _fmt(e, "ssim")]
            L.append("| " + " | ".join(row) + " |")
        L.append("")
        for cell in cl:
            p = cell["pathology"]
            L.append(f"- {cell['label']} (w = {p['cfg']:g}, {p['slices_with_pathology']} slices with pathology): "
                     f"correct − wrong {_pm(p['correct_minus_wrong'])}; wrong − uncond {_pm(p['wrong_minus_uncond'])}")
        L.append("")
    if any("twin" in cell for cell in cells):
        L.append(f"## Conditional model vs unconditional twin (`{res['twin']['path']}`)\n")
        L.append("| Cell | twin PSNR | conditional best-w PSNR | cond − twin | cond w = 0 − twin |")
        L.append("|---|---|---|---|---|")
        for cell in cells:
            if "twin" in cell:
                t = cell["twin"]
                L.append(f"| {cell['label']} | {_fmt(t['twin'], 'psnr')} | {_fmt(t['cond_best'], 'psnr')} (w = {t['cfg']:g}) | "
                         f"{_pm(t['cond_minus_twin'])} | {_pm(t['cond_w0_minus_twin'])} |")
        L.append("")
    tm = res.get("timings", {})
    L.append("## Time\n")
    sec = []
    for cell in cells:
        for n, e in cell["methods"].items():
            if e.get("seconds_per_slice") is not None:
                sec.append(f"{cell['label']} {_method_label(n)} {e['seconds_per_slice']:.2f} s")
    L.append("Seconds per slice (this run; cached units report their original time): " + "; ".join(sec) + ".  ")
    if "total_s" in tm:
        L.append(f"Wall time of this invocation: {tm['total_s']:.0f} s.\n")
    L.append("Figures: `fig_psnr_vs_cfg.png` (PSNR vs CFG per cell), `examples_<cell>.png` (reference | zero-filled | "
             "best CS | DDS uncond | DDS cond | |error| | uncertainty).\n")
    return "\n".join(L)


# ------------------------------------------------------------------------------------------ figures
def _safe(spec: str) -> str:
    return spec.replace(":", "x").replace(".", "p")


def figures(ev: Evaluation, res: dict, cells: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = ev.c.out
    cfgs = [float(w) for w in ev.c.cfg]
    # PSNR vs CFG per cell
    n = len(cells)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    for ax, cell in zip(axes[0], cells):
        m = cell["methods"]
        mu = [m[f"dds_w{w:g}"]["psnr"]["mean"] for w in cfgs]
        sd = [m[f"dds_w{w:g}"]["psnr"]["std"] for w in cfgs]
        ax.errorbar(cfgs, mu, yerr=sd, marker="o", capsize=3, label="DDS")
        colors = {"zerofilled": "0.6", "sense": "tab:green", "l1wavelet": "tab:red", "tv": "tab:purple"}
        for b, col in colors.items():
            if b in m:
                ax.axhline(m[b]["psnr"]["mean"], color=col, ls="--", lw=1, label=_method_label(b))
        if "twin" in cell:
            ax.axhline(cell["twin"]["twin"]["psnr"]["mean"], color="k", ls=":", lw=1.2, label="uncond. twin")
        ax.set_title(cell["label"])
        ax.set_xlabel("CFG weight w")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _atomic_write(os.path.join(out, "fig_psnr_vs_cfg.png"), lambda tmp: fig.savefig(tmp, dpi=110, format="png"),
                  suffix=".png")
    plt.close(fig)
    # example panels
    for cell in cells:
        imgs = cell["images"]
        m = cell["methods"]
        cd = ev.cell(cell["mask"])
        for p in ev.examples:
            key = f"img_{p}"
            ref = cd.ref[p]
            cs = [b for b in ("l1wavelet", "tv") if b in m and key in imgs.get(b, {})]
            best_cs = max(cs, key=lambda b: m[b]["psnr"]["mean"]) if cs else None
            w_ex = cell.get("example_cfg")
            panels = [("reference", np.abs(ref))]
            if "zerofilled" in imgs and key in imgs["zerofilled"]:
                panels.append(("zero-filled", np.abs(imgs["zerofilled"][key])))
            if best_cs:
                panels.append((f"best CS ({_method_label(best_cs)})", np.abs(imgs[best_cs][key])))
            if "dds_w0" in imgs and key in imgs["dds_w0"]:
                panels.append(("DDS uncond (w = 0)", np.abs(imgs["dds_w0"][key])))
            cond_name = f"dds_w{w_ex:g}" if w_ex is not None else None
            cond = imgs.get(cond_name, {}).get(key) if cond_name else None
            if cond is not None and w_ex > 0:
                panels.append((f"DDS cond (w = {w_ex:g})", np.abs(cond)))
            vmax = float(np.percentile(np.abs(ref), 99.5)) or 1.0
            err = None
            if cond is not None:
                err = np.abs(np.abs(cond) - np.abs(ref))
            un = imgs.get("uncert", {}).get(f"std_{p}")
            ncol = len(panels) + (err is not None) + (un is not None)
            fig, axes = plt.subplots(1, ncol, figsize=(2.3 * ncol, 2.7), squeeze=False)
            axs = list(axes[0])
            from .metrics import psnr as _psnr

            for ax, (title, im) in zip(axs, panels):
                ax.imshow(im, cmap="gray", vmin=0, vmax=vmax)
                sub = "" if title == "reference" else f"\n{float(_psnr(np.abs(ref), im, ev.c.convention)):.2f} dB"
                ax.set_title(title + sub, fontsize=7)
            k = len(panels)
            if err is not None:
                axs[k].imshow(err, cmap="magma", vmin=0, vmax=vmax / 5)
                axs[k].set_title("|error| DDS cond (×5)", fontsize=7)
                k += 1
            if un is not None:
                axs[k].imshow(un, cmap="magma", vmin=0, vmax=vmax / 5)
                axs[k].set_title(f"uncertainty: std of {ev.c.samples}\nsamples (×5)", fontsize=7)
            for ax in axs:
                ax.axis("off")
            r = ev.records[p]
            fig.suptitle(f"{cell['label']} · slice {int(ev.slices[p])} · {r.contrast} · pathology "
                         f"{pathology_kind(r)}", fontsize=8)
            fig.tight_layout(rect=(0, 0, 1, 0.9))
            _atomic_write(os.path.join(out, f"examples_{_safe(cell['mask'])}.png"),
                          lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
            plt.close(fig)


def run_evaluation(config: EvalConfig, progress: bool = True) -> dict:
    """Run and write an evaluation; returns the results dict (as in results.json)."""
    return Evaluation(config, progress=progress).run()
