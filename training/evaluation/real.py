"""Real-data evaluation: fully sampled real raw files, retrospectively undersampled (issue 26, item 3).

For each slice of each ISMRMRD raw file (read by the one raw reader, `recon_core.raw.reader`: noise
prewhitening when noise readouts exist, readout oversampling removed):

- reference = root-sum-of-squares (RSS) of the fully sampled coil images — independent of anyone's coil maps —
  with its noise bias removed (`reference="unbiased"`, the default since session 18: √max(RSS² − P, 0),
  `recon_core.raw.retrospective.rss_noise_power`), or the plain RSS (`"rss"`, sessions 8–17); for simulated files
  the noiseless truth they carry (`"truth"`);
- object region (`object_region`): the smoothed reference above a threshold between its background and
  Otsu's level, holes filled, the largest component, dilated 2 pixels; every image is scored only there, background zeroed
  (`recon_core.metrics.masked_metrics`);
- undersampling (`undersample`): a 1-D mask (`KIND:ACCEL[:ACS]`, e.g. `regular1d:2:24` — the scanner's
  GRAPPA pattern — or `uniform1d:4:0.08`) applied to the rows; the ACS rows are the calibration;
- methods: DDS the way the scanner runs it (maps of `recon_core.raw.image.slice_maps`, the header's
  metadata record, `SamplerConfig` defaults unless given), and every classical method with its best
  setting on this slice (an oracle choice that favours the classical side): SENSE, GRAPPA, sigpy
  L1-wavelet, BART pics W and TV with our maps and with BART's own `ecalib` maps, each over `LAMBDAS`.

With `samples` K > 1 the diffusion method's std and calibrated error estimate are scored against its actual error
(`calibration`, `error_estimate`); with self-validation on, the error estimate is rescaled by the scan's hold-out
residual as the scanner does (`error_holdout_scale`; `recon_core.uncertainty`).

Results: {file: {"slices": [...], "cells": {mask: {method: {psnr, ssim, nmse, lamda, maps}}}}}; an
unreadable file is skipped with one line naming it (`skipped`).
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from recon_core import baselines
from recon_core.baselines import bart
from recon_core.errors import InputError
from recon_core.fft import ifft2c_np
from recon_core.masks import realised_accel
from recon_core.metrics import masked_metrics, uncertainty_calibration
from recon_core.raw.image import scanner_units, slice_maps
from recon_core.raw.retrospective import RealSlice, load_real, object_region, undersample  # noqa: F401
from recon_core.samplers import SamplerConfig
from recon_core.samplers import reconstruct_slice as diffusion  # noqa: F401
from recon_core.uncertainty import error_estimate, error_model_of, holdout_rescaled

log = logging.getLogger(__name__)

#: λ grids searched per classical method (best on the slice is reported): each method's `real_grid`
LAMBDAS = {name: spec.real_grid for name, spec in baselines.BASELINES.items() if spec.real_grid}
DEFAULT_MASKS = ("regular1d:2:24", "regular1d:3:24", "uniform1d:4:0.08", "uniform1d:6:0.08")
CLASSICAL = ("zerofilled", "sense", "grappa", "l1wavelet", "l1wavelet-shift", "bart-w", "bart-tv")


def classical(sd, maps_ours: np.ndarray, methods=CLASSICAL) -> dict:
    """Best setting of every classical method on this undersampled slice → {method: (image, info)}."""
    ksp, mask = sd.kspace[None], sd.mask
    map_sets = {"ours": maps_ours}
    if any(m.startswith("bart") for m in methods) and bart.available():
        lo, hi = sd.acs_rows
        try:
            map_sets["bart-ecalib"] = bart.ecalib(sd.calib, calib=hi - lo, kernel=6)
        except InputError as exc:
            log.warning("bart ecalib failed: %s", exc)
    out = {}
    for method in methods:
        if method.startswith("bart") and not bart.available():
            continue
        cands = []
        for mname, maps in (map_sets.items() if method.startswith("bart") else [("ours", maps_ours)]):
            for lam in LAMBDAS.get(method, (None,)):
                kw = {} if lam is None or method == "sense" else {"lamda": lam}
                img = np.asarray(baselines.reconstruct(method, ksp, maps[None], mask, **kw))[0]
                cands.append((img, {"lamda": lam, "maps": mname}, maps))
        out[method] = cands
    if "zerofilled" in methods:   # coil-combined zero-filled also as root-sum-of-squares (no maps at all)
        rss = np.sqrt((np.abs(ifft2c_np(sd.kspace)) ** 2).sum(0)).astype(np.complex64)
        out["zerofilled"] = out.get("zerofilled", []) + [(rss, {"lamda": None, "maps": "none (rss)"}, None)]
    return out


def uncertainty_scores(reference, rec, std, to_units, samples: int, mask, prior, selfval: dict | None,
                       region) -> dict:
    """How the posterior std and the calibrated error estimate the scanner sends (with self-validation: rescaled by
    the scan's hold-out residual) predict the error of `rec` → {"calibration", "error_estimate"[,
    "error_holdout_scale"]} (`uncertainty_calibration` each). std (ny, nx) in the sampler's units, `to_units` maps
    such a map to the units of `rec` and `reference`; mask: the sampling mask (its realised acceleration)."""
    em, accel = error_model_of(prior), realised_accel(mask)
    err = error_estimate(std, samples, accel, em)
    err, f = holdout_rescaled(err, (selfval or {}).get("holdout_error_ratio"), accel, em)
    out = {"calibration": uncertainty_calibration(reference, rec, to_units(std), region),
           "error_estimate": uncertainty_calibration(reference, rec, to_units(err), region)}
    if f is not None:
        out["error_holdout_scale"] = f
    return out


def score_slice(rs: RealSlice, spec: str, prior, config, seed: int = 0, methods=CLASSICAL,
                diffusion_methods=("dds",)) -> dict:
    """All methods on one real slice under mask `spec` → {method: metrics + setting}."""
    sd, m = undersample(rs.sd, spec, seed)
    row = {"_mask": {"spec": spec, "accel": float(m.accel), "acs_lines": int(len(m.acs_lines))}}
    maps = None
    for method in diffusion_methods:
        img, maps, info = diffusion(sd, rs.header, prior, config, method)
        std = info.pop("std", None)
        rec = scanner_units(sd, maps, img)
        row[method] = {**masked_metrics(rs.reference, rec, rs.region), **info}
        if std is not None:   # posterior samples: does the std predict the error? (issue 27)
            row[method].update(uncertainty_scores(rs.reference, rec, std, lambda x: scanner_units(sd, maps, x),
                                                  config.samples, sd.mask, prior, info.get("self_validation"),
                                                  rs.region))
    if maps is None:
        maps = slice_maps(sd)
    for method, cands in classical(sd, maps, methods).items():
        best = None
        for img, setting, mp in cands:
            rec = scanner_units(sd, mp, img) if mp is not None else img
            met = masked_metrics(rs.reference, rec, rs.region)
            if best is None or met["psnr"] > best["psnr"]:
                best = {**met, **setting}
        row[method] = best
    return row


def evaluate_real(paths, masks=DEFAULT_MASKS, prior=None, config=None, seed: int = 0, progress: bool = True,
                  methods=CLASSICAL, diffusion_methods=("dds",), reference: str = "unbiased") -> dict:
    """Score every slice of every file under every mask against `reference` ("unbiased" or "rss"; module
    docstring)."""

    config = config or SamplerConfig()
    results, skipped = {}, []
    cases = []
    for p in paths:
        try:
            cases += load_real(p, reference)
        except (InputError, OSError, KeyError, ValueError) as exc:
            msg = f"skipped {p}: {exc}"
            log.warning(msg)
            skipped.append(msg)
    bar = tqdm(total=len(cases) * len(masks), desc="evaluate-real", unit="cell", disable=not progress)
    for rs in cases:
        cells = {}
        for spec in masks:
            cells[spec] = score_slice(rs, spec, prior, config, seed, methods, diffusion_methods)
            bar.update(1)
        results[rs.name] = {"shape": list(rs.reference.shape), "coils": int(rs.sd.kspace.shape[0]),
                            "region_pixels": int(rs.region.sum()), "rss_noise_power": rs.noise_power,
                            "cells": cells}
    bar.close()
    return {"results": results, "skipped": skipped, "config": config.to_dict() if hasattr(config, "to_dict")
            else dict(config.__dict__), "masks": list(masks), "seed": seed, "samples": int(config.samples),
            "reference": reference}


def summary_rows(res: dict, main: str = "dds") -> list[dict]:
    """One row per (slice, mask): the main method (PSNR, SSIM), the best classical method and the difference, and
    every other method's PSNR."""
    rows = []
    for name, r in res["results"].items():
        for spec, cell in r["cells"].items():
            cls = {k: v for k, v in cell.items() if k in CLASSICAL and k != "zerofilled" and v}
            best = max(cls, key=lambda k: cls[k]["psnr"]) if cls else None
            d = cell.get(main)
            rows.append({"slice": name, "mask": spec, "accel": cell["_mask"]["accel"],
                         main: None if d is None else (round(d["psnr"], 2), round(d["ssim"], 4)),
                         "best_classical": best,
                         "best_psnr_ssim": None if best is None else (round(cls[best]["psnr"], 2),
                                                                      round(cls[best]["ssim"], 4)),
                         "diff_db": None if (d is None or best is None) else round(d["psnr"] - cls[best]["psnr"], 2),
                         **{k: round(v["psnr"], 2) for k, v in cell.items() if k not in ("_mask", main) and v}})
    return rows


