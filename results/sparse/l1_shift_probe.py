"""Cycle-spinning L1-wavelet (`l1wavelet-shift`) against sigpy's fixed-grid L1WaveletRecon (`l1wavelet`), each at its
best λ of a grid on the slice itself (an oracle for both), on the cases of results/selfval/probe.py.

    python results/sparse/l1_shift_probe.py [--real FILE ...] [--sim-slices N] > OUT.jsonl

(Session 12's numbers, results/sparse/l1_shift_s12.jsonl, came from a first version of this script with the prox
written inline and sigpy's own step size; the product's method is the same algorithm.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "selfval"))

GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def main():
    from probe import cases
    from recon_core.baselines import reconstruct

    ap = argparse.ArgumentParser()
    ap.add_argument("--real", nargs="*", default=[])
    ap.add_argument("--sim-slices", type=int, default=0)
    args = ap.parse_args()
    for name, spec, build in cases(args):
        k, s, m, rec, score = build()
        row = {"slice": name, "mask": spec}
        for meth in ("l1wavelet", "l1wavelet-shift"):
            t = time.time()
            row[meth] = max((score(np.asarray(reconstruct(meth, k[None], s[None], m, lamda=lam))[0])[0], lam)
                            for lam in GRID)
            row[f"{meth}_s"] = round((time.time() - t) / len(GRID), 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
