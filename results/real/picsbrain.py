"""A prospectively undersampled real brain: BART's ISMRM 2016 workshop slice (issue 26, item 3; session 19).

    python results/real/picsbrain.py DIR --out OUT.json [--threads 2] [--model default] [--samples K]

DIR holds `ksp.{cfl,hdr}` and `img.{cfl,hdr}` of mrirecon/bart-workshop @143802b, `ismrm2016/pics-brain` (no licence
stated: kept outside the repository; a snapshot of the repository, e.g. the session tool's `fetch`, then
`for f in ksp.cfl ksp.hdr img.cfl img.hdr; do git --git-dir=REPO show 143802b:ismrm2016/pics-brain/$f > DIR/$f; done`).
`ksp`: one 180 × 230 slice of an in-vivo 8-channel brain, Poisson-disc undersampled at R 7.9 (5240 of 41 400
samples, a fully sampled 20 × 20 centre); `img`: `bart pics` (2 ESPIRiT map sets, no regularisation) of the *fully sampled* k-space the
workshop had — the reference, in BART's scaled units. The data were undersampled before anyone here saw them: the
mask is the workshop's, not ours.

Reference: root-sum-of-squares over the two map sets of `img`; object region from it (`object_region`); every
image scored there with the background zeroed (`masked_metrics`). The reference's units are BART's (its k-space
was scaled by the p90 of a low-resolution calibration image), so each image is first brought to them by the one
real factor that fits it best inside the region (least squares on magnitudes, reported as `scale`): every method
gets its own best factor; none is favoured. Methods: DDS at the product defaults (one sample) and self-validated
(the front doors' default), and every classical method at its best λ on this slice (an oracle for the classical
side; `training.evaluation.real.classical`, the real-data evaluation's grids), BART with our maps and with its own
`ecalib` maps. No ISMRMRD header exists for this slice, so DDS is conditioned on "brain" alone.
"""

import argparse
import json
import os
import sys
import time

from types import SimpleNamespace

import numpy as np
import torch

from recon_core.baselines import bart
from recon_core.coils import coil_maps
from recon_core.metadata import MetadataRecord
from recon_core.metrics import masked_metrics
from recon_core.prior import load_prior
from recon_core.raw.retrospective import object_region
from recon_core.samplers import SamplerConfig, sample_slices
from training.evaluation.real import classical, uncertainty_scores

METHODS = ("zerofilled", "sense", "l1wavelet", "l1wavelet-shift", "bart-w", "bart-tv")
CALIB = 20   # the fully sampled centre of the workshop's mask (rows × columns)


def load(d):
    """(k (C, ny, nx) complex64, mask (ny, nx) bool, reference (ny, nx) float64 in BART's units)."""
    k = np.moveaxis(np.squeeze(bart.read_cfl(os.path.join(d, "ksp"))), -1, 0).astype(np.complex64)
    img = np.squeeze(bart.read_cfl(os.path.join(d, "img")))
    ref = np.sqrt((np.abs(img) ** 2).sum(-1)).astype(np.float64)
    return k, np.abs(k).sum(0) > 0, ref


def scored(ref, region, img) -> dict:
    """Metrics after the least-squares real scale of |img| to the reference inside the region."""
    x = np.abs(np.asarray(img)).astype(np.float64)
    s = float((x[region] * ref[region]).sum() / max((x[region] ** 2).sum(), 1e-30))
    return {**masked_metrics(ref, s * x, region), "scale": s}


