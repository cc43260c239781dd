"""Decision rules for self-validation, scored offline on probe.py's JSON lines (no reconstruction re-run).

    python results/selfval/rules.py PROBE.jsonl [...]

Per rule and per case group (real / simulator): the mean PSNR of the chosen reconstruction (all lines) minus the
product without self-validation (DDS γ 20), minus the better classical candidate (target: never below −0.2 dB), the
worst case, and how often the choice is the best candidate. A rule sees only the held-out data of its folds."""
import json
import sys

import numpy as np

CLASSICAL = ("sense", "l1wavelet")


def choose(row, cands, folds, margin=0.0):
    """The candidate with the lowest held-out NMSE summed over `folds`; a DDS candidate must beat the best classical
    by a relative `margin` (e.g. 0.02: 2 % lower held-out NMSE), else the best classical is kept."""
    fs = [row["folds"][f] for f in folds if f < len(row["folds"]) and row["folds"][f]]
    if not fs:
        return "dds20"
    tot = {c: sum(f["nmse"][c] for f in fs) for c in cands}
    best = min(tot, key=tot.get)
    cls = [c for c in cands if c in CLASSICAL]
    if best not in CLASSICAL and cls:
        bc = min(cls, key=tot.get)
        if tot[best] > (1 - margin) * tot[bc]:
            return bc
    return best


RULES = {
    "no self-validation (DDS γ 20)": lambda r: "dds20",
    "session 10 (dds20, dds20n, sense, L1; 1 fold)": lambda r: choose(r, ("dds20", "dds20n", "sense", "l1wavelet"), [0]),
    "γ 10/20/40 + sense, L1; 1 fold": lambda r: choose(r, ("dds10", "dds20", "dds40", "sense", "l1wavelet"), [0]),
    "γ 10/20/40 + sense, L1; 2 folds": lambda r: choose(r, ("dds10", "dds20", "dds40", "sense", "l1wavelet"), [0, 1]),
    "γ 10/20/40 + sense, L1; 3 folds": lambda r: choose(r, ("dds10", "dds20", "dds40", "sense", "l1wavelet"), [0, 1, 2]),
    "γ 10/20/40 + L1; 1 fold": lambda r: choose(r, ("dds10", "dds20", "dds40", "l1wavelet"), [0]),
    "γ 20/40 + L1; 1 fold": lambda r: choose(r, ("dds20", "dds40", "l1wavelet"), [0]),
    "γ 10/20/40 + sense, L1; 1 fold, margin 2 %": lambda r: choose(r, ("dds10", "dds20", "dds40", "sense", "l1wavelet"), [0], 0.02),
    "γ 10/20/40 + sense, L1; 1 fold, margin 5 %": lambda r: choose(r, ("dds10", "dds20", "dds40", "sense", "l1wavelet"), [0], 0.05),
    "oracle among γ 10/20/40, sense, L1": lambda r: max(("dds10", "dds20", "dds40", "sense", "l1wavelet"), key=lambda c: r["full"][c][0]),
}


def main(paths):
    rows = [json.loads(line) for p in paths for line in open(p)]
    groups = {"real": [r for r in rows if not r["slice"].startswith("sim")],
              "sim": [r for r in rows if r["slice"].startswith("sim")]}
    print(f"{len(rows)} cases: " + ", ".join(f"{g} {len(v)}" for g, v in groups.items()))
    for name, rule in RULES.items():
        line = [f"{name:48s}"]
        for g, rs in groups.items():
            ch = [rule(r) for r in rs]
            got = np.array([r["full"][c][0] for r, c in zip(rs, ch)])
            base = np.array([r["full"]["dds20"][0] for r in rs])
            cls = np.array([max(r["full"][c][0] for c in CLASSICAL) for r in rs])
            line.append(f"{g}: vs DDS {np.mean(got - base):+.2f} (worst {np.min(got - base):+.2f}), vs classical "
                        f"{np.mean(got - cls):+.2f} (worst {np.min(got - cls):+.2f}, {int(np.sum(got - cls < -0.2))} below −0.2)")
        print(" | ".join(line))


if __name__ == "__main__":
    main(sys.argv[1:])
