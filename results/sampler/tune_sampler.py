"""Choose the DDS defaults on the *validation* split (never the test split the README reports).

    python results/sampler/tune_sampler.py MODEL_DIR /work/data/sim128 [CACHE_DIR]

Eight sampler settings (CFG 2), 8 validation slices, uniform1d ×4 and ×8, the maps every method gets;
BART pics W (λ tuned on the same slices: favourable to BART) as the reference line. Prints a Markdown table
and writes results/sampler/results.json. Seconds are per slice at batch 8, this machine's CPU and threads.
"""

import json
import sys

import numpy as np

from training.evaluation import EvalConfig, Evaluation
from recon_core.io_utils import write_text_atomic
from recon_core.samplers import SamplerConfig

CELLS = ("uniform1d:4", "uniform1d:8")
SETTINGS = {
    "A cold, γ 5 (old default)": dict(nfe=50, gamma=5.0, eta=0.8),
    "B cold, γ 20": dict(nfe=50, gamma=20.0, eta=0.8),
    "C warm 0.3, γ 20": dict(nfe=50, gamma=20.0, eta=0.8, warm_start=0.3),
    "D warm 0.5, γ 20": dict(nfe=50, gamma=20.0, eta=0.8, warm_start=0.5),
    "E warm 0.3, γ 20, η 1": dict(nfe=50, gamma=20.0, eta=1.0, warm_start=0.3),
    "F warm 0.3, γ 20, final CG 10": dict(nfe=50, gamma=20.0, eta=0.8, warm_start=0.3, final_cg_iters=10),
    "G warm 0.5, γ 20, final CG 10": dict(nfe=50, gamma=20.0, eta=0.8, warm_start=0.5, final_cg_iters=10),
    "H warm 0.3, γ 5": dict(nfe=50, gamma=5.0, eta=0.8, warm_start=0.3),
}


def main(model, data, cache="/work/runs/tune_cache"):
    rows, ref = {}, {}
    for name, kw in SETTINGS.items():
        ev = Evaluation(EvalConfig(model=model, data=data, out=cache, masks=CELLS, cfg=(2.0,), limit=8, split="val",
                                   sampler=SamplerConfig(cfg=2.0, **kw), baselines=("zerofilled", "bart-w"),
                                   ablations=False, pathology=False, figures=False), progress=False)
        rows[name] = {}
        for spec in CELLS:
            r = ev.dds(spec, 2.0)
            rows[name][spec] = {"psnr": float(np.mean(r["psnr"])), "ssim": float(np.mean(r["ssim"])),
                                "seconds": float(r["seconds"]), "per_slice_psnr": r["psnr"].tolist()}
            if spec not in ref:
                b = ev.baseline(spec, "bart-w")
                ref[spec] = {"psnr": float(np.mean(b["psnr"])), "ssim": float(np.mean(b["ssim"])),
                             "per_slice_psnr": b["psnr"].tolist()}
        print(name, {s: round(v["psnr"], 2) for s, v in rows[name].items()}, flush=True)
    out = {"command": f"python results/sampler/tune_sampler.py {model} {data}", "split": "val", "slices": 8,
           "settings": SETTINGS, "dds": rows, "bart_w": ref}
    write_text_atomic("results/sampler/results.json", json.dumps(out, indent=1))
    print("| setting | ×4 PSNR / SSIM | ×8 PSNR / SSIM | s/slice (×4) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        a, b = r[CELLS[0]], r[CELLS[1]]
        print(f"| {name} | {a['psnr']:.2f} / {a['ssim']:.3f} | {b['psnr']:.2f} / {b['ssim']:.3f} | {a['seconds']:.2f} |")
    print(f"| BART pics W (λ tuned on these slices) | {ref[CELLS[0]]['psnr']:.2f} / {ref[CELLS[0]]['ssim']:.3f} | "
          f"{ref[CELLS[1]]['psnr']:.2f} / {ref[CELLS[1]]['ssim']:.3f} | |")


if __name__ == "__main__":
    main(*sys.argv[1:])
