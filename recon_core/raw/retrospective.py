"""Retrospective undersampling of fully sampled raw data (the real-data evaluation and the demo's real panel).

- `load_real(path)`: every slice of a fully sampled ISMRMRD raw file (read by `recon_core.raw.reader`:
  prewhitened, readout oversampling removed) with its reference = root-sum-of-squares of the fully sampled
  coil images (independent of anyone's coil maps) and its object region;
- `object_region(rss)`: the pixels a real image is scored on (background excluded);
- `undersample(sd, spec)`: the slice with only the rows of a 1-D mask `KIND:ACCEL[:ACS]` kept, ACS rows as
  calibration (e.g. `regular1d:2:24`, the scanner's GRAPPA pattern, or `uniform1d:4:0.08`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from ..fft import ifft2c_np
from ..masks import make_mask, parse_mask_acs, parse_mask_spec
from .image import to_recon_space
from .noise import to_physical_coils
from .reader import read_slices


@dataclass
class RealSlice:
    """One fully sampled real slice: SliceData (prewhitened), its header, the reference and region."""

    name: str
    sd: object
    header: object
    reference: np.ndarray      # (ny, nx) float64 root-sum-of-squares of the full coil images
    region: np.ndarray         # (ny, nx) bool


def object_region(rss: np.ndarray) -> np.ndarray:
    """Object pixels of a magnitude image: the smoothed image above the background level (median of the
    4-pixel frame: the noise floor of a root-sum-of-squares image is high with many coils at low SNR) plus
    35 % of the way to Otsu's threshold (which alone cuts dark, coil-shaded parts of the head), holes
    filled, the largest connected component, dilated by 2 pixels."""
    sm = ndi.gaussian_filter(np.asarray(rss, dtype=np.float64), 1.5)
    frame = np.concatenate([sm[:4].ravel(), sm[-4:].ravel(), sm[:, :4].ravel(), sm[:, -4:].ravel()])
    bg = float(np.median(frame))
    m = sm > bg + 0.35 * (_otsu(sm) - bg)
    lab, n = ndi.label(m)
    if n == 0:
        raise InputError("real data: no object found in the reference image")
    sizes = ndi.sum(np.ones_like(sm), lab, index=np.arange(1, n + 1))
    m = ndi.binary_fill_holes(lab == (1 + int(np.argmax(sizes))))
    return ndi.binary_dilation(m, iterations=2)


def _otsu(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the values of `x` (maximal between-class variance)."""
    hist, edges = np.histogram(x.ravel(), bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = ((hist * centres).sum() - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[int(np.argmax(w0 * w1 * (m0 - m1) ** 2))])


def physical_kspace(sd) -> np.ndarray:
    """The slice's k-space (C', ny, nx) in the unwhitened physical coils — the units every reconstruction is brought
    back to (`recon_core.raw.image.scanner_units`): `noise.to_physical_coils` with the slice's prewhitener and coil
    lift, or the k-space as it is."""
    k = to_physical_coils(np.asarray(sd.kspace), getattr(sd, "prewhitener", None), getattr(sd, "coil_lift", None))
    return np.asarray(sd.kspace) if k is None else k.astype(np.complex64)


def load_real(path) -> list[RealSlice]:
    """Fully sampled slices of an ISMRMRD raw file (InputError when it is not fully sampled); the reference is the
    root-sum-of-squares of the unwhitened physical coil images (`physical_kspace`), the units the reconstructions
    are scored in."""
    raw = read_slices(path)
    out = []
    for sd in raw.slices:
        if not sd.mask.all():
            raise InputError(f"{path}: slice {sd.key.slice} is not fully sampled "
                             f"({int(sd.mask[:, 0].sum())} of {sd.mask.shape[0]} lines)")
        rss = to_recon_space(np.sqrt((np.abs(ifft2c_np(physical_kspace(sd))) ** 2).sum(0)).astype(np.float32), sd)
        out.append(RealSlice(f"{os.path.basename(os.fspath(path))}#{sd.key.slice}", sd, raw.header,
                             rss.astype(np.float64), object_region(rss)))
    return out


def undersample(sd, spec: str, seed: int = 0):
    """SliceData with only the rows of mask `spec` (KIND:ACCEL[:ACS]) kept; ACS rows as calibration."""
    kind, accel = parse_mask_spec(spec, allow_acs=True)
    if kind == "poisson2d":
        raise InputError(f"real-data evaluation: 1-D masks only (the raw stream samples whole lines), got {spec}")
    ny, nx = sd.kspace.shape[-2:]
    m = make_mask(kind, (ny, nx), accel, seed=seed, **parse_mask_acs(spec))
    lo, hi = int(m.acs_lines.min()), int(m.acs_lines.max()) + 1
    calib = np.zeros_like(sd.kspace)
    calib[:, lo:hi] = sd.kspace[:, lo:hi]
    return replace(sd, kspace=(sd.kspace * m.mask[None]).astype(np.complex64), mask=m.mask, calib=calib,
                   acs_rows=(lo, hi), acs_source="kspace-centre"), m
