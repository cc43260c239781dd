"""Conditional synthesis per (contrast, pathology) cell: diversity (pairwise MS-SSIM) and contrast fidelity
(a logistic-regression classifier of the contrast family — T1 and T1POST merged — fitted on real training
images; its accuracy on the real val + test images is reported beside it), for the latent prior and,
for comparison at the same settings, the pixel prior (training.evaluation.synthesis).

    python results/latent/synthesis.py LATENT_MODEL DATA_DIR [PIXEL_MODEL|none] [N] [NFE] [CFG] [ETA]

Writes results/latent/synthesis.json and synthesis.png (synthesis_eta<ETA>.* for a DDIM η ≠ 0; one sample per cell; the cell left out of the latent
prior's training — its manifest's training.data.exclude — is framed in red). Seeds fixed; every sample is cached
(results/latent/.cache, the evaluation's UnitCache keyed by the model's files and the settings), so the
metrics can be recomputed without sampling again.
"""

import json
import sys
import time

import numpy as np

from training.evaluation import Evaluation
from training.evaluation.ablation import pathology_kind
from training.evaluation.cache import UnitCache
from training.evaluation.synthesis import ContrastClassifier, pairwise_ms_ssim, template_record
from recon_core.io_utils import write_text_atomic
from recon_core.prior import load_prior
from recon_core.prior.sample import sample_prior
from recon_core.sim.export import load_split

CONTRASTS = ("T1", "T1POST", "T2", "PD", "FLAIR")


def family(c: str) -> str:
    """Contrast family the classifier tells apart: T1 and T1POST differ only by enhancement of lesions and
    vessels, which a thumbnail + histogram classifier cannot see (≈ chance between the two on real images)."""
    return "T1" if c.upper() in ("T1", "T1POST") else c.upper()
PATHOLOGIES = ("none", "wm_lesions", "tumour")


def _complex(x):
    x = np.asarray(x)
    return x[:, 0] + 1j * x[:, 1]


def main(latent, data, pixel="default", n=8, nfe=50, cfg=3.0, eta=0.0):
    n, nfe, cfg, eta = int(n), int(nfe), float(cfg), float(eta)
    suffix = "" if eta == 0 else f"_eta{eta:g}"
    rng = np.random.default_rng(0)
    train = load_split(data, "train")
    kinds = np.array([pathology_kind(r) for r in train.records])
    contrasts = np.array([(r.contrast or "").upper() for r in train.records])
    families = np.array([family(c) for c in contrasts])
    # classifier: 200 real training images per contrast; accuracy on the real val + test images
    pick = np.concatenate([rng.choice(np.flatnonzero(contrasts == c), 200, replace=False) for c in CONTRASTS])
    clf = ContrastClassifier.fit(_complex(train.mvue[np.sort(pick)]), list(families[np.sort(pick)]))
    held = []
    for split in ("val", "test"):
        sd = load_split(data, split)
        held += list(zip(clf.predict(_complex(sd.mvue)), [family(r.contrast or "") for r in sd.records]))
    clf_acc = float(np.mean([p == t for p, t in held]))
    print(f"contrast classifier accuracy on {len(held)} real val+test images: {clf_acc:.3f}", flush=True)
    out = {"command": f"python results/latent/synthesis.py {latent} {data} {pixel} {n} {nfe} {cfg}" + (f" {eta:g}" if eta else ""),
           "n_per_cell": n, "nfe": nfe, "cfg": cfg, "eta": eta, "classifier_real_accuracy": clf_acc,
           "classifier_real_n": len(held), "real": {}, "models": {}}
    for c in CONTRASTS:
        for k in PATHOLOGIES:
            idx = np.flatnonzero((contrasts == c) & (kinds == k))
            sel = rng.choice(idx, min(n, len(idx)), replace=False)
            out["real"][f"{c}/{k}"] = {"pairwise_ms_ssim": pairwise_ms_ssim(_complex(train.mvue[np.sort(sel)])),
                                       "n_train": int(len(idx))}
    models = {"latent": latent} if pixel in (None, "none") else {"latent": latent, "pixel": pixel}
    examples = {}
    cache = UnitCache("results/latent/.cache", version=2)
    for name, path in models.items():
        prior = load_prior(path)
        excluded = [(e.get("contrast", "").upper(), e.get("pathology")) for e in
                    ((prior.manifest.get("training") or {}).get("data") or {}).get("exclude") or []]
        key = {"unit": "synthesis", "model": Evaluation._model_id(path), "n": n, "nfe": nfe, "cfg": cfg, "eta": eta}
        samples = cache.get(key, lambda: _sample_cells(prior, train.records, n, nfe, cfg, eta))  # all samples
        res = {"path": str(path), "excluded": [f"{c}/{k}" for c, k in excluded], "cells": {},
               "seconds_per_image": float(samples["seconds_per_image"])}
        for c in CONTRASTS:
            for k in PATHOLOGIES:
                x = samples[f"{c}/{k}"]
                pred = clf.predict(x)
                res["cells"][f"{c}/{k}"] = {"pairwise_ms_ssim": pairwise_ms_ssim(x),
                                            "contrast_accuracy": float(np.mean([p == family(c) for p in pred])),
                                            "predicted": pred, "held_out": (c, k) in excluded}
                examples[(name, c, k)] = x[0]
                print(name, c, k, {kk: v for kk, v in res["cells"][f"{c}/{k}"].items() if kk != "predicted"}, flush=True)
        cells = res["cells"].values()
        res["mean_contrast_accuracy"] = float(np.mean([v["contrast_accuracy"] for v in cells]))
        res["mean_pairwise_ms_ssim"] = float(np.mean([v["pairwise_ms_ssim"] for v in cells]))
        out["models"][name] = res
    out["real_mean_pairwise_ms_ssim"] = float(np.mean([v["pairwise_ms_ssim"] for v in out["real"].values()]))
    write_text_atomic(f"results/latent/synthesis{suffix}.json", json.dumps(out, indent=1))
    _figure(examples, models, out, suffix)
    _table(out)


