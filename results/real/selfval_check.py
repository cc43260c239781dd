"""Self-validation against its classical candidates, slice by slice (issue 26 target: never worse than the
classical candidate by more than 0.2 dB), through the product's own sampler (`diffusion_sampler("dds")` with
`self_validate=True`, default candidates, folds and hold-out).

    python results/real/selfval_check.py MODEL OUT.json [--device cuda] [--sim-slices 8] [--part I/N]
                                         [--real FILE ...] [--threads T] [--rule centre|spread] [--masks M,...]

Cases as results/selfval/probe.py: every real file × regular1d:2:24, regular1d:3:24, uniform1d:4:0.08,
uniform1d:6:0.08 (scored inside the head against the fully sampled RSS), and `--sim-slices` simulator
validation slices made on the fly × uniform1d ×4, ×8, poisson2d ×8 (scored on the whole image). Per case: PSNR of
DDS alone (product defaults), of the classical candidates (SENSE and L1-wavelet; cycle-spinning since session 12), and of the self-validated
reconstruction with its choice and reason. Writes OUT.json (rows + summary) and prints one line per case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "selfval"))


def row(name, spec, build, prior, device, rule="centre"):
    from recon_core import baselines
    from recon_core.samplers import SamplerConfig, diffusion_sampler
    from recon_core.samplers.selfval import CANDIDATES

    t0 = time.perf_counter()
    k, s, m, rec, score = build()
    out = {"slice": name, "mask": spec}
    classical = [meth for _, meth, f in CANDIDATES if f is None]
    for nm in classical:
        out[nm] = score(np.asarray(baselines.reconstruct(nm, k[None], s[None], m))[0])[0]
    plain = diffusion_sampler("dds", validated=False)(prior, k[None], s[None], m, records=[rec],
                                                      config=SamplerConfig(), device=device)
    out["dds"] = score(np.asarray(plain.image)[0])[0]
    t1 = time.perf_counter()
    sv = diffusion_sampler("dds")(prior, k[None], s[None], m, records=[rec], config=SamplerConfig(self_validate=True, holdout_rule=rule),
                                  device=device)
    out["selfval_seconds"] = round(time.perf_counter() - t1, 2)
    out["selfval"] = score(np.asarray(sv.image)[0])[0]
    info = sv.timings["self_validation"][0]
    out["chosen"] = info.get("chosen", "skipped")
    out["prior_unsure"] = info.get("prior_unsure", "")
    out["classical_best"] = max(out[nm] for nm in classical)
    out["selfval_minus_classical"] = round(out["selfval"] - out["classical_best"], 3)
    out["selfval_minus_dds"] = round(out["selfval"] - out["dds"], 3)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main():
    from probe import add_case_arguments, part_cases

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--rule", default="centre", help="the self-validation's hold-out rule (holdout_rule)")
    ap.add_argument("--masks", default="", help="comma list: only the cases whose mask is one of these")
    add_case_arguments(ap)
    args = ap.parse_args()
    prior, todo = part_cases(args, args.model)
    keep = set(filter(None, args.masks.split(",")))
    rows = []
    for name, spec, build in todo:
        if keep and spec not in keep:
            continue
        rows.append(row(name, spec, build, prior, args.device, args.rule))
        print(json.dumps(rows[-1]), flush=True)
        summary = {"model": args.model, "rule": args.rule, "rows": rows,
                   "worst_selfval_minus_classical": min(r["selfval_minus_classical"] for r in rows),
                   "n_worse_than_classical_by_0.2": sum(r["selfval_minus_classical"] < -0.2 for r in rows),
                   "mean_selfval_minus_dds": round(float(np.mean([r["selfval_minus_dds"] for r in rows])), 3)}
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
