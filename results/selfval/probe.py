"""Self-validation ingredients per slice (issue 26 item 2b, issue 27 item 3), to choose and check the decision rule
offline (`results/selfval/rules.py`) instead of re-running reconstructions for every rule tried.

    python results/selfval/probe.py OUT.jsonl [--device cuda] [--part I/N] [--sim-slices 8] [--folds 3]
                                    [--real FILE ...] [--threads T]

Cases: every real file (all slices) × regular1d:2:24, regular1d:3:24, uniform1d:4:0.08, uniform1d:6:0.08, scored
inside the head against the fully sampled RSS; and `--sim-slices` simulator validation slices (made on the fly by
`recon_core.sim.export.simulate_subject`, split "val", the classic scanner setting) × uniform1d ×4, ×8 and poisson2d
×8, scored on the whole image (fastMRI). Per case and per fold f (hold-out seed f, the product's `holdout_rows`):
the held-out NMSE of SENSE, sigpy L1-wavelet and DDS (γ 10/20/40 fixed weight, γ 20 noise weight; K = 2 samples:
the mean's and each sample's error), the squared held-out distances between every pair of predictions (for a noise
z-test), and the noise floor n·σ²/‖y_h‖²; with all lines: the PSNR/SSIM of every candidate (DDS K = 1, the product).
One JSON line per case; `--part I/N` takes every N-th case from the I-th (parallel processes)."""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

DDS = {"dds10": {"gamma": 10.0}, "dds20": {"gamma": 20.0}, "dds40": {"gamma": 40.0},
       "dds20n": {"gamma": 20.0, "data_weight": "noise"}}
CLASSICAL = ("sense", "l1wavelet")
REAL_MASKS = ("regular1d:2:24", "regular1d:3:24", "uniform1d:4:0.08", "uniform1d:6:0.08")
SIM_MASKS = (("uniform1d", 4), ("uniform1d", 8), ("poisson2d", 8))


