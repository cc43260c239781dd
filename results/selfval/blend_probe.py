"""Blend probe (session 18): do convex / least-squares combinations of the self-validation candidates beat each
alone? Weights fitted on the held-out samples of two folds (the self-validation's own hold-out), the blend of the
full-data images scored.

    python results/selfval/blend_probe.py OUT.jsonl --real FILES --sim-slices N [--part I/N] [--threads T]

(Session 18 ran it before the unbiased reference became the default; re-run, it scores against the unbiased one.)
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from recon_core.baselines import reconstruct
from recon_core.fft import fft2c_np
from recon_core.samplers import SamplerConfig, diffusion_sampler
from recon_core.samplers.selfval import CANDIDATES, candidate, holdout_mask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe import add_case_arguments, part_cases  # noqa: E402

NAMES = [n for n, _, _ in CANDIDATES]
PAIRS = {"dds+l1": ("dds", "l1wavelet-shift"), "ddsS+l1": ("dds-sparse", "l1wavelet-shift"),
         "dds+ddsS": ("dds", "dds-sparse"), "dds+sense": ("dds", "sense")}


def run_all(sampler, prior, k, s, m, rec) -> dict:
    """{candidate: (ny, nx) complex image} of every self-validation candidate on (C, ny, nx) data."""
    c = SamplerConfig()
    out = {}
    for n in NAMES:
        meth, sets = candidate(n, c)
        if sets is None:
            out[n] = np.asarray(reconstruct(meth, k[None], s[None], m))[0]
        else:
            res = sampler(prior, k[None], s[None], m, records=[rec], config=c.replace(**sets), device="cpu")
            out[n] = np.asarray(res.image)[0]
    return out


def fit(P: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """Real weights w of the candidates' held-out predictions P (n, N) complex fitting y (N,): "ls" unconstrained
    least squares, "cvx" the best convex pair on a 0.01 grid."""
    A = np.concatenate([P.real, P.imag], 1).T
    b = np.concatenate([y.real, y.imag])
    if kind == "ls":
        return np.linalg.lstsq(A, b, rcond=None)[0]
    grid = [np.array([a, 1 - a]) for a in np.linspace(0, 1, 101)]
    return min(grid, key=lambda w: float(np.sum((A @ w - b) ** 2)))


def probe(sampler, prior, name, spec, build) -> dict:
    t0 = time.time()
    k, s, m, rec, score = build()
    full = run_all(sampler, prior, k, s, m, rec)
    row = {"slice": name, "mask": spec, **{n: score(full[n])[0] for n in NAMES}}
    P, Y = {n: [] for n in NAMES}, []
    for f in range(2):                      # held-out predictions, two folds pooled
        held, scored, _ = holdout_mask(m, 0.1, f)
        if not held.any():
            continue
        red = m & ~held
        imgs = run_all(sampler, prior, k * red[None], s, red, rec)
        for n in NAMES:
            P[n].append(fft2c_np(s * imgs[n][None])[:, scored].ravel())
        Y.append(k[:, scored].ravel())
    y = np.concatenate(Y)
    P = {n: np.concatenate(v) for n, v in P.items()}
    row["heldout_nmse"] = {n: float(np.sum(np.abs(P[n] - y) ** 2) / np.sum(np.abs(y) ** 2)) for n in NAMES}
    for cn, pair in PAIRS.items():
        Pm = np.stack([P[n] for n in pair])
        for kind in ("cvx", "ls"):
            w = fit(Pm, y, kind)
            row[f"{cn}:{kind}"] = score(sum(wi * full[n] for wi, n in zip(w, pair)))[0]
            row[f"{cn}:{kind}:w"] = [round(float(v), 3) for v in w]
        row[f"{cn}:oracle"] = max(score(a * full[pair[0]] + (1 - a) * full[pair[1]])[0]
                                  for a in np.linspace(0, 1, 21))
    w = fit(np.stack([P[n] for n in NAMES]), y, "ls")
    row["all:ls"] = score(sum(wi * full[n] for wi, n in zip(w, NAMES)))[0]
    row["all:ls:w"] = [round(float(v), 3) for v in w]
    row["sec"] = round(time.time() - t0, 1)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    add_case_arguments(ap)
    args = ap.parse_args()
    prior, todo = part_cases(args, "default")
    sampler = diffusion_sampler("dds", validated=False)
    for name, spec, build in todo:
        row = probe(sampler, prior, name, spec, build)
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
