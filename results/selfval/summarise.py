"""Summarise selfval_check.py outputs (one or more OUT.json of parallel parts) as a markdown table + totals, with
BART pics W at its best λ (results/selfval/bart_rows.py) beside them when given.

    python results/selfval/summarise.py [--bart BART.json] CHECK.json [...] > OUT.md"""
import json
import sys

import numpy as np


def main(paths):
    bart = {}
    if paths[:1] == ["--bart"]:
        bart = {(r["slice"], r["mask"]): r["bart_w"] for r in json.load(open(paths[1]))}
        paths = paths[2:]
    rows = sorted((r for p in paths for r in json.load(open(p))["rows"]), key=lambda r: (r["slice"], r["mask"]))
    for r in rows:
        r["bart_w"] = bart.get((r["slice"], r["mask"]))
    print("| slice | mask | SENSE | L1-wavelet | BART W (best λ) | DDS | self-validated (choice) | − better candidate | "
          "− BART W | − DDS | s | prior_unsure |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        bw = "—" if r["bart_w"] is None else f"{r['bart_w']:.2f}"
        dbw = "—" if r["bart_w"] is None else f"{r['selfval'] - r['bart_w']:+.2f}"
        print(f"| {r['slice']} | {r['mask']} | {r['sense']:.2f} | {r.get('l1wavelet-shift', r.get('l1wavelet')):.2f} | {bw} | {r['dds']:.2f} | "
              f"{r['selfval']:.2f} ({r['chosen']}) | {r['selfval_minus_classical']:+.2f} | {dbw} | "
              f"{r['selfval_minus_dds']:+.2f} | {r['selfval_seconds']} | {'yes' if r['prior_unsure'] else ''} |")
    print()
    for g, rs in (("real", [r for r in rows if not r["slice"].startswith("sim")]),
                  ("simulator", [r for r in rows if r["slice"].startswith("sim")])):
        if not rs:
            continue
        a = np.array([r["selfval_minus_classical"] for r in rs])
        wb = [r["selfval"] - r["bart_w"] for r in rs if r["bart_w"] is not None]
        vs_bart = (f"; − BART W (best λ) mean {np.mean(wb):+.2f}, worst {np.min(wb):+.2f}, best {np.max(wb):+.2f}"
                   if wb else "")
        b = np.array([r["selfval_minus_dds"] for r in rs])
        print(f"- {g} ({len(rs)} slices): self-validated − better classical candidate mean {a.mean():+.2f} dB, worst "
              f"{a.min():+.2f}, {int((a < -0.2).sum())} below −0.2; − DDS alone mean {b.mean():+.3f}, worst {b.min():+.2f}, "
              f"best {b.max():+.2f}; classical returned {sum(r['chosen'] in ('sense', 'l1wavelet', 'l1wavelet-shift') for r in rs)}, "
              f"prior_unsure {sum(bool(r['prior_unsure']) for r in rs)}{vs_bart}")


if __name__ == "__main__":
    main(sys.argv[1:])
