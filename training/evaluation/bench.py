"""`contextmri bench`: where the time of one DDS slice goes, against its floor and classical methods.

On one simulated slice (recon_core.sim.export.simulate_subject: brain, `matrix`², `coils` coils, the
slice's header-derived metadata), undersampled with `mask`:
- I/O: np.save + np.load of the undersampled k-space and np.save of the output image (a temp dir);
- ESPIRiT (recon_core.coils, torch backend; sigpy backend too);
- DDS (recon_core.samplers.dds) split into network / CG / other, at `nfe`, `cfg`, `precision`: the median of
  `repeat` runs (all in `time_s.dds_runs`: single runs moved the 256²/128² ratio between 4.4× and 5.0× on 2 cores);
- the network floor: the network evaluations DDS ran (≈ warm_start · NFE with the default warm start) ×
  the median time of one batched cond+uncond forward (batch 2 when
  0 < cfg ≠ 1, else 1) at the same shape; ratios DDS/floor and slice/floor (target ≤ 1.3);
- peak memory: process peak RSS (resource.getrusage) and, on CUDA, torch.cuda.max_memory_allocated;
- sigpy L1-wavelet (recon_core.baselines, oracle λ from the evaluation grid) and, when `bart` is on PATH, `bart ecalib` +
  `bart pics` (l1-wavelet) on the same k-space via .cfl/.hdr files — time and PSNR beside ours;
- the runtime: engine × precision "auto" (recon_core.precision.choose_runtime) or as asked; with `levers`, every
  allowed (engine, precision) separately — one forward, the DDS slice at `nfe`, its PSNR and the difference from
  eager torch fp32 (each network lever's gain, the ones that do not help included);
- PSNR of DDS at NFE 10/20/50 with fp32 and bf16 networks (eager torch; the quality–time trade-off);
- ratios to BART: DDS / `bart pics` and our slice (ESPIRiT + DDS) / (`bart ecalib` + `bart pics`).
PSNR: fastMRI convention against the MVUE of the fully sampled k-space (scanner units).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

from recon_core.baselines import bart, reconstruct

# ------------------------------------------------------------------------------------------ BART
from recon_core.baselines.bart import read_cfl, write_cfl  # noqa: E402,F401  (re-exported for the tests)
from recon_core.baselines.bart import to_bart as _to_bart  # noqa: F401  (re-exported for the tests)
from recon_core.coils import calib_region, espirit_maps
from recon_core.device import resolve_device
from recon_core.errors import InputError
from recon_core.masks import make_mask, parse_mask_spec
from recon_core.metrics import psnr
from recon_core.precision import choose_runtime, runtime_candidates
from recon_core.prior import build_prior
from recon_core.prior.cache import get_prior
from recon_core.raw.coil_compression import compress, compression_matrix
from recon_core.samplers import SamplerConfig
from recon_core.samplers.dds import dds_reconstruct
from recon_core.sim.export import simulate_slice

from .config import LAMBDA_GRID


def bart_kernel(calib: int, kernel_width: int = 6) -> int:
    """Same rule as recon_core.coils: kernel at most half the calibration side (else the crop empties the maps)."""
    return max(min(kernel_width, calib // 2), min(3, calib))


def run_bart(ksp: np.ndarray, calib: int, lamda: float = 0.005, iters: int = 100, workdir: str | None = None) -> dict:
    """`bart ecalib -m1 -r calib -k kernel` + `bart pics -S -R W:3:0:λ -i iters` (BART's own maps) on
    (C, ny, nx) k-space, through recon_core.baselines.bart. Returns {"ecalib_s", "pics_s", "maps", "image"} (wall
    times incl. process start and cfl I/O)."""
    t0 = time.perf_counter()
    maps = bart.ecalib(ksp, int(calib), bart_kernel(int(calib)))
    t1 = time.perf_counter()
    img = bart.pics(ksp[None], maps[None], np.abs(ksp).sum(axis=0) > 0, "bart-w", lamda=lamda, n_iter=iters)[0]
    t2 = time.perf_counter()
    return {"ecalib_s": t1 - t0, "pics_s": t2 - t1, "maps": maps, "image": img}


# ------------------------------------------------------------------------------------------ helpers
def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, repeat=1):
    """(result of the last call, median seconds)."""
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts)


def load_bench_prior(model: str | None, preset: str | None, device):

    if preset:
        return build_prior(preset).to(device).eval(), f"untrained preset {preset!r} (PSNR meaningless)"
    return get_prior(model or "default", device), f"model {model or 'default'}"


# ------------------------------------------------------------------------------------------ bench parts
def _time_io(ksp: np.ndarray) -> float:
    """Seconds to load one slice's k-space from .npy and write one image (the replay's file I/O floor)."""
    with tempfile.TemporaryDirectory() as d:
        p_in, p_out = os.path.join(d, "k.npy"), os.path.join(d, "x.npy")
        np.save(p_in, ksp)
        t0 = time.perf_counter()
        k_loaded = np.load(p_in)
        np.save(p_out, np.zeros(ksp.shape[-2:], np.complex64))
        t_io = time.perf_counter() - t0
    assert k_loaded.shape == ksp.shape
    return t_io


def _network_floor(prior, record, cfg: float, matrix: int, dev, runner, repeat: int):
    """(seconds of one batched forward of `runner` (an engine) as DDS does it, forward batch size)."""

    both = 0 < cfg != 1
    nb = 2 if both else 1
    x = torch.randn(nb, 2, matrix, matrix, device=dev)
    tok = torch.cat([prior.uncondition(1), prior.condition([record])]) if both else (
        prior.condition([record]) if cfg > 0 else prior.uncondition(1))
    tt = torch.full((nb,), 500, dtype=torch.long, device=dev)

    def fwd():
        with torch.no_grad():
            out = runner.predict_eps(x, tt, tok)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out

    fwd()
    return _timed(fwd, max(repeat, 3))[1], nb


def _sigpy_l1(ref, kb, maps, mask) -> dict:
    """sigpy L1-wavelet (same maps): λ = the best of the evaluation grid on this slice (an oracle choice,
    favourable to the baseline); the time is that of one run at that λ."""
    grid = {lam: float(psnr(ref, reconstruct("l1wavelet", kb, maps, mask, lamda=lam)[0]))
            for lam in LAMBDA_GRID["l1wavelet"]}
    lam_best = max(grid, key=grid.get)
    l1, t_l1 = _timed(lambda: reconstruct("l1wavelet", kb, maps, mask, lamda=lam_best), 1)
    return {"time_s": t_l1, "psnr": float(psnr(ref, l1[0])), "lambda": lam_best,
            "lambda_choice": "best PSNR of the evaluation grid on this slice (oracle)",
            "psnr_by_lambda": {str(k): v for k, v in grid.items()}}


def _bart_row(ksp, mask, ref, t_esp: float) -> dict:
    """BART ecalib + pics on the same slice (its own maps), timed."""
    cy, cx = calib_region(mask)
    b = run_bart(ksp, min(cy, cx))
    return {"ecalib_s": b["ecalib_s"], "pics_s": b["pics_s"], "psnr_pics": float(psnr(ref, b["image"])),
            "command": f"bart ecalib -m1 -r {min(cy, cx)} -k {bart_kernel(min(cy, cx))}; "
                       "bart pics -S -R W:3:0:0.005 -i 100 -p MASK (data / 99th pct of |zero-filled|)",
            "our_espirit_over_bart_ecalib": t_esp / b["ecalib_s"], "espirit_meets_target": bool(t_esp <= b["ecalib_s"])}


def _levers(prior, kb, maps, mask, record, ref, cfg, nfe, seed, dev, repeat) -> list:
    """Each allowed (engine, precision) on its own: one forward, the DDS slice at `nfe` (after a warm-up call),
    PSNR and its difference from eager torch fp32 — the gain of each network lever."""
    rows = []
    for eng, prec in runtime_candidates("auto", "auto", dev):
        run = choose_runtime(prior, prec, eng, (kb.shape[-2], kb.shape[-1]), dev).runner
        t_fwd, _ = _network_floor(prior, record, cfg, kb.shape[-1], dev, run, repeat)
        dds_reconstruct(prior, kb, maps, mask, [record], cfg=cfg, nfe=1, seed=seed, device=dev, precision=prec,
                        engine=eng)
        r = dds_reconstruct(prior, kb, maps, mask, [record], cfg=cfg, nfe=nfe, seed=seed, device=dev,
                            precision=prec, engine=eng)
        rows.append({"engine": eng, "precision": prec, "forward_s": t_fwd, "dds_s": r.timings["total"],
                     "network_s": r.timings["network"], "psnr": float(psnr(ref, r.image[0]))})
    base = next((r for r in rows if (r["engine"], r["precision"]) == ("torch", "fp32")), rows[0])
    for r in rows:
        r["speedup_forward"] = base["forward_s"] / r["forward_s"]
        r["speedup_dds"] = base["dds_s"] / r["dds_s"]
        r["psnr_delta_db"] = r["psnr"] - base["psnr"]
    return rows


def _sweep(prior, kb, maps, mask, record, ref, cfg, seed, dev, sweep, precisions) -> list:
    """PSNR and time of DDS per (precision, NFE) with the eager torch engine: the quality–time trade-off."""
    rows = []
    for prec in precisions:
        for n in sweep:
            r = dds_reconstruct(prior, kb, maps, mask, [record], cfg=cfg, nfe=int(n), seed=seed, device=dev,
                                precision=prec, engine="torch")
            rows.append({"nfe": int(n), "precision": prec, "psnr": float(psnr(ref, r.image[0])),
                         "dds_s": r.timings["total"], "network_s": r.timings["network"]})
    return rows


# ------------------------------------------------------------------------------------------ the bench
def run_bench(model: str | None = "default", preset: str | None = None, matrix: int | None = None, coils: int = 8,
              nfe: int = 50, cfg: float = 2.0, mask: str = "uniform1d:4", device: str = "auto",
              precision: str = "auto", engine: str = "auto", levers: bool = False, seed: int = 0, sweep=(10, 20, 50), sweep_precisions=("fp32", "bf16"),
              repeat: int = 3, use_bart: bool = True, progress: bool = True, log=print,
              compress_coils_above: int = 16, coil_energy: float = 0.99, timers: dict | None = None) -> dict:
    """Run the benchmark; returns a JSON-able dict (see module docstring). `timers`, when given, receives
    "slice": a callable that runs the timed slice once more (ESPIRiT + DDS on the same data) and returns its seconds
    with the fixed I/O and coil-compression times added, comparable to `slice_total` (`--reference`'s pairs)."""

    if nfe < 1 or any(n < 1 for n in sweep):
        raise InputError(f"nfe must be ≥ 1, got {nfe} / sweep {list(sweep)}")
    if cfg < 0:
        raise InputError(f"cfg must be ≥ 0, got {cfg}")
    dev = resolve_device(device)
    rss0 = _peak_rss_mb()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    prior, model_desc = load_bench_prior(model, preset, dev)
    matrix = int(matrix or prior.resolution)
    choice = choose_runtime(prior, precision, engine, (matrix, matrix), dev, log=log)
    precision, engine = choice.precision, choice.engine
    log(f"bench: {model_desc}, matrix {matrix}, {coils} coils, mask {mask}, NFE {nfe}, cfg {cfg}, {engine} {precision}, "
        f"device {dev}, torch threads {torch.get_num_threads()}")
    full, ref, record = simulate_slice(matrix, coils, seed)
    kind, accel = parse_mask_spec(mask)
    m = make_mask(kind, (matrix, matrix), accel, seed=seed)
    ksp = (full * m.mask[None]).astype(np.complex64)
    cc = None
    if coils > compress_coils_above:   # the product's SVD coil compression (gadget ReconParams defaults)
        t0 = time.perf_counter()
        U, kept = compression_matrix(ksp, (int(m.acs_lines.min()), int(m.acs_lines.max()) + 1), coil_energy)
        ksp = compress(U, ksp)
        cc = {"coils": coils, "virtual_coils": int(U.shape[1]), "energy": round(kept, 5),
              "seconds": time.perf_counter() - t0}
    kb = ksp[None]

    t_io = _time_io(ksp)
    # the bench times the ESPIRiT primitive itself (one decomposition at crop 0.95), not the coil-map recipe
    # (`recon_core.coils.coil_maps`: crop policy, low-resolution fallback) the other paths call
    espirit_maps(kb, mask=m.mask)  # warm-up
    maps, t_esp = _timed(lambda: espirit_maps(kb, mask=m.mask), repeat)
    _, t_esp_sigpy = _timed(lambda: espirit_maps(kb, mask=m.mask, backend="sigpy"), 1)
    t_fwd, nb = _network_floor(prior, record, cfg, matrix, dev, choice.runner, repeat)

    def dds(mp, n=nfe, bar=None):       # the timed DDS slice (the same settings every time)
        return dds_reconstruct(prior, kb, mp, m.mask, [record], cfg=cfg, nfe=n, seed=seed, device=dev,
                               precision=precision, engine=engine, progress=bar)

    dds(maps, n=1)   # warm-up
    runs = [dds(maps, bar=progress) for _ in range(max(1, repeat))]
    res = sorted(runs, key=lambda r: r.timings["total"])[(len(runs) - 1) // 2]   # the median run (same image)
    t_dds = res.timings["total"]
    floor = res.nfe * t_fwd   # the network evaluations DDS actually ran (a warm start runs ≈ t0 · nfe of the grid)
    slice_total = t_io + t_esp + t_dds + (cc["seconds"] if cc else 0.0)
    l1 = _sigpy_l1(ref, kb, maps, m.mask)
    zf = reconstruct("zerofilled", kb, maps, m.mask)
    out = {
        "setup": {"model": model_desc, "matrix": matrix, "coils": coils, "mask": mask,
                  "realised_accel": m.accel, "nfe": nfe, "network_evaluations": int(res.nfe), "cfg": cfg,
                  "precision": precision, "engine": engine,
                  "sampler": SamplerConfig(nfe=nfe, cfg=cfg, precision=precision, engine=engine).to_meta(),
                  "precision_choice": choice.to_meta(), "device": str(dev),
                  "torch_threads": torch.get_num_threads(), "forward_batch": nb, "seed": seed,
                  "coil_compression": cc,
                  "psnr_convention": "fastmri (magnitude, data range = max |reference|)"},
        "time_s": {"io": t_io, "espirit": t_esp, "espirit_sigpy": t_esp_sigpy, "dds_total": t_dds,
                   "dds_runs": sorted(r.timings["total"] for r in runs),
                   "network": res.timings["network"], "cg": res.timings["cg"], "dds_other": res.timings["other"],
                   "slice_total": slice_total},
        "network_floor": {"one_forward_s": t_fwd, "floor_s": floor, "dds_over_floor": t_dds / floor,
                          "slice_over_floor": slice_total / floor, "target": 1.3,
                          "meets_target": bool(t_dds / floor <= 1.3)},
        "psnr": {"zerofilled": float(psnr(ref, zf[0])), "dds": float(psnr(ref, res.image[0])),
                 "l1wavelet_sigpy": l1["psnr"]},
        "l1wavelet_sigpy": l1,
        "ratio_dds_slice_to_l1wavelet": slice_total / l1["time_s"],
        "bart": None,
    }
    if use_bart and shutil.which("bart"):
        out["bart"] = _bart_row(ksp, m.mask, ref, t_esp)
        out["psnr"]["bart_pics"] = out["bart"]["psnr_pics"]
        b = out["bart"]
        out["vs_bart"] = {"dds_over_pics": t_dds / b["pics_s"],
                          "slice_over_ecalib_pics": (t_esp + t_dds) / (b["ecalib_s"] + b["pics_s"]),
                          "target_dds_over_pics": 6.0, "meets_target": bool(t_dds / b["pics_s"] <= 6.0)}
    out["levers"] = _levers(prior, kb, maps, m.mask, record, ref, cfg, nfe, seed, dev, repeat) if levers else None
    out["sweep"] = _sweep(prior, kb, maps, m.mask, record, ref, cfg, seed, dev, sweep, sweep_precisions)
    if timers is not None:
        fixed = t_io + (cc["seconds"] if cc else 0.0)

        def one_slice() -> float:
            t0 = time.perf_counter()
            dds(espirit_maps(kb, mask=m.mask))
            return fixed + time.perf_counter() - t0

        timers["slice"] = one_slice
    out["memory"] = {"peak_rss_mb": _peak_rss_mb(), "peak_rss_before_mb": rss0,
                     "cuda_max_allocated_mb": (torch.cuda.max_memory_allocated(dev) / 2 ** 20) if dev.type == "cuda"
                     else None}
    return out


def format_report(r: dict) -> str:
    t, f = r["time_s"], r["network_floor"]
    cc = r["setup"].get("coil_compression")
    L = [f"setup: {json.dumps(r['setup'])}"] + ([f"coil compression {cc['coils']} → {cc['virtual_coils']} virtual coils "
                                                 f"in {cc['seconds']:.3f} s"] if cc else []) + [
         f"slice total {t['slice_total']:.3f} s = I/O {t['io']:.4f} + ESPIRiT {t['espirit']:.3f} + DDS {t['dds_total']:.3f} "
         f"(network {t['network']:.3f}, CG {t['cg']:.3f}, other {t['dds_other']:.3f})",
         f"network floor {f['floor_s']:.3f} s ({f['one_forward_s'] * 1000:.1f} ms/forward × {r['setup']['network_evaluations']} network evaluations); "
         f"DDS/floor {f['dds_over_floor']:.3f}, slice/floor {f['slice_over_floor']:.3f} (target ≤ {f['target']})",
         f"ESPIRiT torch {t['espirit']:.3f} s, sigpy {t['espirit_sigpy']:.3f} s",
         "PSNR: " + ", ".join(f"{k} {v:.2f} dB" for k, v in r["psnr"].items()),
         f"sigpy L1-wavelet {r['l1wavelet_sigpy']['time_s']:.3f} s; our slice / L1-wavelet = {r['ratio_dds_slice_to_l1wavelet']:.1f}×"]
    if r.get("bart"):
        b = r["bart"]
        L.append(f"bart ecalib {b['ecalib_s']:.3f} s, pics {b['pics_s']:.3f} s ({b['psnr_pics']:.2f} dB); "
                 f"our ESPIRiT / bart ecalib = {b['our_espirit_over_bart_ecalib']:.2f}")
    else:
        L.append("bart: skipped (--no-bart) or not installed")
    if r.get("vs_bart"):
        v = r["vs_bart"]
        L.append(f"DDS / bart pics = {v['dds_over_pics']:.1f}× (target ≤ {v['target_dds_over_pics']:.0f}×); "
                 f"(ESPIRiT + DDS) / (ecalib + pics) = {v['slice_over_ecalib_pics']:.1f}×")
    for lv in r.get("levers") or []:
        L.append(f"lever {lv['engine']} {lv['precision']}: forward {lv['forward_s'] * 1e3:.0f} ms "
                 f"({lv['speedup_forward']:.2f}×), DDS {lv['dds_s']:.2f} s ({lv['speedup_dds']:.2f}×), "
                 f"PSNR {lv['psnr']:.2f} dB ({lv['psnr_delta_db']:+.3f})")
    L.append("NFE sweep (torch): " + "; ".join(f"{s['precision']} NFE {s['nfe']}: {s['psnr']:.2f} dB in {s['dds_s']:.2f} s"
                                       for s in r["sweep"]))
    L.append(f"peak RSS {r['memory']['peak_rss_mb']:.0f} MB" +
             (f", CUDA {r['memory']['cuda_max_allocated_mb']:.0f} MB" if r["memory"]["cuda_max_allocated_mb"] else ""))
    return "\n".join(L)
