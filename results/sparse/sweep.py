"""Sparse data consistency sweep (session 12): DDS with a cycle-spinning L1-wavelet term in each step's data
consistency, over (prior weight μ, wavelet λ), beside plain DDS and the classical l1wavelet-shift, on the real
brains (inside the head, against the fully sampled RSS) and simulator validation slices (whole image).

    python results/sparse/sweep.py OUT.jsonl [--real FILE ...] [--sim-slices 8] [--grid "1:1e-3,0.3:1e-3,..."]
    python results/sparse/sweep.py OUT.jsonl … --grid "admm_cg_iters=1,admm_cg_iters=2,admm_cg_iters=3"
    python results/sparse/sweep.py --summarise OUT.jsonl [...]

Cases as results/selfval/probe.py (real: regular1d:2:24, regular1d:3:24, uniform1d:4:0.08, uniform1d:6:0.08;
simulator: uniform1d ×4, ×8, poisson2d ×8). Each DDS run: the product defaults otherwise (NFE 50, CFG 2, γ 20,
warm start 0.3, seed 0), `wavelet_lambda` 0 for plain DDS. A grid entry is "μ:λ" or "field=value" (any other sampler
setting, session 13: `settings_of`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "selfval"))


def settings_of(entry: str) -> dict:
    """A grid entry → sampler settings: "μ:λ" (prior_weight, wavelet_lambda) or "field=value" (any numeric
    SamplerConfig field, e.g. admm_cg_iters=2; the product defaults otherwise)."""
    if "=" in entry:
        k, v = entry.split("=", 1)
        return {k: int(v) if v.lstrip("-").isdigit() else float(v)}
    mu, lam = entry.split(":")
    return {"prior_weight": float(mu), "wavelet_lambda": float(lam)}


def label(entry: str) -> str:
    return entry.replace("=", " ") if "=" in entry else f"μ {entry.split(':')[0]}, λ {entry.split(':')[1]}"


def run(args):
    import torch

    from probe import cases
    from recon_core.baselines import reconstruct
    from recon_core.prior.cache import get_prior
    from recon_core.samplers import SamplerConfig, diffusion_sampler

    torch.set_num_threads(args.threads)
    prior = get_prior("default", "cpu")
    dds = diffusion_sampler("dds", validated=False)
    with open(args.out, "a") as fh:
        for name, spec, build in cases(args):
            k, s, m, rec, score = build()
            row = {"slice": name, "mask": spec,
                   "l1s": score(np.asarray(reconstruct("l1wavelet-shift", k[None], s[None], m))[0])[0]}
            for key, sets in [("dds", {"wavelet_lambda": 0.0})] + [(g, settings_of(g)) for g in args.grid.split(",")]:
                r = dds(prior, k[None], s[None], m, records=[rec], config=SamplerConfig(**sets), device="cpu")
                row[key] = score(np.asarray(r.image)[0])[0]
            print(json.dumps(row), flush=True)
            fh.write(json.dumps(row) + "\n")


def summarise(paths):
    rows = {}
    for p in paths:
        for line in open(p):
            if line.startswith("{"):
                r = json.loads(line)
                rows[(r["slice"], r["mask"])] = r
    groups = collections.defaultdict(list)
    for r in rows.values():
        groups[("real " if not r["slice"].startswith("sim") else "sim ") + ":".join(r["mask"].split(":")[:2])].append(r)
    keys = sorted({k for r in rows.values() for k in r if (":" in k or "=" in k) and k not in ("slice", "mask")})
    print("| cases | n | L1-wavelet shift | DDS (plain) | " + " | ".join(label(k) for k in keys) + " |")
    print("|" + "---|" * (4 + len(keys)))
    for g, rs in sorted(groups.items()):
        cells = []
        for k in keys:
            v = [(r[k], r[k] - r["dds"]) for r in rs if k in r]
            part = "" if len(v) == len(rs) else f", {len(v)} of {len(rs)} cases"
            cells.append(f"{np.mean([a for a, _ in v]):.2f} ({np.mean([d for _, d in v]):+.2f}, worst "
                         f"{min(d for _, d in v):+.2f}{part})" if v else "—")
        print(f"| {g} | {len(rs)} | {np.mean([r['l1s'] for r in rs]):.2f} | {np.mean([r['dds'] for r in rs]):.2f} | "
              + " | ".join(cells) + " |")
    print("\n(mean PSNR dB; in brackets the mean and worst per-slice difference to plain DDS)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summarise"]:
        summarise(sys.argv[2:])
        sys.exit(0)
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--real", nargs="*", default=[])
    ap.add_argument("--sim-slices", type=int, default=0)
    ap.add_argument("--grid", default="1:1e-3,0.3:1e-3,0.1:1e-3,0.3:3e-4,0.1:3e-4")
    ap.add_argument("--threads", type=int, default=1)
    run(ap.parse_args())
