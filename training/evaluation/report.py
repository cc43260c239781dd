"""The Markdown report of an evaluation (results.md) from its results dict."""

from __future__ import annotations

import json

from .ablation import ABLATION_LABELS, ABLATIONS
from .config import CLASSICAL_CS, METRICS
from .stats import cell_label


def _fmt(e, metric):
    s = e.get(metric) if e else None
    if not s or s.get("mean") is None:
        return "–"
    if metric == "nmse":
        return f"{s['mean']:.4f} ± {s['std']:.4f}"
    if metric == "ssim":
        return f"{s['mean']:.3f} ± {s['std']:.3f}"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def _method_label(name):
    labels = {"zerofilled": "Zero-filled", "sense": "SENSE (CG)", "grappa": "GRAPPA (pygrappa)", "l1wavelet": "L1-wavelet (sigpy)",
              "l1wavelet-shift": "L1-wavelet, cycle spinning", "tv": "TV (sigpy)", "bart-w": "BART pics L1-wavelet", "bart-tv": "BART pics TV", "dds_oracle_maps": "DDS, oracle maps"}
    if name in labels:
        return labels[name]
    if name.startswith("dds_w"):
        w = float(name[5:])
        return "DDS uncond (w = 0)" if w == 0 else f"DDS cond (w = {w:g})"
    return name


def _pm(p, unit=" dB"):
    if not p:
        return "–"
    sem = f" ± {p['sem']:.2f}" if p.get("sem") is not None else ""
    return f"{p['mean']:+.2f}{sem}{unit} ({p['wins']}/{p['n']} slices better)"


def _header(res: dict) -> list:
    c, L = res["config"], []
    L.append("# Evaluation results\n")
    L.append(f"Command: `{res['command']}`\n" if res.get("command") else "")
    L.append(f"Model: `{res['model']['path']}` {json.dumps(res['model'].get('manifest', {}), default=str)}  ")
    L.append(f"Data: `{res['data']['dir']}` split `{res['data']['split']}`, {res['data']['n_slices']} slices, "
             f"matrix {res['data']['matrix'][0]}×{res['data']['matrix'][1]}, {res['data']['coils']} coils, "
             f"{len(res['data']['subject_seeds'])} subjects (seeds disjoint from training by construction).  ")
    sm = c["sampler"]
    warm = f", warm start t0 = {sm['warm_start']:g} from {sm['warm_init']}" if sm.get("warm_start") else ""
    L.append(f"DDS: NFE {sm['nfe']}{warm}, η {sm['eta']}, γ {sm['gamma']}, {sm['cg_iters']} CG iterations per step"
             f" (+ {sm.get('final_cg_iters', 0)} final), seed {c['seed']}, precision {sm['precision']}; ESPIRiT maps "
             f"from each undersampled scan's ACS, the same for every method; one seeded mask per slice.  ")
    conv = ("magnitudes, data range = max |reference| (fastMRI)" if res["metric_convention"] == "fastmri"
            else "magnitudes min–max normalised to [0, 1]; SSIM data range 2 (ContextMRI code)")
    L.append(f"Metrics: PSNR (dB), SSIM, NMSE on {conv}; mean ± std over slices. "
             f"λ of the CS baselines (sigpy and BART L1-wavelet/TV) tuned per cell on "
             f"{res['data']['val_tuning_slices']} validation slices; \"best classical\" is the best of them.\n")
    for n in res.get("notes") or []:
        L.append(f"> note: {n}\n")
    for w in res.get("warnings") or []:
        L.append(f"> warning: {w}\n")
    return L


