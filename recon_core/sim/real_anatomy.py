"""Real anatomy for the training export (issue 26): slices of real magnitude MR volumes with scanner variety.

The simulator's anatomy is one template (MNI152, an average of 152 brains: smooth cortex). Real magnitude
volumes (NIfTI, any voxel size) add real gyral shape, real skull and scalp and real contrast; what they lack
(phase, coils, k-space noise) is simulated exactly as for the simulator's images (`export._acquire`).

Per subject (= one draw from one volume), from the subject seed:
- the volume: uniformly among the manifest's entries;
- orientation, in-plane dihedral transform, FOV 180–300 mm on a 128–320 matrix, SNR 20–50 dB, fine elastic
  warp (0.5–2 mm at ≈ 11 mm wavelength): `variety.draw_variety`, the simulator's draws;
- an in-plane rotation of ±12°, a shift of the grid's centre of ±12 mm, slice thickness 1–5 mm (sub-slices
  averaged), slices spread over the middle of the head along the slice normal;
- magnitude: a gamma of 0.7–1.4 (log-uniform; contrast changes a real scanner's parameters make within one
  weighting), a smooth multiplicative bias field (strength 0.05–0.4), background outside the head zeroed
  (the volume's own magnitude noise there would otherwise be learnt as anatomy);
- phase: a low-order polynomial plus a smooth 3-D field, the simulator's background phase model.

Manifest: DIR/volumes.json, a list of {"file": NIfTI path relative to DIR, "contrast": record contrast label
or null, "source": where it came from, "licence": its licence, optional "url" and "sha256"} (the volumes the
shipped prior saw: training/anatomy/volumes.json). The metadata record is the anatomy ("brain"),
the slice counter and the contrast label; sequence parameters, field, age, sex and pathology are unknown
(None): the volumes' headers do not hold them.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from recon_core.errors import InputError

from . import variety as V
from .phantom import _fine_displacement, _ras_basis, background_phase, draw_phase_coef

MANIFEST = "volumes.json"
ROTATION_DEG = 12.0
SHIFT_MM = 12.0
THICKNESS_MM = (1.0, 5.0)
GAMMA_RANGE = (0.7, 1.4)
#: fraction of the head's extent along the slice normal from which slices are drawn, per orientation
#: (axial: skull base to vertex, not the neck)
NORMAL_RANGE = {"axial": (0.35, 0.9), "sagittal": (0.2, 0.8), "coronal": (0.2, 0.8)}


def load_manifest(directory, verify: bool = False) -> list[dict]:
    """Entries of DIR/volumes.json with absolute paths; InputError naming what is missing or malformed, or
    (`verify`) a file whose SHA-256 differs from the entry's "sha256"."""
    path = os.path.join(os.fspath(directory), MANIFEST)
    if not os.path.isfile(path):
        raise InputError(f"real anatomy: {path} not found (a list of {{file, contrast, source, licence}})")
    try:
        with open(path) as fh:
            entries = json.load(fh)
    except ValueError as e:
        raise InputError(f"real anatomy: {path} is not valid JSON ({e})") from None
    if not isinstance(entries, list) or not entries:
        raise InputError(f"real anatomy: {path} must hold a non-empty list of volumes")
    out = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("file"), str):
            raise InputError(f"real anatomy: {path} entry {k} has no 'file'")
        f = os.path.join(os.path.dirname(path), e["file"])
        if not os.path.isfile(f):
            raise InputError(f"real anatomy: volume {f} (entry {k} of {path}) not found")
        if verify and e.get("sha256"):
            with open(f, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            if digest != e["sha256"]:
                raise InputError(f"real anatomy: {f} has SHA-256 {digest[:12]}…, volumes.json says {e['sha256'][:12]}…")
        out.append({**e, "path": os.path.abspath(f), "contrast": e.get("contrast")})
    return out


@lru_cache(maxsize=8)
def load_volume(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(volume (X, Y, Z) float32 in RAS voxel order, normalised to its 99th percentile inside the head,
    background zeroed; head mask (X, Y, Z) bool; voxel→RAS mm affine (4, 4); head centroid RAS mm (3,))."""
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(path))
        vol = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:   # nibabel raises many kinds for unreadable files
        raise InputError(f"real anatomy: cannot read {path} as a volume ({type(e).__name__}: {e})") from None
    while vol.ndim > 3 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3 or min(vol.shape) < 16:
        raise InputError(f"real anatomy: {path} is not a 3-D volume (shape {vol.shape})")
    vol = np.nan_to_num(np.abs(vol))
    head = head_mask(vol)
    if head.sum() < 1000:
        raise InputError(f"real anatomy: no head found in {path}")
    vol = vol / np.float32(np.percentile(vol[head], 99.0))
    soft = ndi.gaussian_filter(head.astype(np.float32), 1.0)
    vol = np.clip(vol, 0, 2) * soft
    centroid = (img.affine @ np.r_[np.argwhere(head).mean(0), 1.0])[:3]
    return vol.astype(np.float32), head, img.affine.astype(np.float64), centroid


@lru_cache(maxsize=8)
def _head_points(path: str) -> np.ndarray:
    """(N, 3) RAS mm of every 97th head voxel of the volume at `path` (for slice ranges along any normal)."""
    _, head, affine, _ = load_volume(path)
    return (affine[:3, :3] @ np.argwhere(head)[::97].T + affine[:3, 3:4]).T


def head_mask(vol: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool head (everything inside the outer skin): a threshold of the smoothed volume at 8 % of its
    99th percentile, closed, holes filled slice by slice in every direction, largest connected component."""
    sm = ndi.gaussian_filter(vol, 1.5)
    m = sm > 0.08 * np.percentile(sm[sm > 0], 99.0) if (sm > 0).any() else sm > 0
    m = ndi.binary_closing(m, iterations=3)
    for ax in range(3):
        m = np.stack([ndi.binary_fill_holes(s) for s in np.moveaxis(m, ax, 0)], axis=ax)
    lab, n = ndi.label(m)
    if n > 1:
        sizes = ndi.sum(m, lab, index=np.arange(1, n + 1))
        m = lab == (1 + int(np.argmax(sizes)))
    return m


def _smooth_field(rng: np.random.Generator, pts: np.ndarray, scale_mm: float = 90.0) -> np.ndarray:
    """A smooth random field (unit std, ≈ `scale_mm` wavelength) sampled at RAS points (..., 3) mm."""
    n = 6
    coarse = rng.standard_normal((n, n, n)).astype(np.float32)
    idx = (pts / scale_mm + n / 2 - 0.5).reshape(-1, 3).T
    return ndi.map_coordinates(coarse, idx, order=3, mode="mirror").reshape(pts.shape[:-1]).astype(np.float32)


def render_real(entry: dict, sseed: int, n: int, v: V.Variety) -> dict:
    """`n` slices of the volume `entry` with variety `v` on a v.render_matrix² grid over v.fov_mm.

    Returns {"x": (n, M, M) complex64 (phase and bias applied, arbitrary units), "brain", "head": (n, M, M)
    bool, "z_mm": (n,) slice positions along the normal (mm from the head centroid), "extra": draws}."""
    vol, head, affine, centroid = load_volume(entry["path"])
    rng = np.random.default_rng([int(sseed), 0x4EA1])
    M, fov = int(v.render_matrix), float(v.fov_mm)
    col, row, nrm = _ras_basis(v.orientation)
    ang = np.deg2rad(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    col, row = np.cos(ang) * col + np.sin(ang) * row, -np.sin(ang) * col + np.cos(ang) * row
    # slice positions: along the normal, over a fraction of the head's extent there
    inv = np.linalg.inv(affine)
    proj = (_head_points(entry["path"]) - centroid) @ nrm
    lo, hi = NORMAL_RANGE[v.orientation]
    a, b = np.quantile(proj, lo), np.quantile(proj, hi)
    z = np.sort(rng.uniform(a, b, n))
    thickness = float(rng.uniform(*THICKNESS_MM))
    vox = float(np.abs(np.linalg.det(affine[:3, :3])) ** (1 / 3))
    ns = int(np.clip(round(thickness / vox), 1, 3))
    offs = ((np.arange(ns) + 0.5) / ns - 0.5) * thickness
    pix = fov / M
    os_ = 2 if pix > 1.5 * vox else 1
    m_hi = M * os_
    c = (np.arange(m_hi) - m_hi / 2 + (os_ - 1) / 2) * (fov / m_hi)
    centre = centroid + (rng.uniform(-SHIFT_MM, SHIFT_MM, 3) * (1 - np.abs(nrm)))
    zz = (z[:, None] + offs[None, :]).reshape(-1)
    pts = (centre[None, None, None, :] + c[None, None, :, None] * col + c[None, :, None, None] * row
           + zz[:, None, None, None] * nrm).astype(np.float32)                          # (P, m, m, 3) RAS mm
    pts = pts + np.float32(v.fine_mm) * _fine_displacement(V.fine_field(v.seed), pts - centroid.astype(np.float32))
    idx = (inv[:3, :3] @ pts.reshape(-1, 3).T + inv[:3, 3:4])
    mag = ndi.map_coordinates(vol, idx, order=1, cval=0.0).reshape(pts.shape[:-1])
    hd = ndi.map_coordinates(head.astype(np.float32), idx, order=1, cval=0.0).reshape(pts.shape[:-1])
    shape = (n, ns, M, os_, M, os_)
    mag = mag.reshape(shape).mean(axis=(1, 3, 5))
    hd = hd.reshape(shape).mean(axis=(1, 3, 5)) > 0.5
    pc = pts.reshape(shape + (3,)).mean(axis=(1, 3, 5)) - centroid                      # (n, M, M, 3)
    gamma = float(np.exp(rng.uniform(np.log(GAMMA_RANGE[0]), np.log(GAMMA_RANGE[1]))))
    bias = np.exp(v.bias_strength * _smooth_field(rng, pc))
    phase = background_phase(draw_phase_coef(rng), M)[None] + 0.8 * _smooth_field(rng, pc)
    x = (np.clip(mag, 0, None) ** gamma * bias * np.exp(1j * phase)).astype(np.complex64)
    # the brain (for the SNR's reference signal): the head eroded by ≈ 12 mm, the skull and scalp excluded
    brain = ndi.binary_erosion(hd, structure=np.ones((1, 3, 3), bool), iterations=max(1, int(round(12 / pix))))
    x = V.dihedral(x, v.dihedral)
    return {"x": x, "brain": V.dihedral(brain, v.dihedral), "head": V.dihedral(hd, v.dihedral),
            "z_mm": z, "extra": {"volume": os.path.basename(entry["path"]), "rotation_deg": round(float(np.rad2deg(ang)), 2),
                                 "thickness_mm": round(thickness, 2), "gamma": round(gamma, 3)}}
