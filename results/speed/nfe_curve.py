"""Issue 25 item 2: PSNR / time of DDS over the NFE grid and the warm-start depth, on simulator validation slices
(uniform 1-D ×4 and ×8, the evaluation's 128² 8-coil setting) and on the real brains (random ×4, 8 % centre),
with the product settings otherwise (engine/precision auto).

Usage: python results/speed/nfe_curve.py OUT.json [REAL.h5 ...]   (threads: CONTEXTMRI_THREADS, default 2)
Writes OUT.json and prints a markdown table: per (NFE, warm start) the network evaluations, mean PSNR per set
and mean seconds per slice (DDS only, coil maps excluded).
"""
import json
import os
import sys
import time

import numpy as np
import torch

from recon_core.coils import coil_maps
from recon_core.masks import make_mask
from recon_core.metadata.header import record_from_header
from recon_core.metrics import masked_metrics, psnr
from recon_core.prior.cache import get_prior
from recon_core.raw.image import scanner_units, slice_maps
from recon_core.raw.retrospective import load_real, undersample
from recon_core.samplers import SamplerConfig
from recon_core.samplers.dds import dds_reconstruct
from recon_core.sim.export import simulate_slice

NFES = (10, 20, 30, 50)
WARM = (0.2, 0.3, 0.5, None)
N_VAL = 4


def cases(real_files):
    out = []
    for i in range(N_VAL):
        full, ref, rec = simulate_slice(128, 8, 100 + i, split="val")
        for R in (4, 8):
            m = make_mask("uniform1d", full.shape[-2:], float(R), seed=i)
            k = (full * m.mask[None]).astype(np.complex64)
            out.append((f"sim ×{R}", k, coil_maps(k[None], mask=m.mask)[0], m.mask, rec,
                        lambda img, ref=ref: float(psnr(ref, img))))
    for f in real_files:
        rs = load_real(f)[0]
        sd, _ = undersample(rs.sd, "uniform1d:4:0.08", 0)
        maps = slice_maps(sd)
        rec = record_from_header(rs.header, slice_index=sd.key.slice)
        out.append(("real ×4", sd.kspace, maps, sd.mask, rec,
                    lambda img, rs=rs, sd=sd, maps=maps: masked_metrics(rs.reference, scanner_units(sd, maps, img),
                                                                          rs.region)["psnr"]))
    return out


def main():
    torch.set_num_threads(int(os.environ.get("CONTEXTMRI_THREADS", "2")))
    prior = get_prior("default", "cpu")
    cs = cases(sys.argv[2:])
    for name, k, maps, mask, rec, score in cs:      # warm-up: runtime choice, compiled shapes
        dds_reconstruct(prior, k[None], maps[None], mask, [rec], config=SamplerConfig(nfe=1))
    rows = []
    for nfe in NFES:
        for ws in WARM:
            cfg = SamplerConfig(nfe=nfe, warm_start=ws)
            per = {}
            evals = None
            for name, k, maps, mask, rec, score in cs:
                t0 = time.perf_counter()
                r = dds_reconstruct(prior, k[None], maps[None], mask, [rec], config=cfg)
                dt = time.perf_counter() - t0
                evals = r.nfe
                per.setdefault(name, []).append((score(r.image[0]), dt))
            row = {"nfe": nfe, "warm_start": ws, "evaluations": evals, "engine": r.timings.get("engine"),
                   "precision": r.timings.get("precision"),
                   **{n: {"psnr": float(np.mean([p for p, _ in v])), "seconds": float(np.mean([t for _, t in v])),
                          "n": len(v)} for n, v in per.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(sys.argv[1], "w") as f:
        json.dump(rows, f, indent=1)
    sets = [n for n in rows[0] if isinstance(rows[0][n], dict)]
    print("| NFE | warm start | evaluations | " + " | ".join(f"{n} PSNR" for n in sets) + " | s/slice |")
    print("|---" * (4 + len(sets)) + "|")
    for r in rows:
        ws = "none" if r["warm_start"] is None else f"{r['warm_start']:g}"
        sec = np.mean([r[n]["seconds"] for n in sets])
        print(f"| {r['nfe']} | {ws} | {r['evaluations']} | " + " | ".join(f"{r[n]['psnr']:.2f}" for n in sets)
              + f" | {sec:.2f} |")


if __name__ == "__main__":
    main()
