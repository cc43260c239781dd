"""Experiment (issue 27, session 13): can the self-validation's k-space hold-out rescale the error estimate per scan?

Per case: DDS with K = 4 samples on all data → error estimate e (recon_core.uncertainty, the shipped factors) and its
±2σ coverage against the true error in the head; DDS with K = 4 on the data minus hold-out fold 0
(recon_core.samplers.selfval.holdout_mask) → its error estimate e_h, the actual residual on the scored held-out
samples, ‖M(F S x_h − y)‖², minus the noise (kspace_sigma² per sample), against what e_h predicts there if pixel
errors were independent, Σ_c n_scored · (1/N) Σ_x |S_c(x)|² e_h(x)². Ratio s = sqrt(actual / predicted). The
independence assumption is wrong (errors are spatially correlated), so s is normalised by its geometric mean over the
simulator validation cases; the rescaled estimate is e · s / s̄_val.

    python results/calibration/holdout_scale.py OUT.jsonl [--val N] [--test N] [--real FILE ...]
    python results/calibration/holdout_scale.py --summarise OUT.jsonl
    python results/calibration/holdout_scale.py --rules OUT.jsonl [--names SUMMARY.json]
    python results/calibration/holdout_scale.py --product OUT.jsonl [--samples K] [--val N] [--test N] [--real FILE ...]

`--product` (session 14): the shipped path — the front doors' self-validated DDS with K (4) samples
(recon_core.samplers.sample_slices, self_validate on), its `holdout_error_ratio`, the error estimate with and without
the manifest's `ErrorModel.holdout_scale` — scored per case (±2σ coverage in the head).

`--rules` (session 14): the damped, per-acceleration rule fitted on the validation cases only — s̄(R) the geometric
mean of s over the validation cases at each R (log-linear in log R between them, clamped beyond, as the product
reads it: `ErrorModel.holdout_scale_ref`), factor
(s / s̄(R))^α, or max(1, s / s̄(R))^α (up only); α chosen on validation (every case inside 85–98 % first, then the
smallest mean |coverage − 95 %|) and only then applied to the test and real cases. `--names` attaches name, group and
acceleration from a summary JSON (rows in the same order) to a .jsonl written before run() recorded them.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def one(prior, em, k, s, m, rec, accel, units, ref, region):
    from recon_core.fft import fft2c_np
    from recon_core.noise_level import kspace_sigma
    from recon_core.samplers import SamplerConfig
    from recon_core.samplers.dds import dds_reconstruct
    from recon_core.samplers.selfval import holdout_mask
    from recon_core.uncertainty import error_estimate

    cfg = SamplerConfig(samples=4)
    full = dds_reconstruct(prior, k[None], s[None], m, [rec], config=cfg, device="cpu")
    std = np.asarray(full.std)[0]
    e = np.abs(units(error_estimate(std, 4, accel, em)))
    err = np.abs(np.abs(units(np.asarray(full.image)[0])) - ref)
    held, scored, _ = holdout_mask(m, 0.1, 0)
    red = m & ~held
    hr = dds_reconstruct(prior, (k * red[None])[None], s[None], red, [rec], config=cfg, device="cpu")
    e_h = error_estimate(np.asarray(hr.std)[0], 4, accel, em)
    pred_k = fft2c_np(s * np.asarray(hr.image)[0][None])[:, scored]
    actual = float(np.sum(np.abs(pred_k - k[:, scored]) ** 2))
    sigma = float(kspace_sigma(k[None], m)[0])
    noise = sigma ** 2 * pred_k.size
    N = m.size
    predicted = float(scored.sum() * np.sum(np.abs(s) ** 2 * e_h[None] ** 2) / N)
    r = region.astype(bool)
    return {"cov2": float((err[r] <= 2 * e[r]).mean()), "actual": actual, "noise": noise, "predicted": predicted,
            "s": float(np.sqrt(max(actual - noise, 0.0) / max(predicted, 1e-30))), "err": err[r].tolist(),
            "e": e[r].tolist()}


def cases(args):
    from recon_core.coils import coil_maps
    from recon_core.masks import make_mask
    from recon_core.metadata.header import record_from_header
    from recon_core.metadata.record import MetadataRecord
    from recon_core.raw.image import scanner_units, slice_maps
    from recon_core.raw.retrospective import load_real, object_region, undersample
    from recon_core.sim.export import ExportConfig, simulate_subject, subject_seed

    for split, n in (("val", args.val), ("test", args.test)):
        for i in range(n):
            ec = ExportConfig(n_slices=1, split=split, matrix=128, coils=8, slices_per_subject=1, calib=24,
                              save_kspace=True)
            r = simulate_subject(ec, subject_seed(100 + i, split, 0), 1)
            full, ref = r["kspace"][0], np.abs(r["reference"][0])
            rec = MetadataRecord.from_dict(r["records"][0])
            for a in (4, 8):
                m = make_mask("uniform1d", (128, 128), a, seed=i).mask
                k = (full * m[None]).astype(np.complex64)
                maps = np.asarray(coil_maps(k[None], mask=m))[0].astype(np.complex64)
                yield f"{split}{i}_x{a}", split, k, maps, m, rec, a, (lambda x: x), ref, object_region(ref)
    for f in args.real:
        rs = load_real(f)[0]
        for a in (4, 6):
            sd, mm = undersample(rs.sd, f"uniform1d:{a}:0.08", 0)
            maps = slice_maps(sd)
            rec = record_from_header(rs.header, slice_index=sd.key.slice)

            def units(x, sd=sd, maps=maps):    # the sampler's units → the reference's (a positive per-pixel factor)
                return scanner_units(sd, maps, x)

            yield (f"real_{f.split('/')[-1][:6]}_x{a}", "real", sd.kspace, maps, sd.mask, rec, a, units, rs.reference,
                   rs.region)


def run(args):
    import torch

    from recon_core.prior.cache import get_prior
    from recon_core.uncertainty import error_model_of

    torch.set_num_threads(args.threads)
    prior = get_prior("default", "cpu")
    em = error_model_of(prior)
    with open(args.out, "a") as fh:
        for name, group, k, s, m, rec, a, units, ref, region in cases(args):
            row = one(prior, em, k, s, m, rec, a, units, ref, region)
            row.update(name=name, group=group, accel=a)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(name, round(row["cov2"], 3), round(row["s"], 3), flush=True)


def product(args):
    import torch

    from recon_core.prior.cache import get_prior
    from recon_core.samplers import SamplerConfig, sample_slices
    from recon_core.uncertainty import error_estimate, error_model_of

    torch.set_num_threads(args.threads)
    prior = get_prior("default", "cpu")
    em = error_model_of(prior)
    K = args.samples
    cfg = SamplerConfig(samples=K, self_validate=True)
    with open(args.out, "a") as fh:
        for name, group, k, s, m, rec, a, units, ref, region in cases(args):
            res = sample_slices("dds", prior, [k], [s], [m], [rec], cfg, device="cpu")
            sv = res.timings["self_validation"][0]
            r = np.asarray(region, bool)
            row = {"name": name, "group": group, "accel": a, "samples": K, "chosen": sv.get("chosen"),
                   "ratio": sv.get("holdout_error_ratio")}
            if res.std is not None:
                err = np.abs(np.abs(units(np.asarray(res.image)[0])) - ref)
                e = np.abs(units(error_estimate(np.asarray(res.std)[0], K, a, em)))
                f = em.holdout_scale(row["ratio"], a)
                row.update(scale=f, cov2=float((err[r] <= 2 * e[r]).mean()),
                           cov2_scaled=float((err[r] <= 2 * f * e[r]).mean()))
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(json.dumps(row), flush=True)


def summarise(path):
    rows = [json.loads(line) for line in open(path)]
    val = [r["s"] for r in rows if r["group"] == "val" and r["s"] > 0]
    sbar = float(np.exp(np.mean(np.log(val)))) if val else 1.0
    print(f"s̄ over {len(val)} validation cases: {sbar:.3f}")
    print("| case | s / s̄ | ±2σ coverage | rescaled ±2σ coverage |")
    print("|---|---|---|---|")
    for r in rows:
        f = r["s"] / sbar
        err, e = np.asarray(r["err"]), np.asarray(r["e"])
        print(f"| {r['name']} | {f:.2f} | {100 * r['cov2']:.1f} % | {100 * float((err <= 2 * f * e).mean()):.1f} % |")


ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def rules(path, names=None):
    rows = [json.loads(line) for line in open(path)]
    if names:
        for r, m in zip(rows, json.load(open(names))["rows"]):
            r.update(name=m["name"], group=m["group"], accel=m["accel"])
    from recon_core.uncertainty import ErrorModel

    val = [r for r in rows if r["group"] == "val" and r["s"] > 0]
    accs = sorted({r["accel"] for r in val})
    lsb = [float(np.mean([np.log(r["s"]) for r in val if r["accel"] == a])) for a in accs]
    fit = ErrorModel(holdout_sbar={a: float(np.exp(v)) for a, v in zip(accs, lsb)})   # s̄(R) as the product reads it

    def cov(r, alpha, up):
        q = r["s"] / fit.holdout_scale_ref(r["accel"])
        f = max(q, 1.0) ** alpha if up else q ** alpha
        err, e = np.asarray(r["err"]), np.asarray(r["e"])
        return float((err <= 2 * f * e).mean())

    print("s̄(R) on validation: " + ", ".join(f"R {a}: {np.exp(v):.2f}" for a, v in zip(accs, lsb)))
    for up in (False, True):
        fits = []
        for alpha in ALPHAS:
            c = np.array([cov(r, alpha, up) for r in val])
            fits.append((-float(np.mean((c >= 0.85) & (c <= 0.98))), float(np.mean(np.abs(c - 0.95))), alpha))
        _, loss, best = min(fits)
        print(f"\n{'up only' if up else 'two-sided'}: α {best} chosen on validation (mean |cov − 95 %| {loss:.3f})")
        print("| case | group | s / s̄(R) | ±2σ coverage | " + " | ".join(f"α {a}" for a in ALPHAS) + " |")
        print("|---|---|---|---|" + "---|" * len(ALPHAS))
        for r in rows:
            cs = " | ".join(f"{100 * cov(r, a, up):.1f}" + (" ←" if a == best else "") for a in ALPHAS)
            q = r["s"] / fit.holdout_scale_ref(r["accel"])
            print(f"| {r['name']} | {r['group']} | {q:.2f} | {100 * r['cov2']:.1f} % | {cs} |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--summarise", action="store_true")
    ap.add_argument("--rules", action="store_true")
    ap.add_argument("--product", action="store_true")
    ap.add_argument("--samples", type=int, default=4, help="--product: posterior samples K")
    ap.add_argument("--names", default=None)
    ap.add_argument("--val", type=int, default=6)
    ap.add_argument("--test", type=int, default=4)
    ap.add_argument("--real", nargs="*", default=[])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.rules:
        rules(a.out, a.names)
    elif a.product:
        product(a)
    elif a.summarise:
        summarise(a.out)
    else:
        run(a)
