"""CG steps per ADMM x-update of the sparse data consistency (session 13): PSNR and wall time per DDS run.

    python results/sparse/admm_cg_sweep.py OUT.jsonl SIM_SLICES [REAL.h5 ...]

Cases as results/selfval/probe.py (real brains × regular1d:2/3, uniform1d:4/6; simulator validation slices ×
uniform1d 4/8, poisson2d 8). Columns "1", "2", "3", "5": `admm_cg_iters` (x-update warm-started at the previous
ADMM iterate), product defaults otherwise. `admm_cg_sweep_s13.jsonl` was made before the option existed (commit
e4ef257 with the x-update patched in from outside): its column "None" is session 12's x-update (5 CG steps started
at v), the others the same warm-started update as the option. `t*`: seconds per run on 2 cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
import types

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "selfval"))


def main(argv):
    import torch

    from probe import cases
    from recon_core.prior.cache import get_prior
    from recon_core.samplers import SamplerConfig, diffusion_sampler

    torch.set_num_threads(2)
    args = types.SimpleNamespace(real=argv[2:], sim_slices=int(argv[1]))
    prior = get_prior("default", "cpu")
    dds = diffusion_sampler("dds", validated=False)
    with open(argv[0], "a") as fh:
        for name, spec, build in cases(args):
            k, s, m, rec, score = build()
            out = {"slice": name, "mask": spec}
            for n in (1, 2, 3, 5):
                t0 = time.perf_counter()
                r = dds(prior, k[None], s[None], m, records=[rec], config=SamplerConfig(admm_cg_iters=n), device="cpu")
                out[str(n)] = score(np.asarray(r.image)[0])[0]
                out[f"t{n}"] = round(time.perf_counter() - t0, 2)
            print(json.dumps(out), flush=True)
            fh.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
