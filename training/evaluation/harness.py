"""Evaluation harness (training.evaluation.harness): DDS (CFG sweep, metadata ablations, pathology, unconditional twin) vs classical
baselines on a held-out simulator split, in the ContextMRI Table-1 layout.

Per cell (mask kind × acceleration, e.g. "uniform1d:8"), for the selected test slices:
- the fully sampled k-space of the export (`recon_core.sim.export.load_split`) is undersampled with a
  seeded mask per slice (`recon_core.masks.make_mask`, seed = `seed`·1_000_003 + slice index), coil
  maps are estimated from the undersampled data's ACS by the scanner's recipe (`recon_core.coils.coil_maps`);
- baselines (`recon_core.baselines`): zero-filled, SENSE, L1-wavelet and TV, λ of the last two tuned
  per cell on the validation split (grid `LAMBDA_GRID`, best mean PSNR on `tune_limit` val slices);
- DDS (`recon_core.samplers.dds.dds_reconstruct`) for every CFG weight w (w = 0: unconditional branch only);
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

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from recon_core.baselines import get_spec, reconstruct
from recon_core.coils import coil_maps
from recon_core.errors import InputError
from recon_core.io_utils import write_text_atomic
from recon_core.masks import make_mask, parse_mask_spec, realised_accel
from recon_core.metrics import all_metrics, uncertainty_calibration
from recon_core.prior.cache import get_prior
from recon_core.prior.manifest import resolve_model_path
from recon_core.raw.retrospective import object_region
from recon_core.samplers import diffusion_sampler
from recon_core.sim.export import load_split
from recon_core.uncertainty import error_estimate, error_model_of, holdout_rescaled

from .ablation import ABLATIONS, drop_fields, pathology_kind, wrong_pathology
from .cache import UnitCache, key_of
from .config import BASELINES, CACHE_VERSION, CLASSICAL_CS, LAMBDA_GRID, METHOD_ONLY_FIELDS, METRICS, EvalConfig
from .figures import figures
from .report import render_markdown
from .stats import cell_label, paired, select_slices, summarise


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

        self.test = load_split(config.data, config.split)
        if self.test.kspace is None or self.test.reference is None:
            raise InputError(f"{config.data}/{config.split}: the split has no kspace.npy/reference.npy "
                             f"(export val/test splits with k-space)")
        self.baselines = config.resolved_baselines(self.log)
        self.notes: list[str] = []
        if config.baselines is None and len(self.baselines) < len(BASELINES):
            self.notes.append("BART baselines skipped: the 'bart' binary is not on PATH")
        self.val = None
        if any(b in LAMBDA_GRID for b in self.baselines):
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
        self.cache = UnitCache(os.path.join(config.out, ".cache"), CACHE_VERSION)
        self.examples = self._example_slices()
        self._cells: dict = {}
        self._prior = None
        self._twin = None
        self.model_id = self._model_id(config.model)
        self.twin_id = self._model_id(config.twin) if config.twin else None
        self._latent = None
        self.latent_id = self._model_id(config.latent_model) if "ldpm" in config.methods else None
        self.warnings: list[str] = []
        self.timings: dict = {}
        self._bar = None

    # ---- identity of inputs (cache keys) -----------------------------------------------------------
    @staticmethod
    def _model_id(path) -> dict:

        p = resolve_model_path(path)
        sig = []
        for root, _, files in os.walk(p):
            for f in sorted(files):
                st = os.stat(os.path.join(root, f))
                sig.append((os.path.relpath(os.path.join(root, f), p), st.st_size, int(st.st_mtime)))
        return {"path": str(p), "sig": key_of({"files": sorted(sig)})}

    def _data_id(self) -> dict:
        return {"data": os.path.abspath(self.c.data), "split": self.c.split, "info": key_of(self.test.info)}

    def _example_slices(self) -> list:
        """Position (in the selection) of the example slice: a pathological one if any, else the middle."""
        pos = [i for i, r in enumerate(self.records) if pathology_kind(r) != "none"]
        return [pos[len(pos) // 2] if pos else len(self.records) // 2]

    # ---- priors ------------------------------------------------------------------------------------
    @property
    def prior(self):
        if self._prior is None:
            self._prior = get_prior(self.c.model, self.c.device)
        return self._prior

    @property
    def latent(self):
        if self._latent is None:
            self._latent = get_prior(self.c.latent_model, self.c.device)
        return self._latent

    def _model(self, name: str):
        """The prior named "main", "twin" or "latent" (only that one is loaded)."""
        return {"main": lambda: self.prior, "twin": lambda: self.twin, "latent": lambda: self.latent}[name]()

    @property
    def twin(self):
        if self._twin is None:
            self._twin = get_prior(self.c.twin, self.c.device)
        return self._twin

    # ---- cells ---------------------------------------------------------------------------------------
    def _masks(self, kind, accel, split_indices, offset=0):
        """(L, ny, nx) bool masks, one per slice (seed = seed·1_000_003 + offset + index), cached
        (sigpy's Poisson-disc generator can take seconds per mask)."""
        seeds = [self.c.seed * 1_000_003 + offset + int(i) for i in split_indices]

        def compute():
            out = [make_mask(kind, self.shape, accel, seed=s) for s in seeds]
            return {"mask": np.stack([m.mask for m in out]), "accel": np.asarray([m.accel for m in out])}

        r = self.cached({"stage": "masks", "kind": kind, "accel": accel, "shape": self.shape, "seeds": seeds}, compute)
        return r["mask"].astype(bool), float(np.mean(r["accel"]))

    def _undersample(self, split, idx, kind, accel, offset):

        mask, racc = self._masks(kind, accel, idx, offset)
        full = np.asarray(split.kspace[idx])
        ksp = (full * mask[:, None]).astype(np.complex64)
        maps = coil_maps(ksp, mask=mask)   # the scanner's recipe (crop policy, low-resolution fallback)
        ref = np.asarray(split.reference[idx]).astype(np.complex64)
        return ksp, mask, maps, ref, racc

    def _oracle_maps(self, positions) -> np.ndarray:
        """The export's maps.npy for the selected slices at `positions` (ESPIRiT of the fully sampled
        calibration region: the best maps this data allows, an oracle for the undersampled case)."""
        if self.test.maps is None:
            raise InputError(f"{self.c.data}/{self.c.split}: no maps.npy for the oracle-maps row "
                             f"(export the split with maps)")
        return np.asarray(self.test.maps[self.slices[np.asarray(positions)]]).astype(np.complex64)

    def cell(self, spec: str) -> CellData:
        if spec not in self._cells:
            kind, accel = parse_mask_spec(spec)
            t0 = time.perf_counter()
            ksp, mask, maps, ref, racc = self._undersample(self.test, self.slices, kind, accel, 0)
            self.timings.setdefault("espirit_s", 0.0)
            self.timings["espirit_s"] += time.perf_counter() - t0
            self._cells[spec] = CellData(spec, kind, accel, ksp, mask, maps, ref, racc, self.slices)
        return self._cells[spec]

    # ---- cache -------------------------------------------------------------------------------------
    def cached(self, key: dict, fn) -> dict:
        return self.cache.get(key, fn)

    def _metrics(self, ref, rec) -> dict:

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

        if self.val is None:
            return get_spec(method).lamda
        kind, accel = parse_mask_spec(spec)
        vidx = select_slices(len(self.val), self.c.tune_limit)
        key = {"stage": "tune", "method": method, "cell": spec, "grid": LAMBDA_GRID[method],
               "val": {"data": os.path.abspath(self.c.data), "split": self.c.val_split, "info": key_of(self.val.info)},
               "slices": vidx.tolist(), "seed": self.c.seed, "convention": self.c.convention}

        def compute():
            ksp, mask, maps, ref, _ = self._undersample(self.val, vidx, kind, accel, 10_000_000)
            ps = [float(np.mean(self._metrics(ref, reconstruct(method, ksp, maps, mask, lamda=lam))["psnr"]))
                  for lam in LAMBDA_GRID[method]]
            return {"psnr": np.asarray(ps)}

        ps = self.cached(key, compute)["psnr"]
        return float(LAMBDA_GRID[method][int(np.argmax(ps))])

    def baseline(self, spec: str, method: str) -> dict:
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
            positions=None, maps: str = "espirit", method: str = "dds") -> dict:
        """A prior sampler (`method`: dds, scoremri, ldpm) over the selected slices (or `positions` within
        them), chunked and cached. model: "main", "twin" or "latent" (the latent prior, for ldpm).
        maps: "espirit" (from the undersampled ACS, as every method) or "oracle" (the export's maps.npy,
        ESPIRiT of the fully sampled calibration region: what better maps would give)."""
        sampler = diffusion_sampler(method)
        pos = np.arange(len(self.slices)) if positions is None else np.asarray(positions)
        settings = self.c.dds_settings().replace(cfg=float(w), samples=int(samples))
        foreign = {f for m, fs in METHOD_ONLY_FIELDS.items() if m != method for f in fs}
        params = {k: v for k, v in settings.to_meta().items() if k not in ("cfg", "samples") and k not in foreign}
        mid = {"main": self.model_id, "twin": self.twin_id}.get(model) or self.latent_id
        base = {"stage": method, "cell": spec, "cfg": float(w), "variant": variant, "model": mid, "samples": samples,
                "params": params, "data": self._data_id(), "convention": self.c.convention}
        if maps != "espirit":
            base["maps"] = maps
        if samples > 1:   # units with the error estimate's scores (its factors are in the model's manifest: model id)
            base["calibration"] = 3   # 3: self-validated slices rescaled by their hold-out (session 15)
        parts = []
        for lo in range(0, len(pos), self.c.batch):
            chunk = pos[lo:lo + self.c.batch]
            key = {**base, "slices": self.slices[chunk].tolist()}

            def compute(chunk=chunk):
                cd = self.cell(spec)
                prior = self._model(model)
                recs = self._records(chunk, variant)
                mp = cd.maps[chunk] if maps == "espirit" else self._oracle_maps(chunk)
                r = sampler(prior, cd.ksp[chunk], mp, cd.mask[chunk], recs, config=settings, device=self.c.device)
                res = self._metrics(cd.ref[chunk], r.image)
                res["seconds"] = np.asarray(r.timings["total"] / len(chunk))
                res["scale_ratio"] = r.scale / np.asarray(self.test.scale[self.slices[chunk]], np.float32)
                res["pos"] = np.asarray(chunk)
                if r.std is not None:   # K > 1: does the std predict the error? (issue 27; inside the head)
                    res.update(_calibration(cd.ref[chunk], r.image, r.std))
                    em = error_model_of(prior)    # and the calibrated error estimate (recon_core.uncertainty)
                    sv = (r.timings or {}).get("self_validation") or [{}] * len(chunk)
                    accels = [realised_accel(cd.mask[p]) for p in chunk]
                    err = np.stack([holdout_rescaled(error_estimate(r.std[j], samples, a, em),     # as the scanner
                                                     sv[j].get("holdout_error_ratio"), a, em)[0]   # sends it
                                    for j, a in enumerate(accels)])
                    res.update(_calibration(cd.ref[chunk], r.image, err, prefix="ecal_"))
                elif samples > 1:   # self-validation returned a classical image here: no std (NaN, not scored)
                    res.update(_no_calibration(len(chunk)))
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
        for k in (k for k in parts[0] if k.startswith(("cal_", "rel_", "ecal_", "erel_"))):
            merged[k] = np.concatenate([np.atleast_1d(p[k]) for p in parts])
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
        if c.oracle_maps:
            runs.add((-1.0, "oracle-maps", "main"))
        return runs

    def _method_positions(self) -> np.ndarray:
        """`methods_limit` positions spread evenly over the selected slices (subjects), first one included."""
        n, k = len(self.slices), min(self.c.methods_limit, len(self.slices))
        return np.unique(np.linspace(0, n - 1, k).round().astype(int)) if k > 1 else np.arange(k)

    def run(self) -> dict:

        c = self.c
        t_start = time.perf_counter()
        cfgs = [float(w) for w in c.cfg]
        cond = [w for w in cfgs if w > 0]
        w_guess = c.ablation_cfg if c.ablation_cfg is not None else (cond[0] if cond else None)
        total = sum(len(self._planned_runs(cfgs, w_guess, spec)) * self._n_chunks() + (1 if c.figures else 0)
                    + len(c.methods) * self._n_chunks(len(self._method_positions())) for spec in c.masks)
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

        for method in self.baselines:
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
        if c.oracle_maps and best_w is not None:
            r = self.dds(spec, best_w, "all", maps="oracle")
            cell["methods"]["dds_oracle_maps"] = self._entry(r, {"cfg": best_w})
            cell["per_slice"]["dds_oracle_maps"] = {k: r[k].tolist() for k in METRICS}
        if c.methods:
            cell["samplers"] = self._other_samplers(spec, dds, best_w if best_w is not None else cfgs[0])
        if c.twin:
            tw = run(0.0, "none", "twin")
            ref_w = best_w if best_w is not None else cfgs[0]
            cell["twin"] = {"twin": self._entry(tw), "cond_best": self._entry(dds[ref_w]), "cfg": ref_w,
                            "cond_minus_twin": paired(dds[ref_w]["psnr"], tw["psnr"]),
                            "cond_w0_minus_twin": paired(dds[0.0]["psnr"], tw["psnr"]) if 0.0 in dds else None}
            cell["images"]["twin"] = tw
        if c.calibration:   # posterior std vs actual error, K samples (issue 27)
            w_cal = best_w if best_w is not None else cfgs[0]
            cell["calibration"] = {"cfg": w_cal, **{str(K): _calibration_summary(self.dds(
                spec, w_cal, "all" if w_cal > 0 else "uncond", samples=int(K))) for K in c.calibration}}
        if c.figures:
            w_ex = best_w if best_w is not None else cfgs[0]
            cell["images"]["uncert"] = self.dds(spec, w_ex, "all" if w_ex > 0 else "uncond", samples=c.samples,
                                                positions=self.examples)
            cell["example_cfg"] = w_ex
        return cell

    def _other_samplers(self, spec, dds: dict, w: float) -> dict:
        """Score-MRI / LDPM on `methods_limit` slices spread over the selection, paired with DDS (same w) on them."""
        pos = self._method_positions()
        ref = dds[w]
        same = {k: ref[k][pos] for k in METRICS}
        out = {"cfg": w, "slices": int(len(pos)), "dds": self._entry({**same, "seconds": ref["seconds"]})}
        for m in self.c.methods:
            r = self.dds(spec, w, "all" if w > 0 else "uncond", model="latent" if m == "ldpm" else "main",
                         positions=pos, method=m)
            out[m] = self._entry(r, {"minus_dds": paired(r["psnr"], same["psnr"]),
                                     "per_slice_psnr": r["psnr"].tolist()})
        return out

    @staticmethod
    def _entry(r, extra=None) -> dict:
        e = {k: summarise(r[k]) for k in METRICS}
        e["seconds_per_slice"] = float(r["seconds"]) if "seconds" in r else None
        if extra:
            e.update({k: v for k, v in extra.items() if v is not None})
        return e

    # ---- assembly and outputs ----------------------------------------------------------------------
    def _assemble(self, cells, cfgs) -> dict:
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
            cs = [b for b in CLASSICAL_CS if b in m]
            if cs:
                best_cs = max(cs, key=lambda b: m[b]["psnr"]["mean"])
                best_dds = max((k for k in m if k.startswith("dds_w")), key=lambda k: m[k]["psnr"]["mean"])
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
                "notes": self.notes, "warnings": self.warnings, "timings": self.timings, "_images": cells}

    def write(self, results: dict) -> None:
        out = self.c.out
        cells = results.pop("_images")
        write_text_atomic(os.path.join(out, "results.json"), json.dumps(results, indent=1, default=_json_default))
        write_text_atomic(os.path.join(out, "results.md"), render_markdown(results))
        if self.c.figures:
            figures(self, results, cells)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def run_evaluation(config: EvalConfig, progress: bool = True) -> dict:
    """Run and write an evaluation; returns the results dict (as in results.json)."""
    return Evaluation(config, progress=progress).run()


