"""Digital brain: per-subject tissue-fraction slabs from nilearn's MNI152 2009a 1 mm maps.

Base volume (built once, cached in memory and on disk): WM and GM probability maps, CSF =
clip(brain mask − GM − WM), and the distance (mm) outside the brain mask, from which the head around
the (skull-stripped) template is made: a thin outer CSF layer, inner table (bone), diploë (marrow fat
+ bone), outer table, galea/muscle, subcutaneous fat and skin, with per-subject, smoothly varying
thicknesses. Cache: $CONTEXTMRI_CACHE or ~/.cache/contextmri (file `sim/mni152_tissue_v1.npz`).

Per subject (all from one seed): rigid motion (rotations ±8°/±6°/±4°, translations ±6 mm), global and
per-axis scaling, a smooth 3-D elastic displacement (~2.5 mm), relaxation jitter (see `tissues.jitter`),
age (20–85 y) with ventricle/sulcal CSF enlargement, a smooth 3-D bias field (±~20 %), a smooth
background phase, and optional pathology (`pathology.py`).

Coordinates: scanner/patient LPS mm with the isocentre at the MNI origin. Axial image (ny, nx): rows
run anterior→posterior (+y LPS), columns patient right→left (+x LPS, radiological display), slices
inferior→superior (+z LPS). Pixel (i, j) of a matrix M sits at ((j − M/2)·d, (i − M/2)·d) mm, d = FOV/M
(the centre pixel of the centred FFT convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from scipy import ndimage as ndi

from .pathology import apply_pathology, make_pathology
from .template import MNI_ORIGIN, PAD, Z_RANGE_MM, base_volume, cache_dir  # noqa: F401  (re-exported)
from .tissues import INDEX, TISSUES, TissueTable, jitter, tissue_table
from .variety import ORIENTATIONS


# ------------------------------------------------------------------------------------------ subject
def _smooth_field(rng: np.random.Generator, channels: int, n: int = 6, up: int = 15) -> np.ndarray:
    """Random smooth field on a coarse cube grid (channels, up, up, up), values ~N(0,1), spanning ±130 mm."""
    coarse = rng.standard_normal((channels, n, n, n)).astype(np.float32)
    fine = np.stack([ndi.zoom(c, up / n, order=3, mode="nearest") for c in coarse])
    fine /= fine.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    return fine.astype(np.float32)


FIELD_HALF_MM = 130.0


def _rotation(yaw, pitch, roll) -> np.ndarray:
    cz, sz = np.cos(yaw), np.sin(yaw)
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


@dataclass
class Subject:
    """One simulated person: geometry, tissue parameters, demographics. Build with `make_subject`."""

    seed: int
    field: float
    age: int
    sex: str
    birth_date: tuple            # (year, month, day)
    study_date: tuple            # (year, month, day)
    affine: np.ndarray           # (3, 3) scanner(RAS) → MNI linear part
    shift_mm: np.ndarray         # (3,) translation (MNI mm)
    fields: np.ndarray           # (6, n, n, n) smooth fields: 3 displacement, bias, layer thickness, phase
    elastic_mm: float
    bias_strength: float
    atrophy: float               # 0 (young) … 1 (old): CSF enlargement
    layers_mm: np.ndarray        # (7,) thickness of outer CSF, inner table, diploë, outer table, muscle, fat, skin
    phase_coef: np.ndarray       # (6,) background phase polynomial coefficients (rad)
    table: TissueTable
    pathology: list = field(default_factory=list)   # list of pathology objects (pathology.py)

    @property
    def labels(self) -> list[str]:
        out: list[str] = []
        for p in self.pathology:
            for lab in p.labels:
                if lab not in out:
                    out.append(lab)
        return out


def make_subject(seed: int, field: float | None = None, age: int | None = None, sex: str | None = None,
                 pathology: str | None = None, slab_mm: tuple | None = None) -> Subject:
    """Random subject from `seed` (field 1.5/3 T random unless given; pathology "none"/"wm_lesions"/"tumour").

    `slab_mm` (z_lo, z_hi) in scanner mm tells pathology where the imaged slab lies (so it is visible).
    """
    rng = np.random.default_rng([int(seed), 0x5EED])
    if field is None:
        field = float(rng.choice([1.5, 3.0]))
    a = int(rng.integers(20, 86)) if age is None else int(age)
    s = str(rng.choice(["M", "F"])) if sex is None else str(sex)
    study = (2024, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    b_md = (int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    birth = ((study[0] - a) if b_md <= study[1:] else (study[0] - a - 1),) + b_md   # whole-year age = a
    deg = np.deg2rad
    rot = _rotation(deg(rng.uniform(-8, 8)), deg(rng.uniform(-6, 6)), deg(rng.uniform(-4, 4)))
    scale = rng.uniform(0.92, 1.06) * rng.uniform(0.96, 1.04, 3)
    if s == "F":
        scale = scale * 0.97
    lin = rot @ np.diag(1.0 / scale)           # scanner → MNI: undo scaling then rotate
    shift = np.array([rng.uniform(-4, 4), rng.uniform(-6, 6), rng.uniform(-4, 4)])
    fields = _smooth_field(rng, 6)
    atrophy = float(np.clip((a - 30) / 55.0, 0, 1) ** 1.5 * rng.uniform(0.6, 1.2))
    layers = np.array([1.0, 1.6, 2.2, 1.4, 1.8, 3.5, 1.5]) * rng.uniform(0.8, 1.25, 7)
    phase = draw_phase_coef(rng)
    table = jitter(tissue_table(field), rng)
    subj = Subject(seed=int(seed), field=float(field), age=a, sex=s, birth_date=birth, study_date=study, affine=lin, shift_mm=shift,
                   fields=fields, elastic_mm=float(rng.uniform(1.5, 3.5)), bias_strength=float(rng.uniform(0.05, 0.2)),
                   atrophy=atrophy, layers_mm=layers, phase_coef=phase, table=table)
    subj.pathology = make_pathology(pathology, rng, subj, slab_mm)
    return subj


# ------------------------------------------------------------------------------------------ rendering
@dataclass
class Slab:
    """Rendered slices of one subject.

    fractions: (T, S, ny, nx) float32 tissue fractions (T = len(TISSUES)); bias: (S, ny, nx) float32;
    phase: (S, ny, nx) float32 rad; z_mm: (S,) slice centres (LPS z, mm); pixel_mm; thickness_mm.
    """
    fractions: np.ndarray
    bias: np.ndarray
    phase: np.ndarray
    z_mm: np.ndarray
    pixel_mm: float
    thickness_mm: float

    @property
    def brain(self) -> np.ndarray:
        """(S, ny, nx) fraction of brain tissue (WM+GM+CSF+pathology)."""
        f = self.fractions
        return f[[INDEX[t] for t in ("wm", "gm", "csf", "lesion", "oedema", "tumour", "necrosis")]].sum(0)

    def dominant(self) -> np.ndarray:
        """(S, ny, nx) uint8 index of the largest tissue fraction; 255 = background."""
        lab = self.fractions.argmax(0).astype(np.uint8)
        lab[self.fractions.sum(0) < 0.5] = 255
        return lab


def slice_positions(n_slices: int, rng: np.random.Generator, spacing_mm: float | None = None,
                    z_range=Z_RANGE_MM) -> tuple[np.ndarray, float]:
    """Centres (LPS z mm) of `n_slices` contiguous axial slices inside `z_range`, and the spacing used."""
    lo, hi = z_range
    span = hi - lo
    if spacing_mm is None:
        spacing_mm = min(6.0, span / max(n_slices, 1))
    total = spacing_mm * (n_slices - 1)
    start = lo + rng.uniform(0, max(span - total, 0.0))
    return start + spacing_mm * np.arange(n_slices), float(spacing_mm)


def _sample_fields(subj: Subject, pts_mm: np.ndarray) -> np.ndarray:
    """Smooth fields at points (..., 3) scanner mm → (6, ...) (trilinear; outside the cube: edge values)."""
    shp = pts_mm.shape[:-1]
    g = torch.from_numpy((pts_mm.reshape(1, 1, 1, -1, 3) / FIELD_HALF_MM).astype(np.float32))
    f = torch.from_numpy(subj.fields)[None]           # (1, 6, z, y, x); grid order (x, y, z)
    out = torch.nn.functional.grid_sample(f, g, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0, 0].numpy().reshape((6,) + shp)


def _fields_on_grid(subj: Subject, zz: np.ndarray, coords: np.ndarray, basis=None) -> np.ndarray:
    """Smooth fields (6, P, m, m) on the slab grid, evaluated on a coarse grid and bilinearly upsampled.

    basis: RAS unit vectors (column, row, normal) of the image grid (`_ras_basis`); None = axial."""
    bc, br, bn = _ras_basis("axial") if basis is None else basis
    m = len(coords)
    nc = max(m // 8, 2) + 1
    c = np.linspace(coords[0], coords[-1], nc)
    Y, X = np.meshgrid(c, c, indexing="ij")
    pts = (X[None, ..., None] * bc + Y[None, ..., None] * br + zz[:, None, None, None] * bn).astype(np.float32)
    coarse = torch.from_numpy(_sample_fields(subj, pts))              # (6, P, nc, nc)
    return torch.nn.functional.interpolate(coarse, size=(m, m), mode="bilinear", align_corners=True).numpy()


def _ras_basis(orientation: str) -> tuple:
    """RAS unit vectors (column, row, normal) of an orientation's image grid (LPS ones in
    `variety.ORIENTATIONS`; RAS = diag(−1, −1, 1)·LPS)."""
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation: expected one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    flip = np.array([-1.0, -1.0, 1.0])
    return tuple(np.asarray(v, dtype=np.float64) * flip for v in ORIENTATIONS[orientation])


#: standard deviations (rad) of the background phase polynomial's coefficients (`background_phase`)
PHASE_COEF_SD = np.array([np.pi, 1.2, 1.2, 0.6, 0.6, 0.6])


def draw_phase_coef(rng: np.random.Generator) -> np.ndarray:
    """(6,) background phase polynomial coefficients (rad), normal with `PHASE_COEF_SD`."""
    return rng.normal(0, 1, 6) * PHASE_COEF_SD


def background_phase(a: np.ndarray, M: int) -> np.ndarray:
    """(M, M) float64 low-order polynomial phase (rad) with coefficients `a` (6,) in in-plane coordinates
    normalised to [−1, 1): constant, x, y, xy, x² − y², x² + y²."""
    c = (np.arange(M) - M / 2) / (M / 2)
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return a[0] + a[1] * xx + a[2] * yy + a[3] * xx * yy + a[4] * (xx ** 2 - yy ** 2) + a[5] * (xx ** 2 + yy ** 2)


def _fine_displacement(fine: np.ndarray, pts_ras: np.ndarray) -> np.ndarray:
    """Fine displacement directions (3, n, n, n) sampled at RAS points (..., 3) mm → (..., 3) (trilinear)."""
    shp = pts_ras.shape[:-1]
    g = torch.from_numpy((pts_ras.reshape(1, 1, 1, -1, 3) / FIELD_HALF_MM).astype(np.float32))
    out = torch.nn.functional.grid_sample(torch.from_numpy(fine)[None], g, mode="bilinear", padding_mode="border",
                                          align_corners=True)
    return out[0, :, 0, 0].numpy().T.reshape(shp + (3,))


def _trilinear_uint8(base_zyx4: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Trilinear sample of a (Z, Y, X, 4) uint8 volume at voxel indices idx (N, 3) = (x, y, z) → (N, 4) float32."""
    Z, Y, X = base_zyx4.shape[:3]
    flat = base_zyx4.view(np.uint32).reshape(-1)
    hi = np.array([X - 1.001, Y - 1.001, Z - 1.001], dtype=np.float32)
    p = np.clip(idx, 0, hi)
    i0 = p.astype(np.int32)
    f = (p - i0).astype(np.float32)
    lin = (i0[:, 2] * Y + i0[:, 1]) * X + i0[:, 0]
    out = np.zeros((len(idx), 4), dtype=np.float32)
    for dz in (0, 1):
        wz = f[:, 2] if dz else 1 - f[:, 2]
        for dy in (0, 1):
            wy = wz * (f[:, 1] if dy else 1 - f[:, 1])
            for dx in (0, 1):
                w = wy * (f[:, 0] if dx else 1 - f[:, 0])
                v = flat[lin + (dz * Y + dy) * X + dx].view(np.uint8).reshape(-1, 4)
                out += w[:, None] * v
    return out