def _table1(res: dict) -> list:
    cells, L = res["cells"], []
    # Table 1
    L.append("## Table 1: reconstruction quality per mask × acceleration\n")
    head = "| Method | " + " | ".join(f"{cell['label']} PSNR | SSIM | NMSE" for cell in cells) + " |"
    L.append(head)
    L.append("|---|" + "---|---|---|" * len(cells))
    names = []
    for cell in cells:
        for n in cell["methods"]:
            if n not in names:
                names.append(n)
    best = {}
    for i, cell in enumerate(cells):
        for metric, better in (("psnr", max), ("ssim", max), ("nmse", min)):
            vals = {n: e[metric]["mean"] for n, e in cell["methods"].items() if e[metric]["mean"] is not None}
            if vals:
                best[(i, metric)] = better(vals, key=vals.get)
    for n in names:
        row = [_method_label(n)]
        for i, cell in enumerate(cells):
            e = cell["methods"].get(n)
            for metric in METRICS:
                v = _fmt(e, metric)
                row.append(f"**{v}**" if best.get((i, metric)) == n else v)
        L.append("| " + " | ".join(row) + " |")
    lam = []
    for cell in cells:
        for b in CLASSICAL_CS:
            e = cell["methods"].get(b)
            if e and e.get("lambda") is not None:
                lam.append(f"{cell['label']} {b} λ = {e['lambda']:g}")
    if lam:
        L.append("\nTuned λ: " + "; ".join(lam) + ".")
    L.append("\nRealised acceleration (mean over slices): " +
             "; ".join(f"{cell['label']} {cell['realised_accel']:.2f}" for cell in cells) + ".")
    L.append("Scale estimate / true 99th percentile (DDS normalisation): " +
             "; ".join(f"{cell['label']} {cell['scale_ratio']['mean']:.3f} ± {cell['scale_ratio']['std']:.3f}"
                       for cell in cells if cell.get("scale_ratio", {}).get("mean") is not None) + ".\n")
    return L


def _headline(res: dict) -> list:
    L = []
    # headline
    L.append("## Headline comparisons (paired over slices, PSNR)\n")
    for s in res["summary"]:
        parts = [f"**{cell_label(s['mask'])}**"]
        if "cond_best_minus_uncond_psnr" in s:
            parts.append(f"best-CFG conditional (w = {s['best_cfg']:g}) − unconditional: {_pm(s['cond_best_minus_uncond_psnr'])}")
        if "dds_minus_best_cs_psnr" in s:
            parts.append(f"best DDS ({_method_label(s['best_dds'])}) − best classical ({_method_label(s['best_cs'])}): "
                         f"{_pm(s['dds_minus_best_cs_psnr'])}")
        L.append("- " + "; ".join(parts))
    L.append("")
    return L


def _variant_table(cl: list, key: str, variants, first_col: str, head, extra=None) -> list:
    """Markdown rows: one per (variant, label), per cell PSNR | SSIM of cell[key]["variants"][variant] (+ `extra(cell,
    variant)` columns); `head(cell)` the column header of a cell."""
    n_extra = 1 if extra else 0
    L = [f"| {first_col} | " + " | ".join(head(cell) for cell in cl) + " |",
         "|---|" + ("---|---|" + "---|" * n_extra) * len(cl)]
    for v, lab in variants:
        row = [lab]
        for cell in cl:
            e = cell[key]["variants"][v]
            row += [_fmt(e, "psnr"), _fmt(e, "ssim")] + ([extra(cell, v)] if extra else [])
        L.append("| " + " | ".join(row) + " |")
    return L + [""]


def _ablations(res: dict) -> list:
    cl = [cell for cell in res["cells"] if "ablations" in cell]
    if not cl:
        return []
    return ["## Metadata ablation (cumulative removal; DDS at the cell's best w)\n"] + _variant_table(
        cl, "ablations", [(v, ABLATION_LABELS[v]) for v in ABLATIONS], "Metadata",
        lambda cell: f"{cell['label']} (w = {cell['ablations']['cfg']:g}) PSNR | SSIM | − all",
        lambda cell, v: "–" if v == "all" else _pm(cell["ablations"]["minus_all"][v], " dB"))


def _pathology(res: dict) -> list:
    cl = [cell for cell in res["cells"] if "pathology" in cell]
    if not cl:
        return []
    L = ["## Pathology in the condition: correct vs wrong vs unknown vs unconditional\n"] + _variant_table(
        cl, "pathology", (("correct", "correct labels"), ("wrong", "wrong labels"), ("unknown", "unknown (None)"),
                          ("uncond", "unconditional (w = 0)")), "Pathology", lambda cell: f"{cell['label']} PSNR | SSIM")
    for cell in cl:
        p = cell["pathology"]
        L.append(f"- {cell['label']} (w = {p['cfg']:g}, {p['slices_with_pathology']} slices with pathology): "
                 f"correct − wrong {_pm(p['correct_minus_wrong'])}; wrong − uncond {_pm(p['wrong_minus_uncond'])}")
    return L + [""]


