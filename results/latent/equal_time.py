"""Equal wall time per slice: PSNR against seconds for DDS (pixel prior) and LDPM (latent prior) over NFE.

    python results/latent/equal_time.py LATENT_MODEL DATA_DIR [PIXEL_MODEL] [LIMIT] [OUT_CACHE]

On the test split (LIMIT slices, default 8: the evaluation's selection), cells uniform1d ×4/×8 and
poisson2d ×8, CFG 2, each sampler at its defaults except the NFE grid (DDS 10/20/50/100; LDPM
20/50/100/200), the same ESPIRiT maps for both. Seconds are per slice at batch 8 on this machine's torch
threads (run it with one thread, beside nothing else, for timings that compare). Writes
results/latent/equal_time.json and prints a Markdown table; "DDS at LDPM's time" is DDS's PSNR
interpolated (in log seconds) at LDPM's seconds per slice.
"""

import json
import sys

import numpy as np

from training.evaluation import EvalConfig, Evaluation
from recon_core.io_utils import write_text_atomic
from recon_core.samplers import SamplerConfig

CELLS = ("uniform1d:4", "uniform1d:8", "poisson2d:8")
NFE = {"dds": (10, 20, 50, 100), "ldpm": (20, 50, 100, 200)}


def main(latent, data, pixel="default", limit=8, cache="/work/runs/equal_time_cache"):
    base = dict(model=pixel, data=data, out=cache, masks=CELLS, cfg=(2.0,), limit=int(limit), split="test",
                baselines=("zerofilled",), ablations=False, pathology=False, figures=False, latent_model=latent,
                methods=("ldpm",))
    rows = {"dds": {}, "ldpm": {}}
    for method, grid in NFE.items():
        for nfe in grid:
            ev = Evaluation(EvalConfig(**base, sampler=SamplerConfig(nfe=nfe)), progress=False)
            for spec in CELLS:
                r = ev.dds(spec, 2.0) if method == "dds" else ev.dds(spec, 2.0, model="latent", method="ldpm")
                rows[method].setdefault(spec, []).append(
                    {"nfe": nfe, "psnr": float(np.mean(r["psnr"])), "ssim": float(np.mean(r["ssim"])),
                     "seconds": float(r["seconds"])})
                print(method, nfe, spec, rows[method][spec][-1], flush=True)
    out = {"command": f"python results/latent/equal_time.py {latent} {data} {pixel} {limit}", "split": "test",
           "slices": int(limit), "cfg": 2.0, "rows": rows, "dds_at_ldpm_time": {}}
    print("| cell | LDPM NFE | LDPM s/slice | LDPM PSNR | DDS PSNR at that time | DDS − LDPM |")
    print("|---|---|---|---|---|---|")
    for spec in CELLS:
        d = sorted(rows["dds"][spec], key=lambda v: v["seconds"])
        ts, ps = np.log([v["seconds"] for v in d]), [v["psnr"] for v in d]
        out["dds_at_ldpm_time"][spec] = []
        for v in rows["ldpm"][spec]:
            p = float(np.interp(np.log(v["seconds"]), ts, ps))  # clamped to the DDS grid's ends
            inside = ts[0] <= np.log(v["seconds"]) <= ts[-1]
            out["dds_at_ldpm_time"][spec].append({"nfe": v["nfe"], "seconds": v["seconds"], "dds_psnr": p,
                                                  "within_dds_grid": bool(inside)})
            print(f"| {spec} | {v['nfe']} | {v['seconds']:.2f} | {v['psnr']:.2f} | {p:.2f}{'' if inside else ' (edge)'} "
                  f"| {p - v['psnr']:+.2f} |")
    write_text_atomic("results/latent/equal_time.json", json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
