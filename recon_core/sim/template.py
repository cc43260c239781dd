"""The anatomy template the simulator deforms: nilearn's MNI152 2009a 1 mm tissue maps as one cached base
volume (WM, GM, CSF and the distance outside the brain), and the MNI grid constants.

Cache: $CONTEXTMRI_CACHE or ~/.cache/contextmri (file `sim/mni152_tissue_v{CACHE_VERSION}.npz`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ..io_utils import atomic_path

CACHE_VERSION = 1
PAD = 12                      # voxels of zero padding around the MNI volume
MNI_ORIGIN = (98, 134, 72)    # voxel index of MNI (0, 0, 0) mm in the 197×233×189 1 mm grid
#: Superior/inferior extent (MNI z, mm) over which axial slices are taken (upper cerebellum to high convexity).
Z_RANGE_MM = (-26.0, 66.0)   # below ~−26 mm the skull-stripped template splits into lobes


def cache_dir() -> Path:
    root = os.environ.get("CONTEXTMRI_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "contextmri")
    return Path(root) / "sim"


def _build_base() -> np.ndarray:
    """(4, Z, Y, X) uint8: WM, GM, CSF (×255) and distance outside the brain (0.25 mm units, ≤ 63.75)."""
    from nilearn import datasets  # heavy (sklearn, nibabel): only when the cache is cold

    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).get_fdata(), dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).get_fdata(), dtype=np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).get_fdata(), dtype=np.float32)
    gm, wm = gm * mask, wm * mask
    tot = gm + wm
    over = tot > 1
    gm[over] /= tot[over]
    wm[over] /= tot[over]
    csf = np.clip(mask - gm - wm, 0, 1)
    vols = [np.pad(v, PAD) for v in (wm, gm, csf, mask)]
    outside = vols[3] < 0.5
    # exact EDT on a 2 mm grid, trilinearly upsampled (aligned corners: the sizes are odd)
    assert all(s % 2 == 1 for s in outside.shape), outside.shape
    d2 = ndi.distance_transform_edt(outside[::2, ::2, ::2]).astype(np.float32) * 2.0
    d = torch.nn.functional.interpolate(torch.from_numpy(d2)[None, None], size=outside.shape, mode="trilinear",
                                        align_corners=True)[0, 0].numpy()
    d = np.where(outside, np.maximum(d, 0.5), 0.0)
    out = np.stack([np.round(vols[0] * 255), np.round(vols[1] * 255), np.round(vols[2] * 255),
                    np.round(np.clip(d, 0, 63.75) * 4)]).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 3, 2, 1))  # (4, Z, Y, X)


@lru_cache(maxsize=1)
def base_volume() -> np.ndarray:
    """The cached (4, Z, Y, X) uint8 base volume (see `_build_base`); built on first use (~5 s)."""
    path = cache_dir() / f"mni152_tissue_v{CACHE_VERSION}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return f["base"]
        except Exception:  # corrupt cache: rebuild
            pass
    base = _build_base()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, base=base)
    except OSError:  # read-only home: keep it in memory only
        pass
    return base
