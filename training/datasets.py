"""Training datasets: normalised complex images (2, H, W) float32 (real, imag) + a MetadataRecord each.

Sources:
- the simulator's export (`recon_core.sim.export.load_split`, layout in CONTRACTS.md), used directly;
- fastMRI multi-coil `.h5` (`kspace` (S, C, ky, kx) + `ismrmrd_header`) and ISMRMRD raw `.h5`
  (fully sampled acquisitions): preprocessed once (centred orthonormal IFFT → centre crop to the prior's
  resolution → ESPIRiT (recon_core.coils) → MVUE → 99th percentile normalisation, metadata from the
  header via recon_core.metadata) into a cache directory in the export layout, then read like an export.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from recon_core.errors import InputError


class ImageDataset:
    """Images (N, 2, H, W) float32 (array or memmap) + N MetadataRecords. Item i → (image (2,H,W) float32, record)."""

    def __init__(self, images, records, source: str = "memory"):
        images = images if isinstance(images, np.ndarray) else np.asarray(images)
        if images.ndim != 4 or images.shape[1] != 2:
            raise InputError(f"{source}: images must be (N, 2, H, W) (real, imag), got shape {images.shape}")
        if len(records) != images.shape[0]:
            raise InputError(f"{source}: {images.shape[0]} images but {len(records)} metadata records")
        self.images, self.records, self.source = images, list(records), source

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def __getitem__(self, i):
        return np.asarray(self.images[i], dtype=np.float32), self.records[i]

    def subset(self, n: int) -> "ImageDataset":
        return ImageDataset(self.images[:n], self.records[:n], self.source)


# ------------------------------------------------------------------------------------------------
def load_export(path, split: str = "train") -> ImageDataset:
    """The simulator export `path/<split>/` (mvue.npy (N,2,H,W) normalised + metadata), memory-mapped,
    via `recon_core.sim.export.load_split`."""
    from recon_core.sim.export import load_split

    sd = load_split(Path(path), split)
    return ImageDataset(sd.mvue, sd.records, source=str(Path(path) / split))


def write_export_split(directory, split: str, images: np.ndarray, scales, records, index, info: dict) -> Path:
    """Write an export-layout split atomically (temp dir + rename): mvue.npy, scale.npy, metadata.jsonl,
    index.jsonl, info.json."""
    from recon_core.prior.checkpoint import _atomic_dir

    target = Path(directory) / split
    tmp, commit = _atomic_dir(target)
    np.save(tmp / "mvue.npy", np.ascontiguousarray(images, dtype=np.float32))
    np.save(tmp / "scale.npy", np.asarray(scales, dtype=np.float32))
    with open(tmp / "metadata.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict()) + "\n")
    with open(tmp / "index.jsonl", "w") as fh:
        for d in index:
            fh.write(json.dumps(d) + "\n")
    (tmp / "info.json").write_text(json.dumps(info, indent=2, default=str))
    commit()
    return target


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

    IFFT → centre crop of the coil images to R×R → FFT → ESPIRiT maps from the central `calib`² block
    (ContextMRI: calib_width 24) → MVUE → divide by the 99th percentile of |MVUE| (recon_core.mvue).
    """
    from recon_core import coils, mvue
    from recon_core.fft import fft2c_np, ifft2c_np

    img = _centre_crop(ifft2c_np(np.asarray(ksp, dtype=np.complex64)), resolution, resolution)
    kc = fft2c_np(img).astype(np.complex64)
    maps = coils.espirit_maps(kc, calib=min(int(calib), resolution))
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
    import h5py
    from tqdm.auto import tqdm

    from recon_core.metadata import record_from_fastmri_h5

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


