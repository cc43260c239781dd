"""`contextmri bench --series N`: the wall time of a whole series, the way the scanner path runs it.

A simulated N-slice scan (recon_core.sim.scan: `matrix`², `coils` coils, `mask` with its ACS block, noise readouts)
is written as an ISMRMRD file and read back through the scanner's reader (`recon_core.raw.reader.read_slices`:
noise prewhitening, oversampling removal, slice assembly); each slice is then reconstructed by the scanner's
per-slice path (the product's SVD coil compression above 16 channels, `recon_core.raw.coil_compression.compress_slice`,
then `recon_core.samplers.reconstruct_slice`: the one coil-map recipe + the diffusion sampler with the product settings, `SamplerConfig()` with `engine`/`precision` as asked; `slice_batch` n > 1: n slices per sampler
call, `reconstruct_slices`, as the stream processor's `slice_batch` does). With `self_validate` (the front doors'
default; `--no-self-validate`: DDS alone) the first `selfval_slices` slices self-validate one by one and the rest
reuse their majority choice (`selfval.reuse_choice`, the stream processor's rule), so the series time includes it.
Reported: read time, per-slice seconds (the first includes the runtime choice when nothing is cached), series wall
(read + every slice, the model already loaded) and seconds per slice against the target (≤ 3 s), and — when `bart`
is installed — `bart ecalib` + `bart pics` on the same (uncompressed) slices for the ratio. With `memory`, the same
file is also replayed through the product (`contextmri replay`, a child process: the stream processor, slice by
slice, process start and model load included) and the child's peak resident memory reported (issue 23: a 20-slice
32-coil 128² series ≤ 1 GB); this bench itself holds the whole series at once, so its own memory is not the product's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import statistics
import tempfile
import time

import numpy as np
import torch
from tqdm import tqdm

from recon_core import baselines, samplers
from recon_core.coils import calib_region
from recon_core.device import resolve_device
from recon_core.errors import InputError
from recon_core.masks import parse_mask_spec
from recon_core.raw.coil_compression import compress_slice
from recon_core.raw.image import slice_maps
from recon_core.raw.reader import read_slices
from recon_core.samplers import SamplerConfig, reconstruct_slices
from recon_core.samplers.selfval import reuse_choice
from recon_core.sim.scan import simulate_scan, write_scan

from .bench import load_bench_prior, run_bart

TARGET_S_PER_SLICE = 3.0


def run_series_bench(n_slices: int = 20, model: str | None = "default", preset: str | None = None,
                     matrix: int = 128, coils: int = 8, mask: str = "uniform1d:4", device: str = "auto",
                     precision: str = "auto", engine: str = "auto", seed: int = 0, use_bart: bool = True,
                     progress: bool = True, log=print, slice_batch: int = 1, self_validate: bool = True,
                     memory: bool = False) -> dict:
    """Time a whole series (see module docstring); returns a JSON-able dict."""
    if n_slices < 1:
        raise InputError(f"--series must be ≥ 1 slices, got {n_slices}")
    if slice_batch < 1:
        raise InputError(f"--slice-batch must be ≥ 1, got {slice_batch}")
    kind, accel = parse_mask_spec(mask)
    if kind == "poisson2d":
        raise InputError("--series needs a phase-encode mask (a raw file holds whole readouts), not poisson2d")
    dev = resolve_device(device)
    prior, model_desc = load_bench_prior(model, preset, dev)
    config = SamplerConfig(precision=precision, engine=engine, self_validate=self_validate)
    scan = simulate_scan("T2", n_slices=n_slices, matrix=matrix, coils=coils, mask=kind, accel=accel, seed=seed)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "series.h5")
        write_scan(path, scan)
        log(f"bench series: {model_desc}, {n_slices} slices {matrix}² × {coils} coils, {mask}, product settings, "
            f"device {dev}, torch threads {torch.get_num_threads()}")
        t0 = time.perf_counter()
        raw = read_slices(path)
        t_read = time.perf_counter() - t0
        mem = _replay_memory(path, d, model, preset, precision, engine, self_validate, log) if memory else None
    per_slice, runtime, votes, choices, virtual = [], {}, [], [], set()

    def squeeze(sd):            # the stream processor's coil compression (product defaults), timed with the slice
        sd, cc = compress_slice(sd)
        virtual.add(int(cc["virtual_coils"]) if cc else int(sd.kspace.shape[0]))
        return sd

    bar = tqdm(total=len(raw.slices), desc="series", unit="slice", disable=not progress, leave=False)
    i = 0
    while i < len(raw.slices):
        t1 = time.perf_counter()
        reuse = reuse_choice(votes, config, config.selfval_slices) if config.self_validate else ("dds", config, None)
        if reuse is None:           # one of the series' first slices: self-validates alone, its choice is a vote
            group = [squeeze(sd) for sd in raw.slices[i:i + 1]]
            infos = [info for _, _, info in reconstruct_slices(group, raw.header, prior, config)]
            sv = infos[0].get("self_validation", {})
            if "chosen" in sv:
                votes.append(sv["chosen"])
            choices.append(sv.get("chosen", "skipped"))
        else:                       # the rest: the majority choice (as the stream processor does), in slice batches
            method, cfg, reused = reuse
            group = [squeeze(sd) for sd in raw.slices[i:i + slice_batch]]
            if method in samplers.SAMPLERS:
                infos = [info for _, _, info in reconstruct_slices(group, raw.header, prior, cfg, method)]
            else:
                infos = []
                for sd in group:
                    baselines.reconstruct(method, sd.kspace[None], slice_maps(sd)[None], sd.mask)
            choices += [reused["chosen"] if reused else method] * len(group)
        per_slice += [(time.perf_counter() - t1) / len(group)] * len(group)
        if infos:
            runtime = {k: infos[0]["timings"].get(k) for k in ("engine", "precision")}
        bar.update(len(group))
        i += len(group)
    bar.close()
    wall = t_read + sum(per_slice)
    out = {"setup": {"model": model_desc, "slices": n_slices, "matrix": matrix, "coils": coils, "mask": mask,
                     "sampler": config.to_meta(), "runtime": runtime, "device": str(dev), "slice_batch": slice_batch,
                     "torch_threads": torch.get_num_threads(), "seed": seed},
           "choices": choices,
           "time_s": {"read": t_read, "per_slice": per_slice, "first_slice": per_slice[0],
                      "median_slice": statistics.median(per_slice), "series_wall": wall,
                      "per_slice_wall": wall / n_slices},
           "target_s_per_slice": TARGET_S_PER_SLICE, "meets_target": bool(wall / n_slices <= TARGET_S_PER_SLICE),
           "coils_reconstructed": sorted(virtual), "memory": mem, "bart": None}
    if use_bart and shutil.which("bart"):
        times = []
        for sd in raw.slices:
            cy, cx = calib_region(np.asarray(sd.mask))
            b = run_bart(np.asarray(sd.kspace), min(cy, cx))
            times.append(b["ecalib_s"] + b["pics_s"])
        out["bart"] = {"per_slice_s": statistics.median(times), "series_s": sum(times),
                       "ours_over_bart": wall / sum(times)}
    return out


#: run by a small intermediate interpreter: it starts the replay and reports that child's own peak memory. Started
#: straight from this bench, the child's peak would include this process's (Linux keeps a task's peak across the
#: fork and exec that start it).
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def _replay_memory(path: str, d: str, model, preset, precision: str, engine: str, self_validate: bool, log) -> dict:
    """Replay `path` through the product in a grandchild process; its own peak resident memory and the wall time."""
    if preset:
        return {"skipped": "an untrained preset cannot be replayed (--model only)"}
    cmd = [sys.executable, "-m", "gadget", "replay", path, "--out", os.path.join(d, "replay.h5"), "--model",
           str(model or "default"), "--threads", str(torch.get_num_threads()), "--precision", precision,
           "--engine", engine, "--self-validate", "true" if self_validate else "false", "--quiet"]
    log("bench series: replaying the file through the product for its memory: " + " ".join(cmd[2:]))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
    try:
        rc, kb = (int(v) for v in done.stdout.split()[-2:])
    except ValueError:
        rc, kb = done.returncode or 1, 0
    if rc != 0:
        raise InputError(f"the replay for --memory failed ({rc}): {done.stderr.strip()[-300:]}")
    return {"replay_peak_rss_mb": kb / 1024.0, "replay_wall_s": time.perf_counter() - t0,
            "command": "contextmri " + " ".join(cmd[3:])}


def format_series_report(r: dict) -> str:
    t, s = r["time_s"], r["setup"]
    lines = [f"series: {s['slices']} slices {s['matrix']}² × {s['coils']} coils, {s['mask']}, "
             f"{s['runtime'].get('engine')} {s['runtime'].get('precision')}, {s['torch_threads']} threads, "
             f"{s.get('slice_batch', 1)} slice(s) per sampler call",
             f"read {t['read']:.2f} s; slices: first {t['first_slice']:.2f} s, median {t['median_slice']:.2f} s; "
             f"series wall {t['series_wall']:.1f} s = {t['per_slice_wall']:.2f} s per slice "
             f"(target ≤ {r['target_s_per_slice']:.0f} s: {'met' if r['meets_target'] else 'missed'})"]
    m = r.get("memory")
    if m and "replay_peak_rss_mb" in m:
        lines.append(f"the product's replay of the same file: peak memory {m['replay_peak_rss_mb']:.0f} MB "
                     f"(process start and model load included), {m['replay_wall_s']:.1f} s")
    if r.get("choices") and s["sampler"].get("self_validate"):
        n = s["sampler"].get("selfval_slices")
        lines.append(f"self-validation on the first {n} slices: {', '.join(r['choices'][:n])}; "
                     f"the rest: {r['choices'][-1]}")
    b = r.get("bart")
    lines.append(f"bart ecalib + pics: {b['per_slice_s']:.2f} s per slice, series {b['series_s']:.1f} s; ours / bart = "
                 f"{b['ours_over_bart']:.1f}×" if b else "bart: skipped (--no-bart) or not installed")
    return "\n".join(lines)
