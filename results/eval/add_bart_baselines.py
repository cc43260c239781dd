"""Add BART `pics` W/TV rows to the session-2 evaluation (results/eval) and recompute its headlines.

The session-2 run predates the BART baselines. BART needs no model, so its rows are computed here with the
current harness on the *same* test slices, masks (seed·1_000_003 + slice) and ESPIRiT maps, λ tuned on the
same 4 validation slices, then results.json/results.md are rewritten: "best classical" becomes the best of
sigpy L1/TV and BART W/TV. The DDS numbers stay those of session 2's model (not re-run).

    python results/eval/add_bart_baselines.py /work/data/sim128        (≈ 3 min on 2 cores)
"""

import json
import sys
import tempfile

import numpy as np

from recon_core.evaluation import EvalConfig, Evaluation
from recon_core.evaluation.report import render_markdown
from recon_core.evaluation.stats import paired
from recon_core.io_utils import write_text_atomic

OUT = "results/eval"


def main(data):
    res = json.load(open(f"{OUT}/results.json"))
    c = res["config"]
    with tempfile.TemporaryDirectory() as tmp:
        ev = Evaluation(EvalConfig(model="default", data=data, out=tmp, masks=tuple(c["masks"]), limit=c["limit"],
                                   seed=c["seed"], tune_limit=c["tune_limit"], baselines=("bart-w", "bart-tv"),
                                   figures=False), progress=False)
        assert ev.slices.tolist() == res["data"]["slice_indices"], "not the session-2 test slices"
        for cell in res["cells"]:
            for b in ("bart-w", "bart-tv"):
                r = ev.baseline(cell["mask"], b)
                cell["methods"][b] = ev._entry(r, {"lambda": float(r["lambda"])})
                cell["per_slice"][b] = {k: r[k].tolist() for k in ("psnr", "ssim", "nmse")}
    for s, cell in zip(res["summary"], res["cells"]):
        m, ps = cell["methods"], cell["per_slice"]
        best_cs = max(("l1wavelet", "tv", "bart-w", "bart-tv"), key=lambda b: m[b]["psnr"]["mean"])
        s["best_cs"] = best_cs
        s["dds_minus_best_cs_psnr"] = paired(ps[s["best_dds"]]["psnr"], ps[best_cs]["psnr"])
    c.setdefault("sampler", {"nfe": c.get("nfe"), "eta": c.get("eta"), "gamma": c.get("gamma"),
                             "cg_iters": c.get("cg_iters"), "final_cg_iters": 0, "warm_start": None,
                             "precision": c.get("precision")})
    res.setdefault("notes", []).append(
        "BART pics W/TV rows added afterwards by results/eval/add_bart_baselines.py on the same slices, masks and "
        "maps (λ tuned on the same validation slices); DDS numbers are session 2's model, not re-run")
    write_text_atomic(f"{OUT}/results.json", json.dumps(res, indent=1, default=float))
    write_text_atomic(f"{OUT}/results.md", render_markdown(res))
    for s in res["summary"]:
        d = s["dds_minus_best_cs_psnr"]
        print(s["mask"], "best classical", s["best_cs"], f"DDS − best classical {d['mean']:+.2f} dB ({d['wins']}/{d['n']})")


if __name__ == "__main__":
    main(sys.argv[1])
