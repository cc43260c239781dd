"""Choose LDPM's sampler settings on the *validation* split (never the test split the README reports).

    python results/latent/tune_ldpm.py LATENT_MODEL /work/data/sim128 [CACHE_DIR]

Settings of the dual-stage sampler (CFG 2, NFE-50 grid; unnamed settings at their defaults: warm start
0.3, p = 0.2, g = 1 since session 5 — session 5's table had E and G at g = 0.1, the default then), 8 validation slices, uniform1d ×4/×8 and
poisson2d ×8, the maps every method gets; DDS at its defaults with the pixel prior as the reference line.
Prints a Markdown table and writes results/latent/tune_ldpm.json. Seconds are per slice at batch 8.
"""

import json
import sys

import numpy as np

from training.evaluation import EvalConfig, Evaluation
from recon_core.io_utils import write_text_atomic
from recon_core.samplers import SamplerConfig

CELLS = ("uniform1d:4", "uniform1d:8", "poisson2d:8")
SETTINGS = {
    "A warm 0.3, p 0.2, g 0.1 (LDPM's p, g)": dict(ldpm_grad=0.1),
    "B warm 0.3, p 0.2, g 0 (stage 2 off)": dict(ldpm_grad=0.0),
    "C warm 0.3, p 0.2, g 1": dict(ldpm_grad=1.0),
    "D warm 0.3, p 0 (stage 1 only)": dict(ldpm_switch=0.0),
    "E warm 0.5, p 0.2, g 1": dict(warm_start=0.5),
    "F warm 0.5, p 0 (stage 1 only)": dict(warm_start=0.5, ldpm_switch=0.0),
    "G cold, p 0.2, g 1": dict(warm_start=None),
    "H warm 0.3, p 0.2, g 3": dict(ldpm_grad=3.0),
    "I warm 0.3, p 0.4, g 1": dict(ldpm_switch=0.4),
    "J warm 0.3, p 0.2, g 10": dict(ldpm_grad=10.0),
    "K warm 0.3, p 0.2, g 30": dict(ldpm_grad=30.0),
}


def main(latent, data, cache="/work/runs/tune_cache"):
    rows, ref = {}, {}
    base = dict(model="default", data=data, out=cache, masks=CELLS, cfg=(2.0,), limit=8, split="val",
                baselines=("zerofilled",), ablations=False, pathology=False, figures=False, latent_model=latent,
                methods=("ldpm",))
    ev0 = Evaluation(EvalConfig(**base, sampler=SamplerConfig()), progress=False)
    for spec in CELLS:
        r = ev0.dds(spec, 2.0)
        ref[spec] = {"psnr": float(np.mean(r["psnr"])), "ssim": float(np.mean(r["ssim"])), "seconds": float(r["seconds"])}
    for name, kw in SETTINGS.items():
        ev = Evaluation(EvalConfig(**base, sampler=SamplerConfig(cfg=2.0, **kw)), progress=False)
        rows[name] = {}
        for spec in CELLS:
            r = ev.dds(spec, 2.0, model="latent", method="ldpm")
            rows[name][spec] = {"psnr": float(np.mean(r["psnr"])), "ssim": float(np.mean(r["ssim"])),
                                "seconds": float(r["seconds"]), "per_slice_psnr": r["psnr"].tolist()}
        print(name, {s: round(v["psnr"], 2) for s, v in rows[name].items()}, flush=True)
    out = {"command": f"python results/latent/tune_ldpm.py {latent} {data}", "split": "val", "slices": 8,
           "settings": SETTINGS, "ldpm": rows, "dds_default_pixel_prior": ref}
    write_text_atomic("results/latent/tune_ldpm.json", json.dumps(out, indent=1))
    print("| setting | " + " | ".join(f"{c} PSNR / SSIM" for c in CELLS) + " | s/slice (×4) |")
    print("|---|" + "---|" * len(CELLS) + "---|")
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[c]['psnr']:.2f} / {r[c]['ssim']:.3f}" for c in CELLS) +
              f" | {r[CELLS[0]]['seconds']:.2f} |")
    print("| DDS defaults (pixel prior) | " + " | ".join(f"{ref[c]['psnr']:.2f} / {ref[c]['ssim']:.3f}" for c in CELLS) +
          f" | {ref[CELLS[0]]['seconds']:.2f} |")


if __name__ == "__main__":
    main(*sys.argv[1:])