def markdown(out: dict, samples: int) -> str:
    """The table of one run (PSNR / SSIM inside the head, each image at its own best scale)."""
    L = [f"# {out['source']} (R {out['accel']:.2f}, {out['coils']} coils, {out['shape'][0]}×{out['shape'][1]}; "
         f"DDS {samples} sample(s))\n", f"Command: `{out.get('command', '')}`\n", "| method | PSNR dB | SSIM | setting | scale |", "|---|---|---|---|---|"]
    for m, r in out["methods"].items():
        sv = r.get("self_validation") or {}
        what = (f"λ {r['lamda']:g}, maps {r['maps']}" if r.get("lamda") is not None else
                f"chose {sv['chosen']}" if sv.get("chosen") else "")
        L.append(f"| {m} | {r['psnr']:.2f} | {r['ssim']:.4f} | {what} | {r['scale']:.4g} |")
    L.append(f"\nDDS − best classical ({out['best_classical']}): {out['dds_minus_best_classical']:+.2f} dB; "
             f"self-validated − best classical: {out['selfval_minus_best_classical']:+.2f} dB")
    for m in ("dds", "dds-selfval"):
        for key in ("calibration", "error_estimate"):
            c = out["methods"][m].get(key)
            if c:
                L.append(f"- {m} {'std' if key == 'calibration' else 'error estimate'}: Spearman {c['spearman']:.2f}, "
                         f"±1σ {100 * c['coverage_1sigma']:.0f} %, ±2σ {100 * c['coverage_2sigma']:.0f} %, "
                         f"σ/RMSE {c['std_over_rmse']:.2f}" +
                         (f" (hold-out scale {c['holdout_scale']:.2f})" if c.get("holdout_scale") else ""))
    return "\n".join(L) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rule", default="centre", help="the self-validation's hold-out rule (holdout_rule)")
    ap.add_argument("--samples", type=int, default=1, help="posterior samples per DDS image (K > 1: the std and the "
                                                               "calibrated error estimate are scored against the error)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    k, mask, ref = load(a.dir)
    region = object_region(ref)
    info = {}
    maps = coil_maps(k, mask=mask, info=info)
    print(f"{k.shape[0]} coils, {mask.shape}, R {mask.size / mask.sum():.2f}, region {int(region.sum())} px, "
          f"maps {info.get('maps')} crop {info.get('crop')}", flush=True)
    rows = {}
    prior = load_prior(a.model)
    rec = [MetadataRecord(anatomy="brain")]
    for name, cfg in (("dds", SamplerConfig(samples=a.samples)),
                      ("dds-selfval", SamplerConfig(samples=a.samples, self_validate=True, holdout_rule=a.rule))):
        t0 = time.perf_counter()
        res = sample_slices("dds", prior, [k], [maps], [mask], rec, cfg)
        img = np.asarray(res.image)[0]
        rows[name] = {**scored(ref, region, img), "seconds": time.perf_counter() - t0}
        sv = (res.timings or {}).get("self_validation")
        if sv:
            rows[name]["self_validation"] = sv[0]
        if res.std is not None:   # issue 27: the std and the error estimate the scanner sends, in the same units
            sc = rows[name]["scale"]
            u = uncertainty_scores(ref, sc * np.abs(img), np.asarray(res.std)[0], lambda x, sc=sc: sc * x, a.samples,
                                   mask, prior, sv[0] if sv else None, region)
            rows[name]["calibration"] = u["calibration"]
            rows[name]["error_estimate"] = {**u["error_estimate"], "holdout_scale": u.get("error_holdout_scale")}
        print(name, {q: rows[name][q] for q in ("psnr", "ssim", "scale")}, rows[name].get("self_validation", {}).get("chosen", ""), flush=True)
    # every classical method over the real-data evaluation's λ grids, BART also with its own maps (`classical`); the
    # slice as that function reads it: the undersampled k-space is its own calibration data, the 20 centre rows its ACS
    lo = mask.shape[0] // 2 - CALIB // 2
    sd = SimpleNamespace(kspace=k, mask=mask, calib=k, acs_rows=(lo, lo + CALIB))
    for method, cands in classical(sd, maps, METHODS).items():
        best = None
        for img, setting, _ in cands:
            m = {**scored(ref, region, img), **setting}
            if best is None or m["psnr"] > best["psnr"]:
                best = m
        rows[method] = best
        print(method, {q: best[q] for q in ("psnr", "ssim", "scale", "lamda", "maps")}, flush=True)
    best_cl = max((m for m in rows if not m.startswith("dds") and m != "zerofilled"), key=lambda m: rows[m]["psnr"])
    out = {"command": "python results/real/picsbrain.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "source": "mrirecon/bart-workshop@143802b ismrm2016/pics-brain", "shape": list(mask.shape),
           "coils": int(k.shape[0]), "accel": float(mask.size / mask.sum()), "region_pixels": int(region.sum()),
           "maps": {q: v for q, v in info.items() if isinstance(v, (int, float, str))}, "methods": rows,
           "best_classical": best_cl,
           "dds_minus_best_classical": rows["dds"]["psnr"] - rows[best_cl]["psnr"],
           "selfval_minus_best_classical": rows["dds-selfval"]["psnr"] - rows[best_cl]["psnr"]}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    with open(os.path.splitext(a.out)[0] + ".md", "w") as f:
        f.write(markdown(out, a.samples))
    print(f"best classical {best_cl} {rows[best_cl]['psnr']:.2f}; DDS − it {out['dds_minus_best_classical']:+.2f} dB; "
          f"self-validated − it {out['selfval_minus_best_classical']:+.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
