"""Figures of an evaluation: PSNR vs CFG per cell and one example panel per cell."""

from __future__ import annotations

import os

import numpy as np

from recon_core.io_utils import atomic_path
from recon_core.metrics import psnr as _psnr

from .ablation import pathology_kind
from .config import CLASSICAL_CS
from .report import _method_label


def _save(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def _safe(spec: str) -> str:
    return spec.replace(":", "x").replace(".", "p")


def reliability_figure(curves: dict, path: str, title: str = "") -> None:
    """Reliability diagram: per curve (label → list of {std, rmse} bins, `metrics.uncertainty_calibration`) the RMS
    error against the predicted σ, with the diagonal a calibrated σ lies on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    top = 0.0
    for label, bins in curves.items():
        s, e = [b["std"] for b in bins], [b["rmse"] for b in bins]
        ax.plot(s, e, "o-", ms=3, label=label)
        top = max(top, max(s + e))
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="calibrated")
    ax.set_xlabel("predicted σ (bin mean)")
    ax.set_ylabel("actual RMS error in the bin")
    ax.set_title(title or "posterior std vs error", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def figures(ev, res: dict, cells: list) -> None:
    """ev: the `Evaluation` that produced `res` (its config, cells and example slices)."""
    import matplotlib

    matplotlib.use("Agg")
    _psnr_vs_cfg(ev, cells)
    curves = {}
    for cell in (c for c in res["cells"] if c.get("calibration")):
        for K, q in ((k, v) for k, v in cell["calibration"].items() if k != "cfg"):
            for what, v in (("std", q), ("error estimate", q.get("error_estimate") or {})):
                if v.get("reliability"):
                    curves[f"{cell['label']} K={K} {what}"] = v["reliability"]
    if curves:
        reliability_figure(curves, os.path.join(ev.c.out, "fig_reliability.png"),
                           "DDS posterior std and calibrated error estimate vs actual error (inside the head)")
    for cell in cells:
        for p in ev.examples:
            _example_panel(ev, cell, p)


def _psnr_vs_cfg(ev, cells: list) -> None:
    """fig_psnr_vs_cfg.png: DDS PSNR (mean ± std) vs CFG weight per cell, baselines and twin as lines."""
    import matplotlib.pyplot as plt

    cfgs = [float(w) for w in ev.c.cfg]
    n = len(cells)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.2), squeeze=False)
    colors = {"zerofilled": "0.6", "sense": "tab:green", "grappa": "tab:olive", "l1wavelet": "tab:red", "l1wavelet-shift": "tab:pink", "tv": "tab:purple",
              "bart-w": "tab:orange", "bart-tv": "tab:brown"}
    for ax, cell in zip(axes[0], cells):
        m = cell["methods"]
        mu = [m[f"dds_w{w:g}"]["psnr"]["mean"] for w in cfgs]
        sd = [m[f"dds_w{w:g}"]["psnr"]["std"] for w in cfgs]
        ax.errorbar(cfgs, mu, yerr=sd, marker="o", capsize=3, label="DDS")
        for b, col in colors.items():
            if b in m:
                ax.axhline(m[b]["psnr"]["mean"], color=col, ls="--", lw=1, label=_method_label(b))
        if "twin" in cell:
            ax.axhline(cell["twin"]["twin"]["psnr"]["mean"], color="k", ls=":", lw=1.2, label="uncond. twin")
        ax.set_title(cell["label"])
        ax.set_xlabel("CFG weight w")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, os.path.join(ev.c.out, "fig_psnr_vs_cfg.png"))
    plt.close(fig)


def _example_images(ev, cell, p: int):
    """(reference, [(title, |image|)], |error| of the conditional DDS or None, std map or None)."""
    imgs, m = cell["images"], cell["methods"]
    key = f"img_{p}"
    ref = ev.cell(cell["mask"]).ref[p]
    cs = [b for b in CLASSICAL_CS if b in m and key in imgs.get(b, {})]
    best_cs = max(cs, key=lambda b: m[b]["psnr"]["mean"]) if cs else None
    w_ex = cell.get("example_cfg")
    panels = [("reference", np.abs(ref))]
    if "zerofilled" in imgs and key in imgs["zerofilled"]:
        panels.append(("zero-filled", np.abs(imgs["zerofilled"][key])))
    if best_cs:
        panels.append((f"best classical ({_method_label(best_cs)})", np.abs(imgs[best_cs][key])))
    if "dds_w0" in imgs and key in imgs["dds_w0"]:
        panels.append(("DDS uncond (w = 0)", np.abs(imgs["dds_w0"][key])))
    cond = imgs.get(f"dds_w{w_ex:g}", {}).get(key) if w_ex is not None else None
    if cond is not None and w_ex > 0:
        panels.append((f"DDS cond (w = {w_ex:g})", np.abs(cond)))
    err = None if cond is None else np.abs(np.abs(cond) - np.abs(ref))
    return ref, panels, err, imgs.get("uncert", {}).get(f"std_{p}")


def _example_panel(ev, cell, p: int) -> None:
    """examples_<mask>.png: reference, zero-filled, best CS, DDS uncond/cond, |error| and uncertainty."""
    import matplotlib.pyplot as plt


    ref, panels, err, un = _example_images(ev, cell, p)
    vmax = float(np.percentile(np.abs(ref), 99.5)) or 1.0
    ncol = len(panels) + (err is not None) + (un is not None)
    fig, axes = plt.subplots(1, ncol, figsize=(2.3 * ncol, 2.7), squeeze=False)
    axs = list(axes[0])
    for ax, (title, im) in zip(axs, panels):
        ax.imshow(im, cmap="gray", vmin=0, vmax=vmax)
        sub = "" if title == "reference" else f"\n{float(_psnr(np.abs(ref), im, ev.c.convention)):.2f} dB"
        ax.set_title(title + sub, fontsize=7)
    k = len(panels)
    if err is not None:
        axs[k].imshow(err, cmap="magma", vmin=0, vmax=vmax / 5)
        axs[k].set_title("|error| DDS cond (×5)", fontsize=7)
        k += 1
    if un is not None:
        axs[k].imshow(un, cmap="magma", vmin=0, vmax=vmax / 5)
        axs[k].set_title(f"uncertainty: std of {ev.c.samples}\nsamples (×5)", fontsize=7)
    for ax in axs:
        ax.axis("off")
    r = ev.records[p]
    fig.suptitle(f"{cell['label']} · slice {int(ev.slices[p])} · {r.contrast} · pathology "
                 f"{pathology_kind(r)}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    _save(fig, os.path.join(ev.c.out, f"examples_{_safe(cell['mask'])}.png"))
    plt.close(fig)


