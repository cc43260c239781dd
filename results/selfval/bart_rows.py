"""BART pics L1-wavelet (the strongest classical peer) on the cases of results/real/selfval_check.py, at its best λ on
each slice (an oracle that favours BART) with the product's ESPIRiT maps — on the two real brains the same values
`contextmri evaluate-real` found as BART W's best over both map sets (results/real/evaluate_real_shipped_s10.md) —
so the self-validation table can be read against BART, not only against its own classical candidates.

    python results/selfval/bart_rows.py OUT.json [--sim-slices 8] [--real FILE ...] [--threads T]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from probe import add_case_arguments, part_cases


def main():
    from recon_core import baselines
    from recon_core.baselines import bart
    from training.evaluation.real import LAMBDAS

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    add_case_arguments(ap)
    args = ap.parse_args()
    if not bart.available():
        raise SystemExit("bart is not installed")
    _, todo = part_cases(args, "default")
    rows = []
    for name, spec, build in todo:
        k, s, m, rec, score = build()
        best = max((score(np.asarray(baselines.reconstruct("bart-w", k[None], s[None], m, lamda=lam))[0])[0], lam)
                   for lam in LAMBDAS["bart-w"])
        rows.append({"slice": name, "mask": spec, "bart_w": best[0], "lamda": best[1]})
        print(json.dumps(rows[-1]), flush=True)
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
