"""Score-MRI's predictor-corrector sampler against DDS on the same prior, slices, masks and maps:
PSNR/SSIM vs network evaluations and time per slice (held-out test split, uniform1d ×4, CFG 2).

    python results/scoremri/nfe_sweep.py MODEL_DIR /work/data/sim128 [N_SLICES] [SCOREMRI_NFE,..] [DDS_NFE,..]

Writes results/scoremri/results.json and fig_psnr_vs_nfe.png; prints a Markdown table. A rerun with the
same slices keeps the rows already in results.json and runs only the missing (sampler, NFE) pairs. Both samplers use
the settings' defaults except NFE (DDS: the shipped SamplerConfig defaults; Score-MRI: variant sense, r 0.16,
one corrector step, γ and CG iterations as DDS). Slices are processed one at a time (in-line cost).
"""

import json
import sys
import tempfile
import time

import numpy as np

from recon_core.samplers.dds import dds_reconstruct
from training.evaluation import EvalConfig, Evaluation
from recon_core.io_utils import write_text_atomic
from recon_core.metrics import psnr, ssim
from recon_core.samplers.scoremri import scoremri_reconstruct
from recon_core.samplers import SamplerConfig

CELL = "uniform1d:4"


def main(model, data, n=4, sm_nfe="100,500,2000", dds_nfe="20,50,100"):
    n = int(n)
    sm = [int(v) for v in str(sm_nfe).split(",") if v]
    dd = [int(v) for v in str(dds_nfe).split(",") if v]
    rows, done = [], {}
    try:   # continue an earlier sweep of the same slices: only the missing (sampler, NFE) runs
        old = json.load(open("results/scoremri/results.json"))
        if int(old.get("slices", -1)) == n and old.get("cell") == CELL:
            done = {(r["method"], r["nfe"]): r for r in old["rows"]}
    except (OSError, ValueError):
        pass
    with tempfile.TemporaryDirectory() as tmp:
        ev = Evaluation(EvalConfig(model=model, data=data, out=tmp, masks=(CELL,), limit=n, baselines=("zerofilled",),
                                   figures=False), progress=False)
        cd = ev.cell(CELL)
        recs = ev._records(np.arange(n), "all")
        prior = ev.prior
        runs = [("dds", k) for k in dd] + [("scoremri", k) for k in sm]
        for method, k in runs:
            if (method, k) in done:
                rows.append(done[(method, k)])
                continue
            ps, ss, secs = [], [], []
            for i in range(n):
                t0 = time.perf_counter()
                if method == "dds":
                    r = dds_reconstruct(prior, cd.ksp[i:i + 1], cd.maps[i:i + 1], cd.mask[i], [recs[i]],
                                        config=SamplerConfig(nfe=k), device="cpu")
                else:
                    r = scoremri_reconstruct(prior, cd.ksp[i:i + 1], cd.maps[i:i + 1], cd.mask[i], [recs[i]],
                                             config=SamplerConfig(scoremri_nfe=k), device="cpu", progress=True)
                secs.append(time.perf_counter() - t0)
                ps.append(float(psnr(cd.ref[i], r.image[0])))
                ss.append(float(ssim(cd.ref[i], r.image[0])))
            rows.append({"method": method, "nfe": k, "network_evaluations": int(r.nfe), "psnr": ps, "ssim": ss,
                         "seconds": secs})
            print(method, k, f"{np.mean(ps):.2f} dB", f"{np.mean(secs):.1f} s/slice", flush=True)
            write_text_atomic("results/scoremri/results.json", json.dumps(
                {"partial": True, "cell": CELL, "slices": n, "rows": rows, "command": "python "
                 "results/scoremri/nfe_sweep.py " + " ".join(map(str, sys.argv[1:]))}, indent=1))   # so far
    report(rows, n, "python results/scoremri/nfe_sweep.py " + " ".join(map(str, sys.argv[1:])))


def report(rows, n, command, note=None):
    """results.json, fig_psnr_vs_nfe.png and the Markdown table from the measured rows."""
    out = {"command": command, "cell": CELL, "split": "test", "slices": n, "rows": rows, "note": note}
    write_text_atomic("results/scoremri/results.json", json.dumps(out, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(8, 3.2))
    for method, mk in (("dds", "o-"), ("scoremri", "s-")):
        rr = [r for r in rows if r["method"] == method]
        if not rr:
            continue
        ax[0].plot([r["network_evaluations"] for r in rr], [np.mean(r["psnr"]) for r in rr], mk, label=method)
        ax[1].plot([np.mean(r["seconds"]) for r in rr], [np.mean(r["psnr"]) for r in rr], mk, label=method)
    ax[0].set_xscale("log"); ax[0].set_xlabel("network evaluations"); ax[0].set_ylabel("PSNR (dB)")
    ax[1].set_xscale("log"); ax[1].set_xlabel("seconds per slice (this CPU)"); ax[0].legend(); ax[0].grid(alpha=.3)
    ax[1].grid(alpha=.3)
    fig.suptitle(f"{CELL}, {n} test slices, CFG 2 — {out['command']}", fontsize=7)
    fig.tight_layout()
    fig.savefig("results/scoremri/fig_psnr_vs_nfe.png", dpi=110)
    print("| sampler | NFE | PSNR | SSIM | s/slice |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['network_evaluations']} | {np.mean(r['psnr']):.2f} | {np.mean(r['ssim']):.3f} | "
              f"{np.mean(r['seconds']):.1f} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:   # re-render a (partial) results.json: --report NOTE
        r = json.load(open("results/scoremri/results.json"))
        report(r["rows"], r["slices"], r.get("command") or "python results/scoremri/nfe_sweep.py (partial)",
               " ".join(sys.argv[2:]) or r.get("note"))
    else:
        main(*sys.argv[1:])
