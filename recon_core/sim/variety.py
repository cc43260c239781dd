"""Scanner variety for the training export (issue 26): domain randomisation of one simulated scan.

The classic export images one axial 240 mm, 128² slab per subject with the five signal-equation
contrasts. `draw_variety` draws, from its own random stream (so the classic export stays bit-identical),
what a clinical fleet varies and what the prior should not memorise:

- orientation: axial / sagittal / coronal slices from the 3-D volume (`ORIENTATIONS`);
- in-plane: one of the 8 dihedral transforms (90° rotations, transposition = phase encoding R→L instead
  of A→P, flips), identity with p = 0.4;
- geometry: FOV 180–300 mm, rendered on a square matrix of 128–320 pixels (pixel size 0.8–2.3 mm), of which
  a random 128² window containing head is kept (the UNet is convolutional: trained on crops of larger
  grids it serves 128²–320²);
- SNR 20–50 dB, bias field strength 0.05–0.4, a second, fine elastic deformation (≈ 11 mm wavelength,
  0.5–2 mm) that changes gyral shape beyond the coarse 2.5 mm warp;
- protocol: the five classic contrasts plus a spoiled-GRE family (TR 15–700 ms, TE 2–30 ms, flip 4–70°:
  FLASH, PD-, T2*- and T1-weighted at low flip angles), labelled by its weighting (`gre_label`);
- tissue intensities: signal equations (p 0.5), signal equations × a per-tissue log-normal factor
  (σ 0.25, p 0.3), or SynthSeg-style random intensities per tissue (p 0.2; the record's contrast and
  sequence parameters are then missing: the image was made by no sequence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .contrast import Protocol, validate_protocol

#: LPS unit vectors (column direction, row direction, slice normal) of each orientation's image grid.
#: Axial: columns R→L, rows A→P; sagittal: columns A→P, rows S→I; coronal: columns R→L, rows S→I.
ORIENTATIONS = {
    "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "sagittal": ((0, 1, 0), (0, 0, -1), (1, 0, 0)),
    "coronal": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
}
#: Slice positions (LPS mm along the orientation's normal) sampled per orientation.
SLICE_RANGE_MM = {"axial": (-26.0, 66.0), "sagittal": (-58.0, 58.0), "coronal": (-60.0, 85.0)}
P_ORIENTATION = {"axial": 0.5, "sagittal": 0.25, "coronal": 0.25}
CONTRAST_P = {"T1": 0.15, "T1POST": 0.12, "T2": 0.18, "FLAIR": 0.15, "PD": 0.12, "GRE": 0.28}
INTENSITY_P = {"physics": 0.5, "jitter": 0.3, "synth": 0.2}
FOV_RANGE_MM = (180.0, 300.0)
MATRIX_RANGE = (128, 320)
PIXEL_RANGE_MM = (0.8, 2.5)
SNR_RANGE_DB = (20.0, 50.0)
BIAS_RANGE = (0.05, 0.4)
FINE_WARP_MM = (0.5, 2.0)
FINE_GRID = 24                # coarse points over ±130 mm → ≈ 11 mm wavelength


@dataclass
class Variety:
    """One scan's draws (see the module docstring)."""

    orientation: str
    dihedral: int                # 0..7: k = d % 4 quarter turns, transposed first when d ≥ 4
    fov_mm: float
    render_matrix: int
    snr_db: float
    bias_strength: float
    fine_mm: float
    family: str                  # a classic contrast or "GRE"
    intensity: str               # physics | jitter | synth
    seed: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def variety_rng(subject_seed: int) -> np.random.Generator:
    """The variety's own random stream for a subject (independent of the classic draws)."""
    return np.random.default_rng([int(subject_seed), 0x7A21E7])


def _pick(rng, table: dict) -> str:
    names = list(table)
    return str(names[int(rng.choice(len(names), p=np.asarray([table[k] for k in names]) / sum(table.values())))])


def draw_variety(subject_seed: int, crop: int = 128) -> Variety:
    """Draw one scan's variety from `subject_seed` (deterministic)."""
    rng = variety_rng(subject_seed)
    fov = float(rng.uniform(*FOV_RANGE_MM))
    lo = max(MATRIX_RANGE[0], crop, int(np.ceil(fov / PIXEL_RANGE_MM[1] / 16)) * 16)
    hi = min(MATRIX_RANGE[1], int(np.floor(fov / PIXEL_RANGE_MM[0] / 16)) * 16)
    sizes = np.arange(lo, max(hi, lo) + 1, 16)
    return Variety(orientation=_pick(rng, P_ORIENTATION),
                   dihedral=0 if rng.random() < 0.4 else int(rng.integers(1, 8)),
                   fov_mm=round(fov, 1), render_matrix=int(rng.choice(sizes)),
                   snr_db=float(rng.uniform(*SNR_RANGE_DB)), bias_strength=float(rng.uniform(*BIAS_RANGE)),
                   fine_mm=float(rng.uniform(*FINE_WARP_MM)), family=_pick(rng, CONTRAST_P),
                   intensity=_pick(rng, INTENSITY_P), seed=int(rng.integers(2 ** 31)))