def _sample_cells(prior, records, n, nfe, cfg, eta) -> dict:
    """{"CONTRAST/pathology": (n, H, W) complex samples, ..., "seconds_per_image": ()}: fixed seed per cell."""
    t0 = time.perf_counter()
    out = {}
    for ci, c in enumerate(CONTRASTS):
        for ki, k in enumerate(PATHOLOGIES):
            rec = template_record(records, c, k)
            out[f"{c}/{k}"] = _complex(sample_prior(prior, [rec], n=n, cfg=cfg, nfe=nfe, eta=eta,
                                                    seed=1000 * ci + ki, precision="fp32"))
    out["seconds_per_image"] = np.array((time.perf_counter() - t0) / (n * len(CONTRASTS) * len(PATHOLOGIES)))
    return out


def _figure(examples, models, out, suffix=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(m, k) for m in models for k in PATHOLOGIES]
    fig, axes = plt.subplots(len(rows), len(CONTRASTS), figsize=(2 * len(CONTRASTS), 2.1 * len(rows)), dpi=90)
    for i, (m, k) in enumerate(rows):
        for j, c in enumerate(CONTRASTS):
            ax = axes[i, j]
            x = np.abs(examples[(m, c, k)])
            ax.imshow(x / max(np.percentile(x, 99.5), 1e-8), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            cell = out["models"][m]["cells"][f"{c}/{k}"]
            if cell["held_out"]:
                for s in ax.spines.values():
                    s.set_edgecolor("red")
                    s.set_linewidth(3)
            ax.set_title(f"{c} / {k}" + (" (unseen)" if cell["held_out"] else ""), fontsize=7)
            if j == 0:
                ax.set_ylabel(m, fontsize=8)
    fig.suptitle("one sample per (contrast, pathology): " + out["command"], fontsize=6)
    fig.tight_layout()
    fig.savefig(f"results/latent/synthesis{suffix}.png")


def _table(out):
    print("| model | cell | pairwise MS-SSIM (real) | contrast accuracy |")
    print("|---|---|---|---|")
    for m, res in out["models"].items():
        for cell, v in res["cells"].items():
            flag = " **(unseen in training)**" if v["held_out"] else ""
            print(f"| {m} | {cell}{flag} | {v['pairwise_ms_ssim']:.3f} ({out['real'][cell]['pairwise_ms_ssim']:.3f}) | "
                  f"{v['contrast_accuracy']:.2f} |")
        print(f"| {m} | mean | {res['mean_pairwise_ms_ssim']:.3f} ({out['real_mean_pairwise_ms_ssim']:.3f}) | "
              f"{res['mean_contrast_accuracy']:.2f} | ({res['seconds_per_image']:.2f} s/image)")


if __name__ == "__main__":
    main(*sys.argv[1:])
