"""Labelled pathology for the digital brain, defined in MNI space (so it deforms with the subject).

- "wm_lesions": 4–14 ellipsoidal white-matter lesions (2–6 mm radii, periventricular/deep WM);
  long T1 and T2 → hyperintense on T2/FLAIR, hypointense on T1. Label "Nonspecific white matter lesion".
- "tumour" (alias "tumor"): an irregular intra-axial mass (radius 8–16 mm) with a necrotic core, an
  enhancing solid rim (gadolinium uptake → bright ring on T1POST), surrounding vasogenic oedema that
  follows the white matter, and mass effect (surrounding tissue pushed outward). Labels "Mass", "Edema".
Label names follow fastMRI+ brain annotations. `PATHOLOGIES` lists the accepted names.
"""

from __future__ import annotations

import numpy as np

from recon_core.errors import InputError

from .template import MNI_ORIGIN, PAD, Z_RANGE_MM, base_volume
from .tissues import INDEX

PATHOLOGIES = ("none", "wm_lesions", "tumour")
LABELS = {"none": [], "wm_lesions": ["Nonspecific white matter lesion"], "tumour": ["Mass", "Edema"]}
_ALIASES = {"none": "none", "normal": "none", "healthy": "none", "": "none",
            "wm_lesions": "wm_lesions", "wm_lesion": "wm_lesions", "lesions": "wm_lesions", "ms": "wm_lesions",
            "white_matter_lesions": "wm_lesions",
            "tumour": "tumour", "tumor": "tumour", "mass": "tumour", "glioma": "tumour"}


def pathology_kind(record) -> str:
    """The pathology class of a MetadataRecord: none | wm_lesions | tumour (the evaluation's groups)."""
    labels = [s.lower() for s in (record.pathology or [])]
    if not labels:
        return "none"
    if any("lesion" in s for s in labels):
        return "wm_lesions"
    return "tumour"


def canonical(name: str | None) -> str:
    """User pathology name → one of PATHOLOGIES (InputError if unknown)."""
    key = "none" if name is None else str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in _ALIASES:
        raise InputError(f"pathology: expected one of {', '.join(PATHOLOGIES)}, got {name!r}")
    return _ALIASES[key]


def _soft(x: np.ndarray, width: float) -> np.ndarray:
    """0 → 1 ramp of `width` around x = 0 (x > 0 inside)."""
    return np.clip(x / width + 0.5, 0.0, 1.0)


class WMLesions:
    labels = LABELS["wm_lesions"]

    def __init__(self, centres: np.ndarray, radii: np.ndarray):
        self.centres = centres      # (K, 3) MNI mm
        self.radii = radii          # (K, 3) mm

    def displace(self, src):
        return src

    def apply(self, frac: np.ndarray, src: np.ndarray) -> None:
        i_wm, i_gm, i_les = INDEX["wm"], INDEX["gm"], INDEX["lesion"]
        zs = src[..., 2]
        for c, r in zip(self.centres, self.radii):
            rr = r.max() + 2
            sel = np.abs(zs - c[2]) < rr
            if not sel.any():
                continue
            sel &= (np.abs(src[..., 0] - c[0]) < rr) & (np.abs(src[..., 1] - c[1]) < rr)
            if not sel.any():
                continue
            q = (src[sel] - c) / r
            rn = np.sqrt((q ** 2).sum(-1))
            f = _soft((1 - rn) * r.min(), 1.0).astype(np.float32)
            wm, gm = frac[i_wm][sel], frac[i_gm][sel]
            take_wm, take_gm = f * wm, 0.3 * f * gm
            frac[i_wm][sel] = wm - take_wm
            frac[i_gm][sel] = gm - take_gm
            frac[i_les][sel] += take_wm + take_gm