def held(img, k, s, rows):
    from recon_core.fft import fft2c_np
    nx = k.shape[-1]
    cols = slice(nx // 4, nx - nx // 4)
    return fft2c_np(s * img[None])[:, rows, cols]


def cases(args):
    from recon_core.coils import coil_maps
    from recon_core.masks import make_mask
    from recon_core.metadata.header import record_from_header
    from recon_core.metadata.record import MetadataRecord
    from recon_core.metrics import masked_metrics, psnr, ssim
    from recon_core.raw.image import scanner_units, slice_maps
    from recon_core.raw.retrospective import load_real, undersample
    from recon_core.sim.export import ExportConfig, simulate_subject, subject_seed

    for f in args.real:
        try:
            slices = load_real(f)
        except Exception as exc:   # an absent or unreadable file: skipped with one line
            print(f"skipping {f}: {exc}", flush=True)
            continue
        for rs in slices:
            rec = record_from_header(rs.header, slice_index=rs.sd.key.slice)
            for spec in REAL_MASKS:
                def build(rs=rs, spec=spec, rec=rec):
                    sd, _ = undersample(rs.sd, spec)
                    maps = slice_maps(sd)

                    def score(img, sd=sd, maps=maps):
                        m = masked_metrics(rs.reference, scanner_units(sd, maps, img), rs.region)
                        return round(float(m["psnr"]), 3), round(float(m["ssim"]), 4)
                    return sd.kspace, maps, sd.mask, rec, score
                yield rs.name, spec, build
    for i in range(args.sim_slices):
        for kind, acc in SIM_MASKS:
            def build(i=i, kind=kind, acc=acc):
                ec = ExportConfig(n_slices=1, split="val", matrix=128, coils=8, slices_per_subject=1, calib=24,
                                  save_kspace=True)
                r = simulate_subject(ec, subject_seed(200 + i, "val", 0), 1)
                full, ref = r["kspace"][0], np.abs(r["reference"][0])
                rec = MetadataRecord.from_dict(r["records"][0])
                m = make_mask(kind, (128, 128), acc, seed=i).mask
                k = (full * m[None]).astype(np.complex64)
                maps = np.asarray(coil_maps(k[None], mask=m))[0].astype(np.complex64)

                def score(img, ref=ref):
                    return round(float(psnr(ref, np.abs(img))), 3), round(float(ssim(ref, np.abs(img))), 4)
                return k, maps, m, rec, score
            yield f"sim-val#{i}", f"{kind}:{acc}", build


def run_case(name, spec, build, prior, args):
    from recon_core.baselines import reconstruct
    from recon_core.coils import calib_region
    from recon_core.noise_level import kspace_sigma
    from recon_core.samplers import SamplerConfig, diffusion_sampler
    from recon_core.samplers.selfval import holdout_rows

    dds = diffusion_sampler("dds", validated=False)
    t0 = time.perf_counter()
    k, s, m, rec, score = build()
    sigma = float(kspace_sigma(k[None], m)[0])
    cy, _ = calib_region(m)
    lo = m.shape[0] // 2 - cy // 2
    row = {"slice": name, "mask": spec, "sigma": sigma, "folds": []}
    for f in range(args.folds):
        rows = holdout_rows(m.any(axis=1), (lo, lo + cy), 0.1, f)
        if len(rows) == 0:
            row["folds"].append(None)
            continue
        red = m.copy()
        red[rows] = False
        kr = (k * red[None])[None]
        y = k[:, rows][:, :, k.shape[-1] // 4: k.shape[-1] - k.shape[-1] // 4]
        yy = float(np.sum(np.abs(y) ** 2))
        preds, fold = {}, {"rows": int(len(rows)), "n": int(np.count_nonzero(m[rows][:, k.shape[-1] // 4:
                                                                                   k.shape[-1] - k.shape[-1] // 4]) * k.shape[0]),
                            "noise_floor": None}
        fold["noise_floor"] = fold["n"] * sigma ** 2 / yy if np.isfinite(sigma) else None
        for nm in CLASSICAL:
            preds[nm] = held(np.asarray(reconstruct(nm, kr, s[None], red))[0], k, s, rows)
        for nm, sets in DDS.items():
            r = dds(prior, kr, s[None], red, records=[rec], config=SamplerConfig(samples=2, seed=f, **sets),
                    device=args.device)
            preds[nm] = held(np.asarray(r.image)[0], k, s, rows)
            fold[f"{nm}_samples"] = [round(float(np.sum(np.abs(held(np.asarray(x)[0], k, s, rows) - y) ** 2) / yy), 6)
                                     for x in r.samples]
        fold["nmse"] = {nm: round(float(np.sum(np.abs(p - y) ** 2) / yy), 6) for nm, p in preds.items()}
        names = list(preds)
        fold["dist"] = {f"{a}|{b}": round(float(np.sum(np.abs(preds[a] - preds[b]) ** 2) / yy), 7)
                        for i, a in enumerate(names) for b in names[i + 1:]}
        row["folds"].append(fold)
    row["full"] = {}
    for nm in CLASSICAL:
        row["full"][nm] = score(np.asarray(reconstruct(nm, k[None], s[None], m))[0])
    for nm, sets in DDS.items():
        r = dds(prior, k[None], s[None], m, records=[rec], config=SamplerConfig(**sets), device=args.device)
        row["full"][nm] = score(np.asarray(r.image)[0])
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def add_case_arguments(ap):
    """The case-selection, device and thread options shared with results/real/selfval_check.py."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--part", default="0/1", help="I/N: every N-th case from the I-th (parallel processes)")
    ap.add_argument("--sim-slices", type=int, default=8)
    ap.add_argument("--real", nargs="*", default=["tests/data/real/pulseq_invivo_flash.h5"])
    ap.add_argument("--threads", type=int, default=1)


def part_cases(args, model: str):
    """(prior, this part's cases): logging quiet, torch threads set, the prior on `args.device`."""
    from recon_core.prior.cache import get_prior

    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(args.threads)
    prior = get_prior(model, args.device)
    i, n = (int(v) for v in args.part.split("/"))
    return prior, [c for j, c in enumerate(cases(args)) if j % n == i]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default="default")
    ap.add_argument("--folds", type=int, default=3)
    add_case_arguments(ap)
    args = ap.parse_args()
    prior, todo = part_cases(args, args.model)
    with open(args.out, "a") as fh:
        for name, spec, build in todo:
            row = run_case(name, spec, build, prior, args)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(name, spec, row["seconds"], "s", flush=True)


if __name__ == "__main__":
    main()
