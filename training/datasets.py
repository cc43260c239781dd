"""Training datasets: normalised complex images (2, H, W) float32 (real, imag) + a MetadataRecord each.

Sources:
- the simulator's export (`recon_core.sim.export.load_split`, layout in CONTRACTS.md), used directly;
- fastMRI multi-coil `.h5` (`kspace` (S, C, ky, kx) + `ismrmrd_header`) and ISMRMRD raw `.h5`
  (fully sampled acquisitions): preprocessed once (centred orthonormal IFFT → centre crop to the prior's
  resolution → coil maps (recon_core.coils.coil_maps) → MVUE → 99th percentile normalisation, metadata from the
  header via recon_core.metadata) into a cache directory in the export layout, then read like an export.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from recon_core import coils, mvue
from recon_core.errors import InputError
from recon_core.fft import fft2c_np, ifft2c_np
from recon_core.metadata import record_from_fastmri_h5, record_from_header
from recon_core.raw.image import slice_mvue
from recon_core.raw.reader import read_slices
from recon_core.sim.export import load_split, write_split
from recon_core.sim.pathology import pathology_kind
from recon_core.sim.variety import export_geometry


class ImageDataset:
    """Images (N, 2, H, W) float32 (array or memmap) + N MetadataRecords. Item i → (image (2,H,W) float32, record)."""

    def __init__(self, images, records, source: str = "memory", fov_mm=None, geometry: dict | None = None):
        images = images if isinstance(images, np.ndarray) else np.asarray(images)
        if images.ndim != 4 or images.shape[1] != 2:
            raise InputError(f"{source}: images must be (N, 2, H, W) (real, imag), got shape {images.shape}")
        if len(records) != images.shape[0]:
            raise InputError(f"{source}: {images.shape[0]} images but {len(records)} metadata records")
        self.images, self.records, self.source = images, list(records), source
        self.fov_mm = fov_mm  # reconSpace FOV in mm (one value or (min, max)), None when unknown
        self.geometry = geometry  # {"orientation", "phase_encoding", "pixel_mm": [lo, hi]} or None (unknown)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __getitem__(self, i):
        return np.asarray(self.images[i], dtype=np.float32), self.records[i]

    def subset(self, n: int) -> "ImageDataset":
        return ImageDataset(self.images[:n], self.records[:n], self.source, self.fov_mm, self.geometry)


# ------------------------------------------------------------------------------------------------
def load_export(path, split: str = "train") -> ImageDataset:
    """The simulator export `path/<split>/` (mvue.npy (N,2,H,W) normalised + metadata), memory-mapped,
    via `recon_core.sim.export.load_split`."""
    sd = load_split(Path(path), split)

    conf = sd.info.get("config") or {}
    geometry = export_geometry(conf, sd.index)
    fov = conf.get("fov_mm")
    if conf.get("variety", "none") != "none":
        fov = [min(v["variety"]["fov_mm"] for v in sd.index), max(v["variety"]["fov_mm"] for v in sd.index)]
    return ImageDataset(sd.mvue, sd.records, source=str(Path(path) / split), fov_mm=fov, geometry=geometry)


def write_export_split(directory, split: str, images: np.ndarray, scales, records, index, info: dict) -> Path:
    """Write an export-layout split (the export's one writer: `recon_core.sim.export.write_split`)."""
    return write_split(directory, split, images, scales, records, index, info)


# ------------------------------------------------------------------------------------------------
def _centre_crop(x: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Centre crop (zero-pad if smaller) the last two axes to (ny, nx)."""
    out = np.zeros(x.shape[:-2] + (ny, nx), dtype=x.dtype)
    sy, sx = x.shape[-2], x.shape[-1]
    cy, cx = min(ny, sy), min(nx, sx)
    oy, ox = (sy - cy) // 2, (sx - cx) // 2
    py, px = (ny - cy) // 2, (nx - cx) // 2
    out[..., py:py + cy, px:px + cx] = x[..., oy:oy + cy, ox:ox + cx]
    return out


def slice_to_image(ksp: np.ndarray, resolution: int, calib: int = 24):
    """Fully sampled k-space (C, ky, kx) complex → (normalised (2, R, R) float32, scale float).

    IFFT → centre crop of the coil images to R×R → FFT → coil maps from the central `calib`² block
    (ContextMRI: calib_width 24) by the scanner's recipe (`recon_core.coils.coil_maps`) → MVUE → divide by the 99th percentile of |MVUE| (recon_core.mvue).
    """
    img = _centre_crop(ifft2c_np(np.asarray(ksp, dtype=np.complex64)), resolution, resolution)
    kc = fft2c_np(img).astype(np.complex64)
    maps = coils.coil_maps(kc, calib=min(int(calib), resolution))
    normed, scale = mvue.normalize(mvue.combine(img, np.asarray(maps)))
    chan = np.stack([normed.real, normed.imag]).astype(np.float32)
    return chan, float(np.asarray(scale).reshape(-1)[0])


def _h5_files(path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(list(path.glob("*.h5")) + list(path.glob("*.hdf5")))
        if files:
            return files
    raise InputError(f"training data: no .h5 files at {path}")


def _cached(cache, source_files, resolution, kind, build):
    cache = Path(cache)
    info_path = cache / "train" / "info.json"
    key = {"kind": kind, "resolution": int(resolution),
           "files": [[str(f), os.path.getsize(f), int(os.path.getmtime(f))] for f in source_files]}
    if info_path.is_file():
        try:
            if json.loads(info_path.read_text()).get("cache_key") == key:
                return load_export(cache, "train")
        except json.JSONDecodeError:
            pass
    images, scales, records, index = build()
    if not images:
        raise InputError(f"training data: no usable slices in {[str(f) for f in source_files]}")
    write_export_split(cache, "train", np.stack(images), scales, records, index,
                       {"count": len(images), "matrix": [resolution, resolution], "source": kind, "cache_key": key})
    return load_export(cache, "train")


def fastmri_dataset(path, cache, resolution: int, progress: bool = True) -> ImageDataset:
    """fastMRI multi-coil .h5 file(s) → cached export-layout split → ImageDataset (one item per slice)."""

    files = _h5_files(path)

    def build():
        images, scales, records, index = [], [], [], []
        for f in files:
            with h5py.File(f, "r") as h5:
                if "kspace" not in h5:
                    raise InputError(f"{f}: no 'kspace' dataset (expected a fastMRI multi-coil file)")
                ksp = h5["kspace"]
                if ksp.ndim != 4:
                    raise InputError(f"{f}: 'kspace' must be (slices, coils, ky, kx), got shape {ksp.shape}")
                for s in tqdm(range(ksp.shape[0]), desc=f"preprocess {f.name}", disable=not progress):
                    x, sc = slice_to_image(ksp[s], resolution)
                    images.append(x)
                    scales.append(sc)
                    records.append(record_from_fastmri_h5(f, slice_index=s))
                    index.append({"file": str(f), "slice_index": s})
        return images, scales, records, index

    return _cached(cache, files, resolution, "fastmri", build)


def ismrmrd_slices(path, min_fraction: float = 0.95):
    """Fully sampled ISMRMRD raw .h5 → (header, [(SliceKey, image (ny, nx) complex64 scanner units)]).

    The raw data go through `recon_core.raw` exactly as in the stream processor (noise prewhitening,
    oversampling removal, averaging, one entry per (slice, contrast, phase, repetition, set)) and the
    image is `recon_core.raw.image.slice_mvue` (ESPIRiT from the ACS, MVUE, unwhitened intensity): what
    the gadget would compute from the same stream. A slice with < `min_fraction` of its lines → InputError.
    """
    raw = read_slices(path)
    out = []
    for sd in raw.slices:
        frac = float(sd.mask[:, 0].mean())
        if frac < min_fraction:
            raise InputError(f"{path}: slice {sd.key.slice} (contrast {sd.key.contrast}, repetition "
                             f"{sd.key.repetition}) has only {int(sd.mask[:, 0].sum())}/{sd.mask.shape[0]} phase-encode "
                             f"lines; training needs fully sampled k-space")
        img, _ = slice_mvue(sd)
        out.append((sd.key, img))
    return raw.header, out


def image_to_training(img: np.ndarray, resolution: int):
    """Complex image (ny, nx) → (normalised (2, R, R) float32, scale): centre crop/pad to R×R, divide by the
    99th percentile of |image| (recon_core.mvue.normalize)."""
    x = _centre_crop(np.asarray(img, np.complex64), resolution, resolution)
    normed, scale = mvue.normalize(x)
    return (np.stack([normed.real, normed.imag]).astype(np.float32),
            float(np.asarray(scale).reshape(-1)[0]))


def ismrmrd_dataset(path, cache, resolution: int, progress: bool = True) -> ImageDataset:
    """Fully sampled ISMRMRD raw .h5 file(s) → cached export-layout split → ImageDataset."""

    files = _h5_files(path)

    def build():
        images, scales, records, index = [], [], [], []
        for f in tqdm(files, desc="preprocess ISMRMRD", disable=not progress):
            header, slices = ismrmrd_slices(f)
            for key, img in slices:
                x, sc = image_to_training(img, resolution)
                images.append(x)
                scales.append(sc)
                records.append(record_from_header(header, slice_index=key.slice))
                index.append({"file": str(f), "slice_index": key.slice, "contrast_index": key.contrast,
                              "phase": key.phase, "repetition": key.repetition, "set": key.set})
        return images, scales, records, index

    return _cached(cache, files, resolution, "ismrmrd", build)


EXCLUDE_KEYS = {"contrast", "pathology"}
PATHOLOGY_KINDS = ("none", "wm_lesions", "tumour")


def check_exclude(rules, source: str = "training config") -> None:
    """InputError naming the problem for a malformed `data.exclude` list."""
    if rules is None:
        return
    if not isinstance(rules, list) or not all(isinstance(r, dict) and r for r in rules):
        raise InputError(f"{source}: key 'data.exclude' must be a list of mappings like "
                         f"{{contrast: FLAIR, pathology: tumour}}")
    for r in rules:
        bad = sorted(set(r) - EXCLUDE_KEYS)
        if bad:
            raise InputError(f"{source}: key 'data.exclude' has unknown field {bad[0]!r} (allowed: {sorted(EXCLUDE_KEYS)})")
        if "pathology" in r and r["pathology"] not in PATHOLOGY_KINDS:
            raise InputError(f"{source}: 'data.exclude' pathology {r['pathology']!r}, expected one of {PATHOLOGY_KINDS}")


def _matches(record, rule: dict) -> bool:

    if "contrast" in rule and (record.contrast or "").upper() != str(rule["contrast"]).upper():
        return False
    return "pathology" not in rule or pathology_kind(record) == rule["pathology"]


def exclude_combinations(ds: ImageDataset, rules) -> ImageDataset:
    """The images of `ds` whose record matches none of `rules` (each: contrast and/or pathology kind)."""
    keep = [i for i, r in enumerate(ds.records) if not any(_matches(r, rule) for rule in rules)]
    if not keep:
        raise InputError(f"{ds.source}: data.exclude {rules} leaves no training images")
    return ImageDataset(np.asarray(ds.images[keep]), [ds.records[i] for i in keep], ds.source, ds.fov_mm, ds.geometry)


def concat_datasets(parts: list) -> ImageDataset:
    """One dataset of several (images concatenated in memory, in order); the FOV range and the image geometry
    (orientations, phase-encoding directions, pixel sizes) are the union of the parts'."""
    def rng(v):
        return None if v is None else (list(v) if isinstance(v, (list, tuple)) else [float(v), float(v)])

    fovs = [rng(p.fov_mm) for p in parts]
    fov = None if any(f is None for f in fovs) else [min(f[0] for f in fovs), max(f[1] for f in fovs)]
    geos = [p.geometry for p in parts]
    geo = None
    if all(geos):
        geo = {k: sorted(set().union(*[g[k] for g in geos])) for k in ("orientation", "phase_encoding")}
        geo["pixel_mm"] = [min(g["pixel_mm"][0] for g in geos), max(g["pixel_mm"][1] for g in geos)]
    images = np.concatenate([np.asarray(p.images) for p in parts])
    records = [r for p in parts for r in p.records]
    return ImageDataset(images, records, " + ".join(p.source for p in parts), fov, geo)


def build_dataset(data_cfg: dict, resolution: int, progress: bool = True) -> ImageDataset:
    """Dataset from the `data` section of a training config; checks the image size equals the prior's."""
    kind, path = data_cfg["kind"], data_cfg.get("path")
    if not path:
        raise InputError("training config: key 'data.path' is required")
    if kind == "export":
        ds = load_export(path, data_cfg.get("split") or "train")
        if data_cfg.get("also"):
            ds = concat_datasets([ds] + [load_export(p, data_cfg.get("split") or "train") for p in data_cfg["also"]])
    else:
        cache = data_cfg.get("cache") or os.path.join(tempfile.gettempdir(), f"contextmri-cache-{Path(path).stem}")
        ds = (fastmri_dataset if kind == "fastmri" else ismrmrd_dataset)(path, cache, resolution, progress)
    if data_cfg.get("exclude"):
        ds = exclude_combinations(ds, data_cfg["exclude"])
    if data_cfg.get("limit"):
        ds = ds.subset(int(data_cfg["limit"]))
    if ds.resolution != (resolution, resolution):
        raise InputError(f"{ds.source}: images are {ds.resolution[0]}x{ds.resolution[1]} but the prior's "
                         f"resolution is {resolution}x{resolution}")
    if len(ds) == 0:
        raise InputError(f"{ds.source}: no training images")
    return ds
