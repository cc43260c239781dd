"""Blend probe (session 18): do convex / least-squares combinations of the self-validation candidates beat each
alone? Weights fitted on the held-out samples of two folds; the blend of the full-data images scored.

    python results/selfval/blend_probe.py OUT.jsonl --real FILES --sim-slices N [--part I/N] [--threads T]

(Session 18 ran it before the unbiased reference became the default; re-run, it scores against the unbiased one.)"""
import json, sys, os, time, argparse
import numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probe import add_case_arguments, part_cases
from recon_core.baselines import reconstruct
from recon_core.samplers import SamplerConfig, diffusion_sampler
from recon_core.samplers.selfval import holdout_mask, CANDIDATES, candidate
from recon_core.fft import fft2c_np

ap = argparse.ArgumentParser(); ap.add_argument("out"); add_case_arguments(ap)
args = ap.parse_args()
prior, todo = part_cases(args, "default")
samp = diffusion_sampler("dds", validated=False)
names = [n for n, _, _ in CANDIDATES]

def run_all(k, s, m, rec):
    c = SamplerConfig()
    out = {}
    for n in names:
        meth, sets = candidate(n, c)
        if sets is None:
            out[n] = np.asarray(reconstruct(meth, k[None], s[None], m))[0]
        else:
            out[n] = np.asarray(samp(prior, k[None], s[None], m, records=[rec], config=c.replace(**sets), device="cpu").image)[0]
    return out

def fit(P, y, kind):
    # P: (n, N) complex predictions, y: (N,) complex; real weights
    A = np.concatenate([P.real, P.imag], 1).T; b = np.concatenate([y.real, y.imag])
    if kind == "ls":
        return np.linalg.lstsq(A, b, rcond=None)[0]
    # convex pair grid
    best = None
    for a in np.linspace(0, 1, 101):
        w = np.array([a, 1 - a]); r = np.sum((A @ w - b) ** 2)
        if best is None or r < best[0]: best = (r, w)
    return best[1]

for name, spec, build in todo:
    t0 = time.time()
    k, s, m, rec, score = build()
    full = run_all(k, s, m, rec)
    row = {"slice": name, "mask": spec}
    for n in names: row[n] = score(full[n])[0]
    # held-out predictions, two folds pooled
    P = {n: [] for n in names}; Y = []
    for f in range(2):
        held, scored, what = holdout_mask(m, 0.1, f)
        if not held.any(): continue
        red = m & ~held
        imgs = run_all(k * red[None], s, red, rec)
        for n in names: P[n].append(fft2c_np(s * imgs[n][None])[:, scored].ravel())
        Y.append(k[:, scored].ravel())
    y = np.concatenate(Y); P = {n: np.concatenate(v) for n, v in P.items()}
    row["heldout_nmse"] = {n: float(np.sum(np.abs(P[n]-y)**2)/np.sum(np.abs(y)**2)) for n in names}
    combos = {"dds+l1": ["dds", "l1wavelet-shift"], "ddsS+l1": ["dds-sparse", "l1wavelet-shift"],
              "dds+ddsS": ["dds", "dds-sparse"], "dds+sense": ["dds", "sense"]}
    for cn, pair in combos.items():
        Pm = np.stack([P[n] for n in pair])
        for kind in ("cvx", "ls"):
            w = fit(Pm, y, kind)
            img = sum(wi * full[n] for wi, n in zip(w, pair))
            row[f"{cn}:{kind}"] = score(img)[0]; row[f"{cn}:{kind}:w"] = [round(float(v), 3) for v in w]
        # oracle convex
        row[f"{cn}:oracle"] = max(score(a * full[pair[0]] + (1 - a) * full[pair[1]])[0] for a in np.linspace(0, 1, 21))
    Pm = np.stack([P[n] for n in names]); w = fit(Pm, y, "ls")
    row["all:ls"] = score(sum(wi * full[n] for wi, n in zip(w, names)))[0]; row["all:ls:w"] = [round(float(v), 3) for v in w]
    row["sec"] = round(time.time() - t0, 1)
    print(json.dumps(row), flush=True)
    with open(args.out, "a") as fh: fh.write(json.dumps(row) + "\n")