@lru_cache(maxsize=1)
def _base_interleaved() -> np.ndarray:
    return np.ascontiguousarray(base_volume().transpose(1, 2, 3, 0))    # (Z, Y, X, 4) uint8


def _layer_fractions(dist: np.ndarray, mod: np.ndarray, layers_mm: np.ndarray, soft: float) -> np.ndarray:
    """Distance outside the brain (N,) mm → fractions of the 7 head layers (7, N), soft edges of `soft` mm."""
    th = layers_mm.astype(np.float32)[:, None] * np.exp(0.15 * mod.reshape(1, -1)).astype(np.float32)
    edges = np.concatenate([np.zeros((1, th.shape[1]), np.float32), np.cumsum(th, axis=0)])  # (8, N)
    ramp = np.clip((dist.reshape(1, -1) - edges) / np.float32(soft) + np.float32(0.5), 0, 1)
    return ramp[:-1] - ramp[1:]


def render_slab(subj: Subject, z_mm, matrix: int = 128, fov_mm: float = 240.0, thickness_mm: float = 4.0,
                sub_slices: int = 2, oversample: int = 1, orientation: str = "axial",
                fine: tuple | None = None) -> Slab:
    """Tissue fractions of slices at positions `z_mm` (mm along the slice normal) on a matrix×matrix grid over `fov_mm`.

    sub_slices: points averaged across the slice thickness (slice profile / partial volume).
    oversample: in-plane supersampling factor, box-averaged back to `matrix` (pixel partial volume).
    orientation: axial (default), sagittal or coronal (grid directions in `variety.ORIENTATIONS`).
    fine: (directions (3, n, n, n), amplitude mm) — a second, fine elastic displacement (`variety.fine_field`).
    """
    z_mm = np.atleast_1d(np.asarray(z_mm, dtype=np.float64))
    S, M = len(z_mm), int(matrix)
    m_hi = M * oversample
    d = fov_mm / m_hi
    coords = ((np.arange(m_hi) - m_hi / 2 + (oversample - 1) / 2) * d).astype(np.float32)  # LPS x / y
    offs = ((np.arange(sub_slices) + 0.5) / sub_slices - 0.5) * thickness_mm
    zz = (z_mm[:, None] + offs[None, :]).reshape(-1).astype(np.float32)      # (S*ns,)
    P = len(zz)
    basis = _ras_basis(orientation)
    fl = _fields_on_grid(subj, zz, coords, basis)                           # (6, P, m, m)
    # scanner (LPS → RAS: x_ras = −x_lps, y_ras = −y_lps) → MNI source position
    A = subj.affine.astype(np.float32)
    ac, ar, an = (A @ b for b in basis)                                     # MNI steps per column/row/normal mm
    src = np.empty((P, m_hi, m_hi, 3), dtype=np.float32)
    for k in range(3):
        src[..., k] = (np.float32(ac[k]) * coords[None, None, :] + np.float32(ar[k]) * coords[None, :, None]
                       + np.float32(an[k]) * zz[:, None, None]
                       + np.float32(subj.shift_mm[k]) + np.float32(subj.elastic_mm) * fl[k])
    if fine is not None:
        bc, br, bn = basis
        ras = (coords[None, None, :, None] * bc + coords[None, :, None, None] * br
               + zz[:, None, None, None] * bn).astype(np.float32)
        src += np.float32(fine[1]) * _fine_displacement(fine[0], ras)
    for p in subj.pathology:                                               # mass effect
        src = p.displace(src).astype(np.float32)
    idx = src.reshape(-1, 3) + (np.array(MNI_ORIGIN, dtype=np.float32) + PAD)
    samp = _trilinear_uint8(_base_interleaved(), idx)                       # (N, 4)
    N = len(idx)
    frac = np.zeros((len(TISSUES), N), dtype=np.float32)
    frac[INDEX["wm"]] = samp[:, 0] * (1 / 255)
    frac[INDEX["gm"]] = samp[:, 1] * (1 / 255)
    frac[INDEX["csf"]] = samp[:, 2] * (1 / 255)
    dist = samp[:, 3] * 0.25
    reach = float(subj.layers_mm.sum() * np.exp(0.15 * 4) + 2 * d + 1)
    sel = np.nonzero((dist > 0) & (dist < reach))[0]
    if len(sel):
        lay = _layer_fractions(dist[sel], fl[4].reshape(-1)[sel], subj.layers_mm, soft=max(d, 0.8))
        frac[INDEX["csf"], sel] += lay[0]
        frac[INDEX["bone"], sel] += lay[1] + 0.45 * lay[2] + lay[3]
        frac[INDEX["fat"], sel] += 0.55 * lay[2] + lay[5]
        frac[INDEX["muscle"], sel] += lay[4] + lay[6]
    frac = frac.reshape(len(TISSUES), P, m_hi, m_hi)
    # pathology replaces brain tissue (evaluated at the MNI source position of each point)
    apply_pathology(subj.pathology, frac, src)
    # average sub-slices and supersampled pixels
    if sub_slices > 1 or oversample > 1:
        frac = frac.reshape(len(TISSUES), S, sub_slices, M, oversample, M, oversample).mean(axis=(2, 4, 6))
        fl = fl.reshape(6, S, sub_slices, M, oversample, M, oversample).mean(axis=(2, 4, 6))
    if subj.atrophy > 0:
        _enlarge_csf(frac, subj.atrophy, pixel_mm=fov_mm / M)
    tot = frac.sum(0)
    over = tot > 1
    if over.any():
        frac[:, over] /= tot[over]
    bias = np.exp(subj.bias_strength * fl[3]).astype(np.float32)
    # background phase: low-order polynomial in normalised in-plane coordinates (+ a smooth 3-D term)
    phase = (background_phase(subj.phase_coef, M)[None] + 0.8 * fl[5]).astype(np.float32)
    return Slab(fractions=np.ascontiguousarray(frac, dtype=np.float32), bias=bias, phase=phase, z_mm=z_mm,
                pixel_mm=fov_mm / M, thickness_mm=float(thickness_mm))


def _enlarge_csf(frac: np.ndarray, atrophy: float, pixel_mm: float) -> None:
    """Age-related atrophy in place: CSF spreads into adjacent WM/GM (ventricles and sulci widen)."""
    i_csf, i_wm, i_gm = INDEX["csf"], INDEX["wm"], INDEX["gm"]
    csf = frac[i_csf]
    sigma = 2.0 / pixel_mm
    spread = ndi.gaussian_filter(csf, sigma=(0, sigma, sigma), mode="nearest")
    gain = np.clip(atrophy * 0.9 * (spread - csf), 0, None)
    tissue = frac[i_wm] + frac[i_gm]
    take = np.minimum(gain, tissue)
    w = np.where(tissue > 1e-6, take / np.maximum(tissue, 1e-6), 0)
    frac[i_wm] -= frac[i_wm] * w
    frac[i_gm] -= frac[i_gm] * w
    frac[i_csf] += take
