"""Two runs of results/real/selfval_check.py with different hold-out rules, case by case (session 19).

    python results/selfval/compare_rules.py CENTRE.json SPREAD.json > OUT.md

Per case: DDS alone, the better classical candidate, and each rule's choice and self-validated PSNR; then per group
(real, simulator) the mean and worst self-validated − classical, the cases more than 0.2 dB below it, and the mean
self-validated − DDS alone.
"""

import json
import sys

import numpy as np


def main(a_path, b_path):
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    ra, rb = a.get("rule", "centre"), b.get("rule", "spread")
    bkey = {(r["slice"], r["mask"]): r for r in b["rows"]}
    pairs = [(r, bkey[(r["slice"], r["mask"])]) for r in a["rows"] if (r["slice"], r["mask"]) in bkey]
    print(f"# Self-validation: hold-out rule {ra} vs {rb} ({len(pairs)} cases; `{a_path}`, `{b_path}`)\n")
    print(f"| slice | mask | DDS alone | best classical candidate | {ra}: choice | PSNR | {rb}: choice | PSNR | {rb} − {ra} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for x, y in pairs:
        print(f"| {x['slice']} | {x['mask']} | {x['dds']:.2f} | {x['classical_best']:.2f} | {x['chosen']} | "
              f"{x['selfval']:.2f} | {y['chosen']} | {y['selfval']:.2f} | {y['selfval'] - x['selfval']:+.2f} |")
    print()
    for group, keep in (("real", lambda r: not r["slice"].startswith("sim")), ("simulator", lambda r: r["slice"].startswith("sim"))):
        sel = [(x, y) for x, y in pairs if keep(x)]
        if not sel:
            continue
        for rule, i in ((ra, 0), (rb, 1)):
            rows = [p[i] for p in sel]
            d = [r["selfval_minus_classical"] for r in rows]
            print(f"- {group}, {rule} ({len(rows)} cases): self-validated − better classical candidate mean {np.mean(d):+.3f}, "
                  f"worst {min(d):+.3f}, {sum(v < -0.2 for v in d)} case(s) below −0.2 dB; − DDS alone mean "
                  f"{np.mean([r['selfval_minus_dds'] for r in rows]):+.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