def format_markdown(res: dict, main: str | None = "dds") -> str:
    """results.md: per slice and mask, PSNR / SSIM of every method, the best classical one and the difference."""
    ref = {"unbiased": "root-sum-of-squares of the fully sampled coil images with its noise bias removed "
                       "(√max(RSS² − P, 0))",
           "rss": "plain root-sum-of-squares of the fully sampled coil images",
           "truth": "the noiseless truth the (simulated) file carries"}[res.get("reference", "rss")]
    lines = ["# Real-data evaluation", "",
             f"Retrospective undersampling of fully sampled real raw files; reference = {ref}; scored inside the "
             "object region, background zeroed "
             "(training/evaluation/real.py). Classical methods at their best λ on each slice (BART also with "
             "its own ecalib maps). PSNR dB / SSIM.", ""]
    for name, r in res["results"].items():
        lines.append(f"## {name} ({r['shape'][0]}×{r['shape'][1]}, {r['coils']} coils)")
        lines.append("")
        cells = r["cells"]
        methods = [m for m in next(iter(cells.values())) if m != "_mask"]
        lines.append("| method | " + " | ".join(f"{s} (R {c['_mask']['accel']:.2f})" for s, c in cells.items()) + " |")
        lines.append("|---" * (len(cells) + 1) + "|")
        for m in methods:
            cells_txt = []
            for c in cells.values():
                v = c.get(m)
                cells_txt.append("–" if not v else f"{v['psnr']:.2f} / {v['ssim']:.3f}")
            lines.append(f"| {m} | " + " | ".join(cells_txt) + " |")
        lines.append("")
    if main and any(r["diff_db"] is not None for r in summary_rows(res, main)):
        lines.append(f"{main} − best classical (PSNR dB):")
        lines.append("")
        for row in summary_rows(res, main):
            if row["diff_db"] is None:
                continue
            lines.append(f"- {row['slice']} {row['mask']}: {row['diff_db']:+.2f} (best classical: "
                         f"{row['best_classical']} {row['best_psnr_ssim']})")
    def what_of(cell, key, what):
        f = cell.get("error_holdout_scale") if key == "error_estimate" else None
        return what if f is None else f"{what} (× {f:.2f} by the scan's hold-out)"

    cal = [(name, f"{spec} {what_of(c[main], key, what)}", c[main][key]) for name, r in res["results"].items()
           for spec, c in r["cells"].items() for key, what in (("calibration", "std"), ("error_estimate", "error estimate"))
           if main and c.get(main) and c[main].get(key)]
    if cal:
        lines += ["", f"Uncertainty of {main} ({res.get('samples', '?')} posterior samples) against its actual error "
                  "inside the object: rank correlation, coverage of ±1σ / ±2σ, mean σ / RMS error:", ""]
        lines += [f"- {name} {spec}: Spearman {q['spearman']:.2f}, coverage {100 * q['coverage_1sigma']:.0f} % / "
                  f"{100 * q['coverage_2sigma']:.0f} %, σ/RMSE {q['std_over_rmse']:.2f}" for name, spec, q in cal]
    for note in res.get("skipped", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
