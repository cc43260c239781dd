"""Fit c(R, K) on validation, score test/real (issue 27). Usage: python results/calibration/fit_check.py POOL_PX val test real"""
import os, sys, numpy as np
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from error_features import load  # noqa: E402
from scipy.stats import spearmanr
from scipy import ndimage as ndi
W = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
def pooled(d, K):
    smp = d["samples"][:K]; mean = smp.mean(0)
    var = (np.abs(smp - mean) ** 2).sum(0) / (K - 1)
    return mean, np.sqrt(ndi.gaussian_filter(var, W)) if W > 0 else np.sqrt(var)
def errs(D, K, accel):
    E, S = [], []
    for key, d in D.items():
        if int(d["accel"]) != accel: continue
        mean, s = pooled(d, K); m = d["region"].astype(bool)
        E.append(np.abs(np.abs(mean) - d["ref"])[m]); S.append(s[m])
    return E, S
val = load("val")
factors = {}
for K in (2, 4):
    for a in (4, 8):
        E, S = errs(val, K, a)
        e, s = np.concatenate(E), np.concatenate(S)
        r = np.sort(e / s)          # coverage(c) = P(e <= 2 c s) = 0.92 → c = quantile(e/s, 0.92)/2
        c = float(np.quantile(e / s, 0.92) / 2)
        factors[(K, a)] = c
        print(f"K{K} x{a}: c={c:.2f}  rms-match c={np.sqrt((e**2).mean()/(s**2).mean()):.2f}")
def report(name, D):
    for K in (2, 4):
        rows = []
        for key, d in D.items():
            a = int(d["accel"]); mean, s = pooled(d, K)
            c = np.exp(np.interp(np.log(a), np.log([4, 8]), np.log([factors[(K, 4)], factors[(K, 8)]])))
            s = c * s; m = d["region"].astype(bool)
            e = np.abs(np.abs(mean) - d["ref"])[m]; sm = s[m]
            rows.append((key, spearmanr(sm, e).statistic, (e <= sm).mean(), (e <= 2 * sm).mean(), sm.mean() / np.sqrt((e**2).mean()),
                         np.sqrt((sm**2).mean()), np.sqrt((e**2).mean())))
        print(name, f"K{K}", "spearman %.2f ±1σ %.2f ±2σ %.2f σ/rmse %.2f" % tuple(np.mean([r[1:5] for r in rows], 0)))
        for r in rows: print("   ", r[0], "sp %.2f c1 %.2f c2 %.2f ratio %.2f exp %.3g act %.3g" % r[1:])
        ex, ac = [r[5] for r in rows], [r[6] for r in rows]
        print("    per-slice expected vs actual RMSE spearman %.2f" % spearmanr(ex, ac).statistic)
for nm in sys.argv[2:]:
    report(nm, load(nm))
