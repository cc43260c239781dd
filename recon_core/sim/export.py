"""`simulate-dataset`: a training/evaluation set of simulated brain slices, and its loader.

Layout of `DIR/<split>/` (N slices):
- `mvue.npy` (N, 2, H, W) float32: MVUE of the fully sampled noisy k-space with coil maps estimated
  from the simulated ACS (the centre `calib`×`calib` block) by the gadget's recipe
  (`recon_core.coils.coil_maps`), divided by its 99th percentile (`recon_core.mvue.normalize`), as
  (real, imag).
- `scale.npy` (N,) float32: that percentile (scanner units); `reference.npy` (N, H, W) complex64: the
  un-normalised MVUE (scanner units).
- `maps.npy` (N, C, H, W) complex64 coil maps (optional, default on).
- `kspace.npy` (N, C, H, W) complex64 fully sampled noisy k-space, scanner units (default: val/test on,
  train off); masks are applied retrospectively (any kind, poisson2d included).
- `metadata.jsonl`: one `MetadataRecord.to_dict()` per line (header-derived via
  `recon_core.metadata.header.record_from_header`; pathology from the simulator's labels);
  `index.jsonl`: {"subject_seed", "slice_index", "contrast", "z_mm"} per line; `info.json`.

Subjects: `slices_per_subject` slices from one deformed subject (one scan: one contrast/protocol,
slices chosen among a virtual full-brain stack of `STACK_SLICES` axial slices; index.jsonl's
`slice_index`/`stack_position` is the position in that stack, 0 = most inferior). The metadata record's
`slice` is the scanner's definition: the slice counter of the subject's scan, 0..n−1 from inferior to
superior — exactly what the gadget builds from a raw stream (`recon_core.metadata.header`). Subject seeds are disjoint between splits by construction:
seed = (split code << 56) | ((--seed & 0xFFFFFF) << 32) | subject number. Each subject depends only on
its own seed, so the export is deterministic, resumable (progress is kept in `DIR/.<split>.partial/`)
and can be parallel over worker processes (identical output for any `workers`).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.format import open_memmap
from tqdm import tqdm

from recon_core.coils import coil_maps
from recon_core.errors import InputError
from recon_core.fft import fft2c, fft2c_np, ifft2c_np
from recon_core.io_utils import atomic_directory
from recon_core.metadata.record import MetadataRecord
from recon_core.mvue import mvue_from_kspace, normalize

from . import acquisition as acqmod
from . import real_anatomy as RA
from . import variety as V
from .contrast import CONTRASTS, draw_protocol, tissue_signals
from .header import build_header
from .phantom import Z_RANGE_MM, _base_interleaved, make_subject, render_slab
from .scan import image_from_slab, slice_records, validate_geometry
from .tissues import INDEX

SPLITS = {"train": 1, "val": 2, "test": 3}
STACK_SLICES = 16
FORMAT_VERSION = 2   # 2: metadata slice = scanner slice counter within the scan (1: virtual-stack position)
PATHOLOGY_P = {"none": 0.6, "wm_lesions": 0.2, "tumour": 0.2}
CHECKPOINT_SECONDS = 10.0
VARIETIES = ("none", "scanner", "real")


def subject_seed(seed: int, split: str, i: int) -> int:
    """Disjoint subject seeds per split (see module docstring)."""
    if split not in SPLITS:
        raise InputError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
    return (SPLITS[split] << 56) | ((int(seed) & 0xFFFFFF) << 32) | int(i)


@dataclass
class ExportConfig:
    n_slices: int
    seed: int = 0
    split: str = "train"
    matrix: int = 128
    coils: int = 8
    slices_per_subject: int = 8
    calib: int = 24
    snr: tuple = (25.0, 38.0)
    field: float | None = None
    contrasts: tuple = ("T1", "T1POST", "T2", "FLAIR", "PD")
    save_kspace: bool | None = None      # None: on for val/test, off for train
    save_maps: bool = True
    fov_mm: float = 240.0
    thickness_mm: float = 5.0
    espirit_grid: str = "half"           # "half": maps on the (H/2)² grid, upsampled (see `espirit`); "full"
    variety: str = "none"                # "scanner": domain randomisation per subject (`recon_core.sim.variety`);
    #                                      "real": real magnitude volumes with that variety (`real_anatomy`)
    anatomy: str | None = None           # variety "real": directory of the volumes and their volumes.json

    def resolved(self) -> dict:
        d = dict(self.__dict__)
        d["snr"] = list(self.snr)
        d["contrasts"] = list(self.contrasts)
        if d["save_kspace"] is None:
            d["save_kspace"] = self.split != "train"
        return d


def _check(cfg: ExportConfig):

    if cfg.split not in SPLITS:
        raise InputError(f"split: expected one of {', '.join(SPLITS)}, got {cfg.split!r}")
    if int(cfg.n_slices) != cfg.n_slices or cfg.n_slices < 1:
        raise InputError(f"n-slices must be a positive integer, got {cfg.n_slices}")
    if not 1 <= cfg.slices_per_subject <= STACK_SLICES:
        raise InputError(f"slices per subject must be in [1, {STACK_SLICES}], got {cfg.slices_per_subject}")
    validate_geometry(cfg.matrix, 1, cfg.coils, 1.0, cfg.calib, cfg.thickness_mm, cfg.fov_mm, cfg.snr[0])
    if cfg.espirit_grid not in ("half", "full"):
        raise InputError(f"ESPIRiT grid: expected half or full, got {cfg.espirit_grid!r}")
    if cfg.calib < 8:
        raise InputError(f"calibration (ACS) size must be ≥ 8 for ESPIRiT (kernel 6), got {cfg.calib}")
    lo, hi = cfg.snr
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise InputError(f"SNR range: expected LO ≤ HI (dB), got {cfg.snr}")
    bad = [c for c in cfg.contrasts if c not in CONTRASTS]
    if bad or not cfg.contrasts:
        raise InputError(f"contrasts: expected some of {', '.join(CONTRASTS)}, got {list(cfg.contrasts)}")
    if cfg.variety not in VARIETIES:
        raise InputError(f"variety: expected one of {', '.join(VARIETIES)}, got {cfg.variety!r}")
    if cfg.variety == "real":
        if not cfg.anatomy:
            raise InputError("variety real needs --anatomy DIR (real volumes and their volumes.json)")
        RA.load_manifest(cfg.anatomy, verify=True)
    elif cfg.anatomy:
        raise InputError(f"--anatomy is used only with variety real, not {cfg.variety!r}")
    if cfg.field is not None and cfg.field not in (1.5, 3.0):
        raise InputError(f"field strength: expected 1.5 or 3 (T), got {cfg.field}")


# ------------------------------------------------------------------------------------------ ESPIRiT
def _upsample2(m):
    """(…, h, w) → (…, 2h, 2w): exact at even indices, periodic midpoint average at odd ones."""
    o = torch.zeros(m.shape[:-2] + (2 * m.shape[-2], m.shape[-1]), dtype=m.dtype, device=m.device)
    o[..., 0::2, :] = m
    o[..., 1::2, :] = 0.5 * (m + torch.roll(m, -1, -2))
    p = torch.zeros(o.shape[:-1] + (2 * m.shape[-1],), dtype=m.dtype, device=m.device)
    p[..., 0::2] = o
    p[..., 1::2] = 0.5 * (o + torch.roll(o, -1, -1))
    return p


def espirit(ksp, calib: int, grid: str = "half"):
    """Coil maps (B, C, H, W) from fully sampled k-space using its centre calib×calib block (ACS), by the
    scanner's recipe (`recon_core.coils.coil_maps`: ESPIRiT with the crop policy, low-resolution fallback).

    grid "full": the recipe on the H×W grid. grid "half": the same recipe (same calibration block,
    kernel, threshold, crops) on the central (H/2)×(W/2) k-space, i.e. the maps evaluated on every
    second pixel of the same FOV (ESPIRiT's pixel matrices G(r) are an exact sub-sampling), then
    upsampled (even pixels exact, odd pixels averaged), renormalised to unit norm and phase-referenced
    to coil 0; the crop support is upsampled the same way. ~5× cheaper; measured at 128², 8 coils,
    SNR 30 dB: the MVUE differs from the full-grid one by 0.3 % (relative L2).
    """

    H, W = ksp.shape[-2:]
    if grid == "full" or H % 4 or W % 4 or min(H, W) // 2 < calib + 4:
        return coil_maps(ksp, calib=calib)
    if grid != "half":
        raise InputError(f"ESPIRiT grid: expected half or full, got {grid!r}")
    y0, x0 = H // 4, W // 4
    m = _upsample2(coil_maps(ksp[..., y0:y0 + H // 2, x0:x0 + W // 2], calib=calib))
    n = m.abs().pow(2).sum(-3, keepdim=True).sqrt()
    ref = m[..., :1, :, :]
    ph = torch.where(ref.abs() > 0, ref.conj() / ref.abs().clamp_min(1e-30), torch.ones_like(ref))
    return torch.where(n > 0.5, m / n.clamp_min(1e-30) * ph, torch.zeros_like(m)).to(torch.complex64)


# ------------------------------------------------------------------------------------------ one subject
def simulate_subject(cfg: ExportConfig, sseed: int, n: int, device: str = "cpu") -> dict:
    """Simulate `n` slices of subject `sseed`: returns arrays for the export and the per-slice metadata."""
    if cfg.variety == "scanner":
        return _simulate_varied(cfg, sseed, n, device)
    if cfg.variety == "real":
        return _simulate_real(cfg, sseed, n, device)

    rng = np.random.default_rng([int(sseed), 0xDA7A])
    M = cfg.matrix
    stack, z = _slice_positions(rng, n, Z_RANGE_MM)
    subj = make_subject(sseed, field=cfg.field, pathology=_pathology(rng),
                        slab_mm=(float(z.min()), float(z.max())))
    contrast = str(cfg.contrasts[int(rng.integers(len(cfg.contrasts)))])
    protocol = draw_protocol(contrast, rng, field=subj.field, t1_csf=float(subj.table.t1[INDEX["csf"]]))
    slab = render_slab(subj, z, matrix=M, fov_mm=cfg.fov_mm, thickness_mm=cfg.thickness_mm)
    x = image_from_slab(slab, subj, protocol, rng)
    out = _acquire(cfg, x, slab.brain > 0.5, slab.fractions.sum(0) > 0.5, cfg.snr, rng, device)
    records = _records(cfg, protocol, subj, n, cfg.fov_mm)
    index = [{"subject_seed": int(sseed), "slice_index": int(k), "stack_position": int(k), "contrast": contrast,
              "z_mm": round(float(zz), 2)} for k, zz in zip(stack, z)]
    return {**out, "records": records, "index": index}



def simulate_slice(matrix: int = 128, coils: int = 8, seed: int = 0, split: str = "test"):
    """One slice of subject `seed` of `split` as the evaluation sees it (ACS block min(24, matrix/4)): (fully sampled
    k-space (C, ny, nx) complex64, reference (ny, nx) complex, MetadataRecord). Used by the benchmark (test split)
    and the uncertainty calibration (validation split)."""
    cfg = ExportConfig(n_slices=1, split=split, matrix=matrix, coils=coils, slices_per_subject=1,
                       calib=min(24, matrix // 4), save_kspace=True)
    r = simulate_subject(cfg, subject_seed(seed, split, 0), 1)
    return r["kspace"][0], r["reference"][0], MetadataRecord.from_dict(r["records"][0])

def _slice_positions(rng, n: int, z_range) -> tuple[np.ndarray, np.ndarray]:
    """(stack positions, slice centres mm) of `n` slices among STACK_SLICES positions spread over `z_range`."""
    lo, hi = z_range
    spacing = (hi - lo) / (STACK_SLICES - 1)
    stack = np.sort(rng.choice(STACK_SLICES, size=n, replace=False))
    return stack, lo + spacing * stack + rng.uniform(-0.3, 0.3) * spacing


def _pathology(rng) -> str:
    names = list(PATHOLOGY_P)
    return names[int(rng.choice(len(names), p=[PATHOLOGY_P[k] for k in names]))]


def _acquire(cfg: ExportConfig, x, brain, head, snr_range, rng, device) -> dict:
    """Complex images (S, M, M) → coils, correlated noise at an SNR drawn from `snr_range`, ESPIRiT maps from
    the centre calib² block, MVUE and its normalisation → the export arrays of these slices."""


    maps_true = acqmod.coil_maps(cfg.coils, x.shape[-1], rng)
    psi = acqmod.noise_covariance(cfg.coils, rng)
    snr = float(rng.uniform(*snr_range))
    sigma = acqmod.noise_sigma(x, brain, head, snr)
    with torch.no_grad():
        xt = torch.from_numpy(x).to(device)
        ksp = fft2c(torch.from_numpy(maps_true).to(device)[None] * xt[:, None])
        noise = torch.from_numpy(acqmod.correlated_noise(tuple(ksp.shape), psi, sigma, rng)).to(device)
        ksp = ksp + noise
        maps = espirit(ksp, cfg.calib, cfg.espirit_grid)
        mvue = mvue_from_kspace(ksp, maps)
        mvn, scale = normalize(mvue)
    out = {"mvue": torch.stack([mvn.real, mvn.imag], 1).float().cpu().numpy(),
           "scale": scale.float().cpu().numpy(), "reference": mvue.cpu().numpy().astype(np.complex64)}
    if cfg.resolved()["save_kspace"]:
        out["kspace"] = ksp.cpu().numpy().astype(np.complex64)
    if cfg.save_maps:
        out["maps"] = maps.cpu().numpy().astype(np.complex64)
    return out


def _window(full: dict, win: tuple) -> dict:
    """The export arrays of an M² window of full-grid arrays (`_acquire`'s): the MVUE window renormalised by
    its own 99th percentile, maps cropped, k-space = the FFT of the cropped coil images."""
    ref = np.ascontiguousarray(full["reference"][(Ellipsis,) + win])
    mvn, scale = normalize(torch.from_numpy(ref))
    out = {"mvue": torch.stack([mvn.real, mvn.imag], 1).float().numpy(), "scale": scale.float().numpy(),
           "reference": ref.astype(np.complex64)}
    if "maps" in full:
        out["maps"] = np.ascontiguousarray(full["maps"][(Ellipsis,) + win])
    if "kspace" in full:
        out["kspace"] = fft2c_np(ifft2c_np(full["kspace"])[(Ellipsis,) + win]).astype(np.complex64)
    return out


def _scan_window(cfg: ExportConfig, x, brain, head, snr_db: float, rng, device) -> dict:
    """The scan of complex images x (S, G, G) on their whole grid (`_acquire` at `snr_db`), then the export arrays of
    a `cfg.matrix`² window of it centred on the middle slice's head (`variety.head_crop`, `_window`)."""
    full = _acquire(cfg, x, brain, head, (snr_db, snr_db), rng, device)
    M = cfg.matrix
    oy, ox = V.head_crop(head[len(x) // 2], M, rng)
    return _window(full, (slice(oy, oy + M), slice(ox, ox + M)))


def _records(cfg: ExportConfig, protocol, subj, n: int, fov_mm: float) -> list[dict]:
    """Per-slice metadata dicts from the header a scan of this protocol would carry.

    metadata "slice" = the scanner's slice counter of this scan (0..n−1, inferior to superior), the
    definition a scanner stream (and `simulate`) gives the gadget; the virtual-stack position is in index.jsonl"""
    header = build_header(protocol=protocol, subject=subj, matrix=cfg.matrix, n_slices=n, n_coils=cfg.coils,
                          fov_mm=fov_mm, thickness_mm=cfg.thickness_mm, accel=1.0, calibration_mode="embedded",
                          pathology_labels=subj.labels, seed=int(subj.seed) & 0xFFFFFFFF, acs_lines=cfg.calib)
    return [r.to_dict() for r in slice_records(header, n, subj.labels)]


def _simulate_varied(cfg: ExportConfig, sseed: int, n: int, device: str) -> dict:
    """`simulate_subject` with the scanner variety of `recon_core.sim.variety` (orientation, dihedral
    transform, FOV/pixel size with a `matrix`² window of a larger grid — the scan simulated on the whole grid,
    the window cut from its MVUE —, SNR, bias, fine warp, GRE family, intensity randomisation). The record's contrast is the GRE weighting label; with random intensities
    the contrast and sequence parameters are missing."""
    v = V.draw_variety(sseed, crop=cfg.matrix)
    rng = np.random.default_rng([int(sseed), 0xDA7A])
    vr = np.random.default_rng([v.seed, 1])
    stack, z = _slice_positions(rng, n, V.SLICE_RANGE_MM[v.orientation])
    subj = make_subject(sseed, field=cfg.field, pathology=_pathology(rng),
                        slab_mm=(float(z.min()), float(z.max())) if v.orientation == "axial" else None)
    subj.bias_strength = v.bias_strength
    if v.family == "GRE":
        protocol, label = V.draw_gre(rng, subj.field)
    else:
        protocol = draw_protocol(v.family, rng, field=subj.field, t1_csf=float(subj.table.t1[INDEX["csf"]]))
        label = v.family
    slab = render_slab(subj, z, matrix=v.render_matrix, fov_mm=v.fov_mm, thickness_mm=cfg.thickness_mm,
                       orientation=v.orientation, fine=(V.fine_field(v.seed), v.fine_mm))
    signals = V.tissue_factors(v.intensity, tissue_signals(subj.table, protocol), vr).astype(np.float32)
    mag = np.tensordot(signals, slab.fractions, axes=(0, 0)) * slab.bias
    x = (mag * np.float32(10 ** vr.uniform(-4.5, -3.5)) * np.exp(1j * slab.phase)).astype(np.complex64)
    x = V.dihedral(x, v.dihedral)
    brain, head = V.dihedral(slab.brain > 0.5, v.dihedral), V.dihedral(slab.fractions.sum(0) > 0.5, v.dihedral)
    # the scan covers the whole rendered FOV (the head inside it, as with phase oversampling): coils, noise,
    # ESPIRiT and MVUE there; the training image is a head-containing M² window of it, normalised on its own
    # (ESPIRiT on a window that cuts the head at its edge gives wrong maps: MVUE errors of ~10 % were measured)
    out = _scan_window(cfg, x, brain, head, v.snr_db, vr, device)
    fov_crop = v.fov_mm * cfg.matrix / v.render_matrix
    records = _records(cfg, protocol, subj, n, fov_crop)
    params = {"contrast": None, "sequence": None, "tr": None, "te": None, "ti": None, "flip_angle": None} \
        if v.intensity == "synth" else {"contrast": label}
    records = [{**r, **params} for r in records]
    index = [{"subject_seed": int(sseed), "slice_index": int(k), "stack_position": int(k), "contrast": label,
              "z_mm": round(float(zz), 2), "variety": v.to_dict()} for k, zz in zip(stack, z)]
    return {**out, "records": records, "index": index}


def _simulate_real(cfg: ExportConfig, sseed: int, n: int, device: str) -> dict:
    """`simulate_subject` on a real magnitude volume (`recon_core.sim.real_anatomy`): the scanner variety's
    geometry, SNR and warp, the volume's own contrast (gamma-jittered), simulated phase, coils and noise on the
    whole rendered FOV, then a head-containing `matrix`² window of its MVUE (as `_simulate_varied`)."""
    entries = RA.load_manifest(cfg.anatomy)
    v = V.draw_variety(sseed, crop=cfg.matrix)
    vr = np.random.default_rng([v.seed, 2])
    entry = entries[int(vr.integers(len(entries)))]
    r = RA.render_real(entry, sseed, n, v)
    x = r["x"] * np.float32(10 ** vr.uniform(-4.5, -3.5))
    out = _scan_window(cfg, x, r["brain"], r["head"], v.snr_db, vr, device)
    label = entry.get("contrast")
    records = [MetadataRecord(anatomy="brain", slice=k, contrast=label).to_dict() for k in range(n)]
    vd = {**v.to_dict(), "family": label, "intensity": "real", **r["extra"]}
    index = [{"subject_seed": int(sseed), "slice_index": int(k), "stack_position": int(k), "contrast": label,
              "z_mm": round(float(zz), 2), "variety": vd} for k, zz in enumerate(r["z_mm"])]
    return {**out, "records": records, "index": index}


def _worker(args):
    cfg_d, sseed, n = args

    torch.set_num_threads(1)
    cfg = ExportConfig(**{**cfg_d, "snr": tuple(cfg_d["snr"]), "contrasts": tuple(cfg_d["contrasts"])})
    return simulate_subject(cfg, sseed, n)


# ------------------------------------------------------------------------------------------ export
def _arrays_spec(cfg: ExportConfig) -> dict:
    N, M, C = cfg.n_slices, cfg.matrix, cfg.coils
    spec = {"mvue": ((N, 2, M, M), np.float32), "scale": ((N,), np.float32),
            "reference": ((N, M, M), np.complex64)}
    r = cfg.resolved()
    if r["save_maps"]:
        spec["maps"] = ((N, C, M, M), np.complex64)
    if r["save_kspace"]:
        spec["kspace"] = ((N, C, M, M), np.complex64)
    return spec


def _existing(final: str, conf: dict, overwrite: bool) -> dict | None:
    """info of a finished split with the same config (nothing to do), None to (re)build; InputError when a
    different finished split is in the way and `overwrite` is not set."""
    if not os.path.exists(final):
        return None
    info_path = os.path.join(final, "info.json")
    if os.path.exists(info_path) and not overwrite:
        with open(info_path) as fh:
            old = json.load(fh)
        if old.get("config") == conf:
            return old
    if not overwrite:
        raise InputError(f"{final} already exists with a different configuration; use --overwrite or another --out")
    return None


def _resume_point(part: str, conf: dict) -> int:
    """Subjects already written in the partial directory for this config (0: start afresh, removing a
    partial directory of another config or an unreadable one)."""
    if os.path.isdir(part):
        try:
            with open(os.path.join(part, "progress.json")) as fh:
                st = json.load(fh)
            if st.get("config") == conf:
                return int(st["subjects_done"])
            shutil.rmtree(part)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(part)
    return 0


def _open_partial(part: str, cfg: ExportConfig, done_subjects: int):
    """(arrays {name: memmap}, metadata lines, index lines, subjects done) of the partial directory; the
    lines are trusted only when their count matches the subjects done (else everything restarts)."""
    os.makedirs(part, exist_ok=True)
    arrays = {}
    for name, (shape, dt) in _arrays_spec(cfg).items():
        p = os.path.join(part, f"{name}.npy")
        arrays[name] = open_memmap(p, mode="r+" if (done_subjects and os.path.exists(p)) else "w+", dtype=dt,
                                   shape=shape)
    K = cfg.slices_per_subject
    meta_lines, index_lines = [], []
    for fname, lst in (("metadata.jsonl", meta_lines), ("index.jsonl", index_lines)):
        p = os.path.join(part, fname)
        if done_subjects and os.path.exists(p):
            with open(p) as fh:
                lst.extend(fh.read().splitlines()[: done_subjects * K])
    if len(meta_lines) != min(done_subjects * K, cfg.n_slices) or len(index_lines) != len(meta_lines):
        done_subjects, meta_lines, index_lines = 0, [], []
    return arrays, meta_lines, index_lines, done_subjects


def _subject_results(cfg: ExportConfig, conf: dict, todo: list, workers: int):
    """Yield (subject index, simulate_subject result) for the jobs `todo` [(i, seed, n)], in order."""
    if workers <= 1:
        # one torch thread, as in each worker: the export is bit-identical for any `workers`
        # (ESPIRiT's reductions differ in the last bit between 1 and 2 threads)

        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for i, s, n in todo:
                yield i, simulate_subject(cfg, s, n)
        finally:
            torch.set_num_threads(n_threads)
        return

    # the tissue volume is built (and cached on disk) once here; workers come from a fork server that
    # imported the heavy modules but never ran torch, so no OpenMP thread pool is forked (forking a
    # process whose torch pool is running can hang the children)
    _base_interleaved()

    if os.name == "nt":
        ctx = mp.get_context("spawn")
    else:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["recon_core.sim.export", "recon_core.coils", "sigpy.mri", "torch"])
    with ctx.Pool(workers) as pool:
        for (i, _, _), r in zip(todo, pool.imap(_worker, [(conf, s, n) for _, s, n in todo])):
            yield i, r


def simulate_dataset(out, cfg: ExportConfig, progress: bool = True, workers: int = 1, overwrite: bool = False) -> dict:
    """Write `out/<split>/` (see module docstring); resumes an interrupted run with the same config.

    Returns the info dict (also written to info.json), including the measured slices/s.
    """
    _check(cfg)
    out = os.fspath(out)
    final = os.path.join(out, cfg.split)
    part = os.path.join(out, f".{cfg.split}.partial")
    conf = cfg.resolved()
    old = _existing(final, conf, overwrite)
    if old is not None:
        return old
    os.makedirs(out, exist_ok=True)
    arrays, meta_lines, index_lines, done_subjects = _open_partial(part, cfg, _resume_point(part, conf))
    K = cfg.slices_per_subject
    n_subj = math.ceil(cfg.n_slices / K)
    jobs = [(i, subject_seed(cfg.seed, cfg.split, i), min(K, cfg.n_slices - i * K)) for i in range(n_subj)]

    t0 = time.time()
    bar = tqdm(total=cfg.n_slices, initial=min(done_subjects * K, cfg.n_slices), unit="slice",
               desc=f"simulate {cfg.split}", disable=not progress)
    last_flush = time.time()
    n_new = 0
    for i, r in _subject_results(cfg, conf, jobs[done_subjects:], workers):
        a = i * K
        b = a + len(r["scale"])
        for name in arrays:
            arrays[name][a:b] = r[name]
        meta_lines.extend(json.dumps(d) for d in r["records"])
        index_lines.extend(json.dumps(d) for d in r["index"])
        n_new += b - a
        bar.update(b - a)
        if time.time() - last_flush >= CHECKPOINT_SECONDS or i == n_subj - 1:
            _checkpoint(part, arrays, meta_lines, index_lines, conf, i + 1)
            last_flush = time.time()
    bar.close()
    elapsed = time.time() - t0
    _checkpoint(part, arrays, meta_lines, index_lines, conf, n_subj)
    names = sorted(arrays)
    arrays.clear()
    info = {"version": FORMAT_VERSION, "split": cfg.split, "count": cfg.n_slices, "matrix": cfg.matrix,
            "coils": cfg.coils, "seed": cfg.seed, "subjects": n_subj,
            "subject_seeds": [subject_seed(cfg.seed, cfg.split, 0), subject_seed(cfg.seed, cfg.split, n_subj - 1)],
            "arrays": names, "config": conf, "normalisation": "99th percentile of |MVUE| per slice",
            "slices_per_second": round(n_new / elapsed, 2) if elapsed > 0 and n_new else None}
    with open(os.path.join(part, "info.json"), "w") as fh:
        json.dump(info, fh, indent=1)
    os.remove(os.path.join(part, "progress.json"))
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(part, final)
    return info


def write_split(directory, split: str, images: np.ndarray, scales, records, index, info: dict,
                arrays: dict | None = None):
    """Write a whole split in the export layout atomically (temp dir + rename): mvue.npy, scale.npy,
    metadata.jsonl (MetadataRecord or dicts), index.jsonl, info.json, plus optional `arrays`
    (reference/maps/kspace). Used by training's raw-file caches; `simulate_dataset` writes the same
    layout incrementally (resumable) and `load_split` reads both."""
    with atomic_directory(os.path.join(os.fspath(directory), split)) as tmp:
        np.save(tmp / "mvue.npy", np.ascontiguousarray(images, dtype=np.float32))
        np.save(tmp / "scale.npy", np.asarray(scales, dtype=np.float32))
        for name, a in (arrays or {}).items():
            np.save(tmp / f"{name}.npy", np.asarray(a))
        with open(tmp / "metadata.jsonl", "w") as fh:
            for r in records:
                fh.write(json.dumps(r if isinstance(r, dict) else r.to_dict()) + "\n")
        with open(tmp / "index.jsonl", "w") as fh:
            for d in index:
                fh.write(json.dumps(d) + "\n")
        (tmp / "info.json").write_text(json.dumps({"version": FORMAT_VERSION, **info}, indent=2, default=str))
    return os.path.join(os.fspath(directory), split)


def _checkpoint(part, arrays, meta_lines, index_lines, conf, subjects_done):
    for a in arrays.values():
        a.flush()
    for fname, lst in (("metadata.jsonl", meta_lines), ("index.jsonl", index_lines)):
        tmp = os.path.join(part, fname + ".tmp")
        with open(tmp, "w") as fh:
            fh.write("\n".join(lst) + ("\n" if lst else ""))
        os.replace(tmp, os.path.join(part, fname))
    tmp = os.path.join(part, "progress.json.tmp")
    with open(tmp, "w") as fh:
        json.dump({"config": conf, "subjects_done": subjects_done}, fh)
    os.replace(tmp, os.path.join(part, "progress.json"))


# ------------------------------------------------------------------------------------------ loader
@dataclass
class SplitData:
    """A loaded split: memory-mapped arrays (None when not exported) + per-slice records and index."""

    mvue: np.ndarray
    scale: np.ndarray
    reference: np.ndarray | None
    maps: np.ndarray | None
    kspace: np.ndarray | None
    records: list
    index: list
    info: dict

    def __len__(self) -> int:
        return int(self.mvue.shape[0])


def load_split(directory, split: str = "train", mmap: bool = True) -> SplitData:
    """Load `directory/<split>/` written by `simulate_dataset` (arrays memory-mapped when `mmap`)."""
    d = os.path.join(os.fspath(directory), split)
    if not os.path.isfile(os.path.join(d, "info.json")):
        raise InputError(f"{d}: not a simulate-dataset split (no info.json); expected DIR/<split>/ with "
                         f"mvue.npy, scale.npy, metadata.jsonl")
    with open(os.path.join(d, "info.json")) as fh:
        info = json.load(fh)
    mode = "r" if mmap else None

    def arr(name):
        p = os.path.join(d, f"{name}.npy")
        return np.load(p, mmap_mode=mode) if os.path.exists(p) else None

    with open(os.path.join(d, "metadata.jsonl")) as fh:
        records = [MetadataRecord.from_dict(json.loads(line)) for line in fh if line.strip()]
    with open(os.path.join(d, "index.jsonl")) as fh:
        index = [json.loads(line) for line in fh if line.strip()]
    data = SplitData(mvue=arr("mvue"), scale=arr("scale"), reference=arr("reference"), maps=arr("maps"),
                     kspace=arr("kspace"), records=records, index=index, info=info)
    if data.mvue is None or len(records) != len(data) or len(index) != len(data):
        raise InputError(f"{d}: inconsistent split (mvue {None if data.mvue is None else data.mvue.shape}, "
                         f"{len(records)} records, {len(index)} index lines)")
    return data
