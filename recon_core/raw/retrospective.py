"""Retrospective undersampling of fully sampled raw data (the real-data evaluation and the demo's real panel).

- `load_real(path, reference)`: every slice of a fully sampled ISMRMRD raw file (read by `recon_core.raw.reader`:
  prewhitened, readout oversampling removed) with its reference and its object region. The reference is built
  from the root-sum-of-squares (RSS) of the fully sampled coil images (independent of anyone's coil maps):
  `"unbiased"` (default since session 18) removes the RSS's noise bias, √max(RSS² − P, 0) with P the noise power
  of a pixel of RSS² (`rss_noise_power`); `"rss"` is the plain RSS (what sessions 8–17 scored against);
- why the bias matters: RSS = √Σ|x_c + n_c|² is biased upward by the noise of every coil (≈ √C·σ where the
  signal is low), while every reconstruction returns one coil-combined image whose noise is not. On the
  16-channel pulseq brain, SENSE from *all* lines (R = 1, so no undersampling error at all) scored only 37.4 dB
  against the plain RSS — its rms error in the darkest fifth of the head 12× that in the brighter half — and
  41.3 dB against the unbiased one (marcsous: 56.4 → 61.5 dB). That common floor was about two thirds of every
  method's error at R 1.7 on pulseq (35.5 dB) and charged a denoising reconstruction for not reproducing the noise
  (the ranking of the methods did not change: training/RUNS.md, "The real-data reference's noise bias");
  `"truth"`: the noiseless image a simulated raw file carries (`truth_images`; only simulator files have one) —
  the exact reference for the simulator's out-of-domain scans;
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
from ..noise_level import kspace_sigma
from .image import to_recon_space
from .noise import to_physical_coils
from .reader import image_group, open_dataset, read_slices


@dataclass
class RealSlice:
    """One fully sampled real slice: SliceData (prewhitened), its header, the reference and region."""

    name: str
    sd: object
    header: object
    reference: np.ndarray      # (ny, nx) float64 (unbiased) root-sum-of-squares of the full coil images
    region: np.ndarray         # (ny, nx) bool
    noise_power: float = 0.0   # P of `rss_noise_power` (physical units²); 0 when the plain RSS is the reference
    reference_kind: str = "rss"


REFERENCES = ("unbiased", "rss", "truth")


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


def rss_noise_power(sd) -> float:
    """P = E[RSS² of pure noise] of one pixel, in the unwhitened physical coils: the trace of the coil noise
    covariance (image and k-space alike under the orthonormal FFT). σ̂ (`noise_level.kspace_sigma` over the
    slice's fully sampled k-space in the reconstruction's coils: white after prewhitening, where the estimator
    is exact to ~10 %) times Σ|L|², L (C, n) the map to the physical coils (`noise.to_physical_coils`; the
    identity, Σ|L|² = C, when the file has no noise readouts — with correlated coil noise σ̂ then reads a little
    low, so P errs on the side of too little correction). 0 when σ̂ cannot be estimated."""
    k = np.asarray(sd.kspace)
    n = k.shape[0]
    sigma = float(np.asarray(kspace_sigma(k[None], np.ones(k.shape[-2:], bool)))[0])
    if not np.isfinite(sigma):
        return 0.0
    lift = to_physical_coils(np.eye(n, dtype=np.complex64), getattr(sd, "prewhitener", None),
                             getattr(sd, "coil_lift", None))
    gain = float(n) if lift is None else float((np.abs(lift) ** 2).sum())
    return sigma ** 2 * gain


def truth_images(path) -> dict:
    """{slice: (ny, nx) float64 magnitude} of the noiseless truth a simulated raw file carries (the image group
    "reference" of `recon_core.sim.scan.write_scan`, reconSpace, unit-norm coil maps: the units of `scanner_units`).
    InputError naming the file when it has none."""
    ds = open_dataset(path)
    try:
        images = image_group(ds, "reference")
    finally:
        ds.close()
    if not images:
        raise InputError(f"{path}: no noiseless truth (image group 'reference'): only simulated raw files carry one; "
                         f"use the unbiased or rss reference")
    return {int(im.slice): np.abs(im.data[0, 0]).astype(np.float64) for im in images}


def load_real(path, reference: str = "unbiased") -> list[RealSlice]:
    """Fully sampled slices of an ISMRMRD raw file (InputError when it is not fully sampled). The reference is
    made from the root-sum-of-squares of the unwhitened physical coil images (`physical_kspace`), the units the
    reconstructions are scored in: `reference` "unbiased" √max(RSS² − P, 0) (P: `rss_noise_power`), "rss" the
    plain RSS, or "truth" the file's noiseless truth (simulated files; `truth_images`) (module docstring). The
    object region comes from the plain RSS either way (the same pixels)."""
    if reference not in REFERENCES:
        raise InputError(f"real data: unknown reference {reference!r} (expected one of {', '.join(REFERENCES)})")
    raw = read_slices(path)
    truth = truth_images(path) if reference == "truth" else None
    out = []
    for sd in raw.slices:
        if not sd.mask.all():
            raise InputError(f"{path}: slice {sd.key.slice} is not fully sampled "
                             f"({int(sd.mask[:, 0].sum())} of {sd.mask.shape[0]} lines)")
        rss2 = (np.abs(ifft2c_np(physical_kspace(sd))) ** 2).sum(0)
        rss = to_recon_space(np.sqrt(rss2).astype(np.float32), sd).astype(np.float64)
        power = rss_noise_power(sd) if reference == "unbiased" else 0.0
        if reference == "truth":
            ref = truth.get(int(sd.key.slice))
            if ref is None or ref.shape != rss.shape:
                raise InputError(f"{path}: the noiseless truth of slice {sd.key.slice} is "
                                 f"{'missing' if ref is None else ref.shape}, the reconstructions {rss.shape}")
        elif reference == "rss":
            ref = rss
        else:
            ref = to_recon_space(np.sqrt(np.maximum(rss2 - power, 0)).astype(np.float32), sd).astype(np.float64)
        out.append(RealSlice(f"{os.path.basename(os.fspath(path))}#{sd.key.slice}", sd, raw.header, ref,
                             object_region(rss), power, reference))
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
