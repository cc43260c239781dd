"""Validation probe (session 5): the CFG weight of the product default, on 8 validation slices per cell
(defaults otherwise). python results/sampler/probe_cfg.py → results/sampler/cfg_val.json
"""
import numpy as np, json
from training.evaluation import EvalConfig, Evaluation
from recon_core.samplers import SamplerConfig
CELLS = ("uniform1d:4", "uniform1d:8", "poisson2d:8")
ev = Evaluation(EvalConfig(model="default", data="/work/data/sim128", out="/work/runs/tune_cache", masks=CELLS, cfg=(2.0,3.0), limit=8, split="val",
    sampler=SamplerConfig(), baselines=("zerofilled",), ablations=False, pathology=False, figures=False), progress=False)
out = {}
for spec in CELLS:
    for w in (1.0, 2.0, 3.0, 4.0):
        r = ev.dds(spec, w)
        out[f"{spec} w{w:g}"] = (round(float(np.mean(r["psnr"])), 3), round(float(np.mean(r["ssim"])), 4))
        print(spec, w, out[f"{spec} w{w:g}"], flush=True)
json.dump(out, open("results/sampler/cfg_val.json", "w"), indent=1)
