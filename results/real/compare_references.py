"""Side by side: the same `contextmri evaluate-real` run scored against the plain RSS and against the unbiased
reference (session 18). Prints a markdown table: per slice and mask, DDS and the best classical method
(PSNR dB / SSIM) and DDS − best classical, for each reference.

    python results/real/compare_references.py RSS_OUT UNBIASED_OUT [--main dds]
"""

import argparse
import json
import os

from training.evaluation.real import summary_rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rss")
    ap.add_argument("unbiased")
    ap.add_argument("--main", default="dds")
    a = ap.parse_args()
    runs = []
    for d in (a.rss, a.unbiased):
        with open(os.path.join(d, "results.json")) as fh:
            runs.append(json.load(fh))
    rows = [{(r["slice"], r["mask"]): r for r in summary_rows(res, a.main)} for res in runs]
    print(f"| slice | mask | R | {a.main} (RSS) | best classical (RSS) | diff | {a.main} (unbiased) | "
          "best classical (unbiased) | diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, r0 in rows[0].items():
        r1 = rows[1].get(key)
        cells = []
        for r in (r0, r1):
            if r is None or r["diff_db"] is None:
                cells += ["–", "–", "–"]
                continue
            m, b = r[a.main], r["best_psnr_ssim"]
            cells += [f"{m[0]:.2f} / {m[1]:.4f}", f"{r['best_classical']} {b[0]:.2f} / {b[1]:.4f}",
                      f"{r['diff_db']:+.2f}"]
        print(f"| {key[0]} | {key[1]} | {r0['accel']:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