def read_ismrmrd_kspace(path):
    """Fully sampled ISMRMRD raw .h5 → (header, {slice: k-space (C, ky, kx) complex64}) in reconSpace x.

    Noise scans are skipped; readout oversampling (encoded x = 2 × recon x) is removed; lines are placed
    at kspace_encode_step_1 relative to the encoding centre. Raises InputError if a slice is undersampled.
    """
    import ismrmrd

    try:
        dset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    except Exception as exc:  # h5py/ismrmrd raise various types for non-ISMRMRD files
        raise InputError(f"{path}: not an ISMRMRD dataset ({exc})") from exc
    try:
        header = ismrmrd.xsd.CreateFromDocument(dset.read_xml_header())
        enc = header.encoding[0]
        ny = int(enc.encodedSpace.matrixSize.y)
        nx_enc, nx_rec = int(enc.encodedSpace.matrixSize.x), int(enc.reconSpace.matrixSize.x)
        lim = enc.encodingLimits.kspace_encoding_step_1
        centre = int(lim.center) if lim is not None and lim.center is not None else ny // 2
        data, filled = {}, {}
        for i in range(dset.number_of_acquisitions()):
            acq = dset.read_acquisition(i)
            if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                continue
            s, ky = int(acq.idx.slice), int(acq.idx.kspace_encode_step_1) - centre + ny // 2
            if not 0 <= ky < ny:
                raise InputError(f"{path}: acquisition {i} has phase-encode index outside the {ny}-line matrix")
            if s not in data:
                data[s] = np.zeros((acq.active_channels, ny, acq.number_of_samples), np.complex64)
                filled[s] = np.zeros(ny, bool)
            data[s][:, ky, :] = acq.data
            filled[s][ky] = True
    finally:
        dset.close()
    out = {}
    from recon_core.fft import fft2c_np, ifft2c_np

    for s, k in sorted(data.items()):
        if filled[s].mean() < 0.95:
            raise InputError(f"{path}: slice {s} has only {filled[s].sum()}/{ny} phase-encode lines; "
                             f"training needs fully sampled k-space")
        if k.shape[-1] != nx_rec and nx_enc == 2 * nx_rec:
            k = fft2c_np(_centre_crop(ifft2c_np(k), ny, nx_rec)).astype(np.complex64)
        out[s] = k
    return header, out


def ismrmrd_dataset(path, cache, resolution: int, progress: bool = True) -> ImageDataset:
    """Fully sampled ISMRMRD raw .h5 file(s) → cached export-layout split → ImageDataset."""
    from tqdm.auto import tqdm

    from recon_core.metadata import record_from_header

    files = _h5_files(path)

    def build():
        images, scales, records, index = [], [], [], []
        for f in tqdm(files, desc="preprocess ISMRMRD", disable=not progress):
            header, slices = read_ismrmrd_kspace(f)
            for s, k in slices.items():
                x, sc = slice_to_image(k, resolution)
                images.append(x)
                scales.append(sc)
                records.append(record_from_header(header, slice_index=s))
                index.append({"file": str(f), "slice_index": s})
        return images, scales, records, index

    return _cached(cache, files, resolution, "ismrmrd", build)


def build_dataset(data_cfg: dict, resolution: int, progress: bool = True) -> ImageDataset:
    """Dataset from the `data` section of a training config; checks the image size equals the prior's."""
    kind, path = data_cfg["kind"], data_cfg.get("path")
    if not path:
        raise InputError("training config: key 'data.path' is required")
    if kind == "export":
        ds = load_export(path, data_cfg.get("split") or "train")
    else:
        cache = data_cfg.get("cache") or os.path.join(tempfile.gettempdir(), f"contextmri-cache-{Path(path).stem}")
        ds = (fastmri_dataset if kind == "fastmri" else ismrmrd_dataset)(path, cache, resolution, progress)
    if data_cfg.get("limit"):
        ds = ds.subset(int(data_cfg["limit"]))
    if ds.resolution != (resolution, resolution):
        raise InputError(f"{ds.source}: images are {ds.resolution[0]}x{ds.resolution[1]} but the prior's "
                         f"resolution is {resolution}x{resolution}")
    if len(ds) == 0:
        raise InputError(f"{ds.source}: no training images")
    return ds
