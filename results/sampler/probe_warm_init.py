"""Validation probe (session 5): does a warm start from sigpy L1-wavelet (instead of SENSE-10), or γ 5, help
the cells where DDS only ties BART (poisson2d ×8)? 8 validation slices, CFG 2, NFE-50 grid.

    python results/sampler/probe_warm_init.py [SETTING,...]

Prints per setting {cell: (DDS PSNR, s/slice, BART W PSNR, sigpy L1 PSNR)}; results in results/sampler/README.md.
"""
import sys
import numpy as np
from training.evaluation import EvalConfig, Evaluation
from recon_core.samplers import SamplerConfig
CELLS = ("poisson2d:8", "uniform1d:8")
S = {
 "sense t0.3": dict(warm_start=0.3),
 "l1 t0.3": dict(warm_start=0.3, warm_init="l1wavelet"),
 "l1 t0.2": dict(warm_start=0.2, warm_init="l1wavelet"),
 "sense t0.3 g5": dict(warm_start=0.3, gamma=5.0),
 "l1 t0.3 g5": dict(warm_start=0.3, warm_init="l1wavelet", gamma=5.0),
}
names = sys.argv[1].split(",") if len(sys.argv) > 1 else list(S)
for name in names:
    kw = S[name]
    ev = Evaluation(EvalConfig(model="default", data="/work/data/sim128", out="/work/runs/tune_cache", masks=CELLS, cfg=(2.0,), limit=8, split="val",
        sampler=SamplerConfig(cfg=2.0, **kw), baselines=("zerofilled","l1wavelet", "bart-w"), ablations=False, pathology=False, figures=False), progress=False)
    out = {}
    for spec in CELLS:
        r = ev.dds(spec, 2.0)
        b = ev.baseline(spec, "bart-w"); l = ev.baseline(spec, "l1wavelet")
        out[spec] = (round(float(np.mean(r["psnr"])),2), round(float(r["seconds"]),2), round(float(np.mean(b["psnr"])),2), round(float(np.mean(l["psnr"])),2))
    print(name, out, flush=True)