class Tumour:
    labels = LABELS["tumour"]

    def __init__(self, centre, radius, oedema_mm, shape_a, shape_b, shape_phase, push):
        self.c = np.asarray(centre, dtype=np.float64)
        self.R = float(radius)
        self.E = float(oedema_mm)
        self.a, self.b, self.ph = np.asarray(shape_a), np.asarray(shape_b), float(shape_phase)
        self.push = float(push)

    def displace(self, src):
        c = self.c.astype(np.float32)
        d = src - c
        r2 = (d ** 2).sum(-1, keepdims=True)
        return c + d * (1 - np.float32(self.push) * np.exp(-r2 / np.float32((2 * self.R) ** 2)))

    def _reff(self, d, r):
        u = d / np.maximum(r, 1e-6)[..., None]
        return self.R * (1 + 0.12 * (u @ self.a) + 0.10 * ((u @ self.b) ** 2 - 1 / 3)
                         + 0.06 * np.sin(3 * np.arctan2(u[..., 1], u[..., 0]) + self.ph))

    def apply(self, frac: np.ndarray, src: np.ndarray) -> None:
        reach = self.R * 1.4 + self.E + 3
        sel = np.abs(src[..., 2] - self.c[2]) < reach
        if not sel.any():
            return
        sel &= (np.abs(src[..., 0] - self.c[0]) < reach) & (np.abs(src[..., 1] - self.c[1]) < reach)
        d = src[sel] - self.c
        r = np.sqrt((d ** 2).sum(-1))
        re = self._reff(d, r)
        i = {k: INDEX[k] for k in ("wm", "gm", "csf", "tumour", "necrosis", "oedema")}
        wm, gm, csf = frac[i["wm"]][sel], frac[i["gm"]][sel], frac[i["csf"]][sel]
        brain = wm + gm + csf
        inside = _soft(re - r, 1.0)                      # whole mass
        core = _soft(0.55 * re - r, 1.0)                 # necrotic core
        rim = inside - core
        oed = (_soft(re + self.E - r, 0.4 * self.E + 1) - inside) * np.exp(-np.clip(r - re, 0, None) / self.E)
        oed = np.clip(oed, 0, 1) * (wm + 0.3 * gm) / np.maximum(brain, 1e-6)
        keep = np.clip(1 - inside - oed, 0, 1)
        frac[i["necrosis"]][sel] += (core * brain).astype(np.float32)
        frac[i["tumour"]][sel] += (rim * brain).astype(np.float32)
        frac[i["oedema"]][sel] += (oed * brain).astype(np.float32)
        frac[i["wm"]][sel] = (wm * keep).astype(np.float32)
        frac[i["gm"]][sel] = (gm * keep).astype(np.float32)
        frac[i["csf"]][sel] = (csf * keep).astype(np.float32)


def _mni_z_range(subj, slab_mm):
    if slab_mm is None:
        slab_mm = Z_RANGE_MM
    lo, hi = float(min(slab_mm)), float(max(slab_mm))
    zs = [(subj.affine @ np.array([0.0, 0.0, z]) + subj.shift_mm)[2] for z in (lo, hi)]
    return min(zs), max(zs)


def _candidates(z_lo, z_hi, thresh=0.85, channel=0):
    """MNI mm coordinates of voxels whose tissue `channel` (0 WM, 1 GM) fraction > thresh within z range."""
    base = base_volume()
    zi0 = int(max(np.floor(z_lo + MNI_ORIGIN[2] + PAD), 0))
    zi1 = int(min(np.ceil(z_hi + MNI_ORIGIN[2] + PAD) + 1, base.shape[1]))
    sub = base[channel, zi0:zi1:2, ::2, ::2]
    zz, yy, xx = np.nonzero(sub > thresh * 255)
    pts = np.stack([xx * 2, yy * 2, zz * 2 + zi0], -1).astype(np.float64) - (np.array(MNI_ORIGIN) + PAD)
    return pts


def make_pathology(name: str | None, rng: np.random.Generator, subj, slab_mm=None) -> list:
    """Pathology objects for `name` ("none", "wm_lesions", "tumour"), placed to intersect the slab."""
    name = canonical(name)
    if name == "none":
        return []
    z_lo, z_hi = _mni_z_range(subj, slab_mm)
    if name == "wm_lesions":
        pts = _candidates(z_lo - 3, z_hi + 3, 0.9)
        if len(pts) == 0:
            pts = _candidates(-20, 40, 0.9)
        k = int(rng.integers(4, 15))
        centres = pts[rng.choice(len(pts), size=min(k, len(pts)), replace=False)]
        centres = centres + rng.uniform(-1, 1, centres.shape)
        radii = rng.uniform(2.0, 6.0, (len(centres), 3))
        return [WMLesions(centres, radii)]
    # tumour: centre in deep WM, well inside the brain, near the middle of the slab
    mid, half = 0.5 * (z_lo + z_hi), max(0.25 * (z_hi - z_lo), 4.0)
    pts = _candidates(mid - half, mid + half, 0.8)
    if len(pts) == 0:
        pts = _candidates(0, 40, 0.8)
    pts = pts[np.abs(pts[:, 0]) > 15] if (np.abs(pts[:, 0]) > 15).any() else pts   # off the midline
    c = pts[rng.integers(len(pts))]
    a = rng.normal(0, 1, 3)
    b = rng.normal(0, 1, 3)
    return [Tumour(c, radius=rng.uniform(8, 16), oedema_mm=rng.uniform(8, 22), shape_a=a / np.linalg.norm(a),
                   shape_b=b / np.linalg.norm(b), shape_phase=rng.uniform(0, 2 * np.pi), push=rng.uniform(0.15, 0.35))]


def apply_pathology(objs: list, frac: np.ndarray, src: np.ndarray) -> None:
    """Insert each pathology object into the fractions (T, P, ny, nx) in place; src (P, ny, nx, 3) MNI mm."""
    for p in objs:
        p.apply(frac, src)