RELIABILITY_BINS = 10


def _calibration_summary(r: dict, prefix: str = "cal_") -> dict:
    """Mean ± std over slices of each per-slice calibration number, and `slice_spearman`: over the slices, the rank
    correlation of the mean σ (the per-slice expected error) with the actual RMS error. The raw posterior std
    (prefix cal_), with the calibrated error estimate's numbers under "error_estimate" (prefix ecal_)."""
    rel = "rel_bins" if prefix == "cal_" else "erel_bins"
    out = {k[len(prefix):]: summarise(v) for k, v in r.items() if k.startswith(prefix)}
    if rel in r:   # per σ-quantile bin, the mean over slices of (σ, RMS error)
        m = np.nanmean(r[rel], axis=0)
        out["reliability"] = [{"std": float(a), "rmse": float(b)} for a, b in m if np.isfinite(a)]
    fin = np.isfinite(r[prefix + "mean_std"]) & np.isfinite(r[prefix + "rmse"])
    ms, rm = r[prefix + "mean_std"][fin], r[prefix + "rmse"][fin]
    ok = len(rm) > 2 and np.ptp(ms) > 0
    out["slice_spearman"] = float(spearmanr(ms, rm).statistic) if ok else None
    if prefix == "cal_" and "ecal_rmse" in r:
        out["error_estimate"] = _calibration_summary(r, "ecal_")
    return out