def _twin(res: dict) -> list:
    cells, L = res["cells"], []
    if any("twin" in cell for cell in cells):
        L.append(f"## Conditional model vs unconditional twin (`{res['twin']['path']}`)\n")
        L.append("| Cell | twin PSNR | conditional best-w PSNR | cond − twin | cond w = 0 − twin |")
        L.append("|---|---|---|---|---|")
        for cell in cells:
            if "twin" in cell:
                t = cell["twin"]
                L.append(f"| {cell['label']} | {_fmt(t['twin'], 'psnr')} | {_fmt(t['cond_best'], 'psnr')} (w = {t['cfg']:g}) | "
                         f"{_pm(t['cond_minus_twin'])} | {_pm(t['cond_w0_minus_twin'])} |")
        L.append("")
    return L


def _samplers(res: dict) -> list:
    cells, L = res["cells"], []
    cl = [cell for cell in cells if "samplers" in cell]
    if not cl:
        return L
    L.append("## Other samplers: Score-MRI (same prior) and LDPM (latent prior), paired with DDS on the same slices\n")
    L.append("| Cell | slices | method | PSNR | SSIM | − DDS (same slices, same w) | s/slice |")
    L.append("|---|---|---|---|---|---|---|")
    for cell in cl:
        sm = cell["samplers"]
        rows = [("DDS (defaults)", sm["dds"], None)] + [(m, sm[m], sm[m].get("minus_dds")) for m in sm
                                                         if m not in ("dds", "cfg", "slices")]
        for name, e, d in rows:
            sec = f"{e['seconds_per_slice']:.1f}" if e.get("seconds_per_slice") is not None else "–"
            L.append(f"| {cell['label']} (w = {sm['cfg']:g}) | {sm['slices']} | {name} | {_fmt(e, 'psnr')} | "
                     f"{_fmt(e, 'ssim')} | {_pm(d) if d else '–'} | {sec} |")
    L.append("")
    return L


def _calibration(res: dict) -> list:
    cl = [c for c in res["cells"] if c.get("calibration")]
    if not cl:
        return []
    L = ["## Uncertainty calibration: posterior std and error estimate vs actual error inside the head\n",
         "Per slice: Spearman rank correlation of σ and |error|, coverage of ±1σ / ±2σ (calibrated Gaussian: 68 % / "
         "95 %), mean σ / RMS error; mean ± std over slices. \"std\": the raw posterior std of K samples; \"error "
         "estimate\": the calibrated map the scanner sends (recon_core.uncertainty: pooled, × c(R, K)).\n",
         "| Cell | K | Spearman | coverage ±1σ | coverage ±2σ | σ / RMSE | per-slice mean σ vs RMSE (Spearman) |",
         "|---|---|---|---|---|---|---|"]
    for cell in cl:
        cal = cell["calibration"]
        for K, q in ((k, v) for k, v in cal.items() if k != "cfg"):
            for what, v in (("std", q), ("error estimate", q.get("error_estimate"))):
                if v:
                    L.append(f"| {cell['label']} (w = {cal['cfg']:g}) | {K}, {what} | {v['spearman']['mean']:.2f} | "
                             f"{100 * v['cov1']['mean']:.0f} % | {100 * v['cov2']['mean']:.0f} % | "
                             f"{v['ratio']['mean']:.2f} | "
                             + ("–" if v.get("slice_spearman") is None else f"{v['slice_spearman']:.2f}") + " |")
    L.append("")
    return L


def _timing(res: dict) -> list:
    cells, L = res["cells"], []
    tm = res.get("timings", {})
    L.append("## Time\n")
    sec = []
    for cell in cells:
        for n, e in cell["methods"].items():
            if e.get("seconds_per_slice") is not None:
                sec.append(f"{cell['label']} {_method_label(n)} {e['seconds_per_slice']:.2f} s")
    L.append("Seconds per slice (this run; cached units report their original time): " + "; ".join(sec) + ".  ")
    if "total_s" in tm:
        L.append(f"Wall time of this invocation: {tm['total_s']:.0f} s.\n")
    L.append("Figures: `fig_psnr_vs_cfg.png` (PSNR vs CFG per cell), `examples_<cell>.png` (reference | zero-filled | "
             "best CS | DDS uncond | DDS cond | |error| | uncertainty).\n")
    return L


def render_markdown(res: dict) -> str:
    """results.md from the results dict: set-up, Table 1, headline pairs, ablations, pathology, twin, time."""
    L = []
    for section in (_header, _table1, _headline, _ablations, _pathology, _twin, _samplers, _calibration, _timing):
        L += section(res)
    return "\n".join(L)


