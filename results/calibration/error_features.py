"""Which candidate map ranks the actual |error| inside the head (issue 27; training/RUNS.md, \"Uncertainty\")?
Usage: python results/calibration/error_features.py val real   (the .npz files of collect_samples.py)"""
import os, sys, numpy as np
from scipy.stats import spearmanr
from scipy import ndimage as ndi
def load(name):
    z = np.load(f"{os.environ.get('CONTEXTMRI_CAL_DIR', '/work/runs/cal2')}/{name}.npz")
    d = {}
    for k in z.files:
        s, n = k.split("|"); d.setdefault(s, {})[n] = z[k]
    return d
def feats(d, K):
    smp = d["samples"][:K]
    mean = smp.mean(0)
    var = (np.abs(smp - mean) ** 2).mean(0)          # as the product's std (complex spread)
    f = {"std": np.sqrt(var)}
    for w in (1, 2, 3):
        f[f"std_s{w}"] = np.sqrt(ndi.gaussian_filter(var, w))
    f["dsense"] = np.sqrt(ndi.gaussian_filter(np.abs(np.abs(mean) - np.abs(d["sense"])) ** 2, 2))
    gy, gx = np.gradient(ndi.gaussian_filter(np.abs(mean), 1))
    f["grad"] = np.hypot(gy, gx)
    f["mag"] = np.abs(mean)
    return mean, f
def score(e, s):
    return spearmanr(s, e).statistic
def main():
    for name in sys.argv[1:]:
        D = load(name)
        for K in (2, 4):
            rows = {}
            for key, d in D.items():
                mean, f = feats(d, K)
                m = d["region"].astype(bool)
                e = np.abs(np.abs(mean) - d["ref"])[m]
                for fn, v in f.items():
                    rows.setdefault(fn, []).append(score(e, v[m]))
                # combos
                comb = np.sqrt(ndi.gaussian_filter((np.abs(d["samples"][:K] - mean) ** 2).mean(0), 2) + f["dsense"] ** 2)
                rows.setdefault("std_s2+dsense", []).append(score(e, comb[m]))
            print(name, "K", K, {k: round(float(np.mean(v)), 3) for k, v in rows.items()})
    print("oracle: local RMS of the actual error (smoothed e², w) vs |e|")
    for name in sys.argv[1:]:
        D = load(name)
        for key, d in D.items():
            mean = d["samples"][:4].mean(0)
            m = d["region"].astype(bool)
            e2 = (np.abs(mean) - d["ref"]) ** 2
            print(key, {w: round(score(np.sqrt(e2[m]), np.sqrt(ndi.gaussian_filter(e2, w))[m]), 3) for w in (1, 2, 4)},
                  "std_s2 K4", round(score(np.sqrt(e2[m]), feats(d, 4)[1]["std_s2"][m]), 3))


if __name__ == "__main__":
    main()