_CAL_KEYS = ("spearman", "cov1", "cov2", "ratio", "rmse", "mean_std")


def _no_calibration(n: int) -> dict:
    """`_calibration`'s arrays for n slices without a posterior std (NaN: left out of every summary)."""
    res = {p + k: np.full(n, np.nan) for p in ("cal_", "ecal_") for k in _CAL_KEYS}
    res.update({b: np.full((n, RELIABILITY_BINS, 2), np.nan) for b in ("rel_bins", "erel_bins")})
    return res


def _calibration(ref: np.ndarray, image: np.ndarray, std: np.ndarray, prefix: str = "cal_") -> dict:
    """Per slice (B, ny, nx): `recon_core.metrics.uncertainty_calibration` inside the head (the object region
    of the reference) → {cal_spearman, cal_cov1, cal_cov2, cal_ratio, cal_rmse, cal_mean_std} arrays (B,) and
    rel_bins (another `prefix`: ecal_*, erel_bins)."""
    qs = [uncertainty_calibration(ref[b], image[b], std[b], object_region(np.abs(ref[b])), bins=RELIABILITY_BINS)
          for b in range(len(ref))]
    rel = np.full((len(ref), RELIABILITY_BINS, 2), np.nan)
    for b, q in enumerate(qs):
        for i, r in enumerate(q["reliability"]):
            rel[b, i] = (r["std"], r["rmse"])
    out = dict(zip(_CAL_KEYS, ("spearman", "coverage_1sigma", "coverage_2sigma", "std_over_rmse", "rmse", "mean_std")))
    res = {prefix + k: np.array([q[v] for q in qs]) for k, v in out.items()}
    res["rel_bins" if prefix == "cal_" else "erel_bins"] = rel
    return res
