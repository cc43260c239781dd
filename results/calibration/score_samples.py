"""Score the product's error estimate (recon_core.uncertainty, the factors of a prior's manifest) on the .npz files of
collect_samples.py, for K = 2, 4, 8 (the first K of the collected samples), per cell (mask kind × acceleration):
per-pixel Spearman of the error estimate vs |error| in the head, ±1σ / ±2σ coverage, and over all slices of a file
the Spearman of the per-slice expected RMS error vs the actual one (issue 27's targets).

    python results/calibration/score_samples.py MANIFEST.json OUT.json NPZ [NPZ ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
from scipy.stats import spearmanr

from recon_core.uncertainty import ErrorModel, error_estimate, expected_rmse


def load(path):
    z = np.load(path)
    d: dict = {}
    for k in z.files:
        s, n = k.split("|")
        d.setdefault(s, {})[n] = z[k]
    return d


def cell_of(key: str) -> str:
    """test3_x4 → uniform1dx4, test3_poisson2dx8 → poisson2dx8; real keys (one brain × mask each) as they are."""
    if key.startswith("real_"):
        return key
    tail = key.split("_", 1)[1]
    return f"uniform1d{tail}" if tail.startswith("x") else tail


def score(D: dict, em: ErrorModel, Ks=(2, 4, 8)) -> dict:
    out: dict = {}
    for K in Ks:
        per_cell: dict = {}
        slices = []
        for key, d in D.items():
            smp = d["samples"]
            if smp.shape[0] < K:
                continue
            smp = smp[:K]
            mean = smp.mean(0)
            std = np.sqrt((np.abs(smp - mean) ** 2).mean(0))
            err = error_estimate(std, K, float(d["accel"]), em)
            m = d["region"].astype(bool)
            e = np.abs(np.abs(mean) - d["ref"])[m]
            s = err[m]
            row = {"spearman": float(spearmanr(s, e).statistic), "cov1": float((e <= s).mean()),
                   "cov2": float((e <= 2 * s).mean()), "expected_rmse": expected_rmse(err, m),
                   "actual_rmse": float(np.sqrt((e ** 2).mean()))}
            per_cell.setdefault(cell_of(key), []).append(row)
            slices.append(row)
        if not slices:
            continue
        cells = {c: {k: round(float(np.mean([r[k] for r in rows])), 3) for k in ("spearman", "cov1", "cov2")}
                 | {"slices": len(rows),
                    "per_slice_spearman": round(float(spearmanr([r["expected_rmse"] for r in rows],
                                                                [r["actual_rmse"] for r in rows]).statistic), 3)
                    if len(rows) > 2 else None}
                 for c, rows in sorted(per_cell.items())}
        out[f"K{K}"] = {"cells": cells, "per_slice_spearman_all": round(float(spearmanr(
            [r["expected_rmse"] for r in slices], [r["actual_rmse"] for r in slices]).statistic), 3)}
    return out


def main():
    manifest, out_path, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    em = ErrorModel.from_json(json.load(open(manifest)).get("uncertainty"))
    res = {"error_model": em.to_json(), "files": {}}
    for f in files:
        res["files"][f] = score(load(f), em)
        for K, v in res["files"][f].items():
            print(f, K, "all-slices per-slice Spearman", v["per_slice_spearman_all"])
            for c, r in v["cells"].items():
                print("   ", c, r)
    with open(out_path, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