def dihedral(x: np.ndarray, d: int) -> np.ndarray:
    """Apply dihedral transform `d` (0..7) to the last two axes (transpose when d ≥ 4, then d % 4 quarter turns)."""
    if d >= 4:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(np.rot90(x, k=d % 4, axes=(-2, -1)))


def transposed(d: int) -> bool:
    """Whether dihedral transform `d` exchanges the image's rows and columns (transpose xor an odd quarter turn)."""
    return (d >= 4) != (d % 2 == 1)


def draw_gre(rng: np.random.Generator, field: float):
    """A spoiled-GRE protocol (TR 15–700 ms log-uniform, TE 2–min(30, TR/2) ms, flip 4–70° log-uniform)
    and its weighting label (`gre_label`)."""
    tr = float(np.round(np.exp(rng.uniform(np.log(15.0), np.log(700.0))), 1))
    te = float(np.round(rng.uniform(2.0, min(30.0, tr / 2)), 2))
    fa = float(np.round(np.exp(rng.uniform(np.log(4.0), np.log(70.0)))))
    p = Protocol(contrast="T1", sequence="Flash", tr=tr, te=te, flip=fa, field=float(field))
    validate_protocol(p)
    return p, gre_label(p)


def gre_label(p) -> str | None:
    """Weighting of a spoiled GRE: T1 (flip ≥ 30°, TE < 8 ms), T2STAR (flip < 30°, TE ≥ 12 ms), PD (flip < 20°,
    TE < 12 ms); None (mixed weighting: no label) otherwise."""
    if p.flip >= 30 and p.te < 8:
        return "T1"
    if p.flip < 30 and p.te >= 12:
        return "T2STAR"
    if p.flip < 20 and p.te < 12:
        return "PD"
    return None


def tissue_factors(intensity: str, signals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-tissue signals after the intensity randomisation `intensity` (physics | jitter | synth)."""
    s = np.asarray(signals, dtype=np.float64)
    if intensity == "physics":
        return s
    if intensity == "jitter":
        return s * np.exp(rng.normal(0.0, 0.25, s.shape))
    if intensity == "synth":
        return rng.uniform(0.03, 1.0, s.shape) * np.abs(s).max()
    raise ValueError(f"intensity mode: expected one of {', '.join(INTENSITY_P)}, got {intensity!r}")


def fine_field(seed: int) -> np.ndarray:
    """(3, n, n, n) float32 smooth displacement directions (unit std) on a ±130 mm cube, n ≈ 2.5·FINE_GRID."""
    rng = np.random.default_rng([int(seed), 0xF1E1D])
    coarse = rng.standard_normal((3, FINE_GRID, FINE_GRID, FINE_GRID)).astype(np.float32)
    up = int(2.5 * FINE_GRID)
    fine = np.stack([ndi.zoom(c, up / FINE_GRID, order=3, mode="wrap") for c in coarse])
    fine /= fine.std(axis=(1, 2, 3), keepdims=True) + 1e-6
    return fine.astype(np.float32)


def head_crop(head: np.ndarray, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a size×size window of a (M, M) grid whose centre lies on the head mask `head`
    (clipped to the grid); the grid's centre when the head is empty."""
    M = head.shape[-1]
    if M <= size:
        return 0, 0
    ys, xs = np.nonzero(head)
    if len(ys) == 0:
        cy = cx = M // 2
    else:
        k = int(rng.integers(len(ys)))
        cy, cx = int(ys[k]), int(xs[k])
    oy = int(np.clip(cy - size // 2, 0, M - size))
    ox = int(np.clip(cx - size // 2, 0, M - size))
    return oy, ox


#: phase-encoding direction (rows of the image) per orientation, and with the image transposed
_ROW_DIRECTION = {"axial": ("AP", "RL"), "sagittal": ("SI", "AP"), "coronal": ("SI", "RL")}


def export_geometry(config: dict, index: list) -> dict:
    """Orientations, phase-encoding directions (the image rows) and pixel sizes (mm) of an export's images,
    for the prior's training domain (`recon_core.prior.domain`); None when the export does not say."""
    if config.get("variety", "none") == "none":
        if "fov_mm" not in config or "matrix" not in config:
            return None   # not a simulator export (or an old one): unknown
        return {"orientation": ["axial"], "phase_encoding": ["AP"],
                "pixel_mm": [float(config["fov_mm"]) / int(config["matrix"])] * 2}
    vs = [d["variety"] for d in index]
    pix = [v["fov_mm"] / v["render_matrix"] for v in vs]
    return {"orientation": sorted({v["orientation"] for v in vs}),
            "phase_encoding": sorted({_ROW_DIRECTION[v["orientation"]][int(transposed(v["dihedral"]))] for v in vs}),
            "pixel_mm": [round(min(pix), 3), round(max(pix), 3)]}
