"""GRAPPA against SENSE (and zero-filled) on the held-out simulator test split, equispaced 1-D ×2/×3/×4
(the scanner's GRAPPA-style sampling), with the same ESPIRiT maps for the coil combination / SENSE model.

    python results/grappa/grappa_vs_sense.py /work/data/sim128 [LIMIT]      (≈ 3 min on 2 cores, 32 slices)

Writes results/grappa/results.json and prints a Markdown table (mean ± std, paired difference, wins).
Masks: the evaluation's (seed · 1_000_003 + slice), ACS as the masks give it (≥ 8 lines, 8 % of 128).
"""

import json
import sys
import tempfile

from training.evaluation import EvalConfig, Evaluation
from training.evaluation.stats import paired
from recon_core.io_utils import write_text_atomic

CELLS = ("equispaced1d:2", "equispaced1d:3", "equispaced1d:4")
METHODS = ("zerofilled", "sense", "grappa")


def main(data, limit=32):
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ev = Evaluation(EvalConfig(model="default", data=data, out=tmp, masks=CELLS, limit=int(limit), seed=0,
                                   baselines=METHODS, figures=False), progress=False)
        for spec in CELLS:
            per = {m: ev.baseline(spec, m) for m in METHODS}
            rows[spec] = {m: {k: per[m][k].tolist() for k in ("psnr", "ssim")} for m in METHODS}
            rows[spec]["grappa_minus_sense_psnr"] = paired(per["grappa"]["psnr"], per["sense"]["psnr"])
            rows[spec]["grappa_minus_sense_ssim"] = paired(per["grappa"]["ssim"], per["sense"]["ssim"])
    out = {"command": f"python results/grappa/grappa_vs_sense.py {data} {limit}", "split": "test",
           "slices": int(limit), "cells": rows}
    write_text_atomic("results/grappa/results.json", json.dumps(out, indent=1, default=float))
    import numpy as np

    print("| cell | zero-filled PSNR | SENSE PSNR / SSIM | GRAPPA PSNR / SSIM | GRAPPA − SENSE (wins) |")
    print("|---|---|---|---|---|")
    for spec in CELLS:
        r = rows[spec]
        f = lambda m, k: f"{np.mean(r[m][k]):.2f}" if k == "psnr" else f"{np.mean(r[m][k]):.3f}"  # noqa: E731
        d = r["grappa_minus_sense_psnr"]
        print(f"| {spec} | {f('zerofilled', 'psnr')} | {f('sense', 'psnr')} / {f('sense', 'ssim')} | "
              f"{f('grappa', 'psnr')} / {f('grappa', 'ssim')} | {d['mean']:+.2f} dB ({d['wins']}/{d['n']}) |")


if __name__ == "__main__":
    main(*sys.argv[1:])
