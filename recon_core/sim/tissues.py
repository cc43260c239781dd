"""Tissue classes of the digital brain and their relaxation parameters at 1.5 T and 3 T.

Values are approximate literature values (ms; proton density relative to water) as collected in
shared/REFERENCE.md (WM/GM/CSF/fat) plus standard values for the extra classes (cortical bone, scalp
muscle, MS-type white-matter lesion, vasogenic oedema, solid tumour, necrosis). T2* is used by the
spoiled-gradient-echo (FLASH) equation. `gd_mM` is the gadolinium concentration (mM) reached after
contrast injection (only tissues without a blood–brain barrier, or where it is broken, enhance).
Between 1.5 T and 3 T, T1 is interpolated linearly in field strength (fields outside are clamped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Tissue order used everywhere in the simulator (fraction maps are stacked in this order).
TISSUES = ("wm", "gm", "csf", "fat", "bone", "muscle", "lesion", "oedema", "tumour", "necrosis")
INDEX = {name: i for i, name in enumerate(TISSUES)}

# name: (T1 @1.5T, T1 @3T, T2 @1.5T, T2 @3T, T2* @1.5T, T2* @3T, PD, Gd mM after injection)
_TABLE = {
    "wm":       (650.0,  950.0,  75.0,   70.0,   55.0,  45.0,  0.70, 0.0),
    "gm":       (1000.0, 1550.0, 95.0,   88.0,   65.0,  52.0,  0.80, 0.0),
    "csf":      (4000.0, 4300.0, 2000.0, 1800.0, 900.0, 500.0, 1.00, 0.0),
    "fat":      (260.0,  380.0,  80.0,   70.0,   40.0,  30.0,  0.90, 0.0),
    "bone":     (250.0,  300.0,  1.0,    0.8,    0.5,   0.4,   0.05, 0.0),
    "muscle":   (870.0,  1420.0, 47.0,   32.0,   30.0,  22.0,  0.75, 0.08),
    "lesion":   (1100.0, 1450.0, 150.0,  135.0,  90.0,  70.0,  0.82, 0.0),
    "oedema":   (1150.0, 1550.0, 135.0,  120.0,  80.0,  65.0,  0.86, 0.0),
    "tumour":   (1100.0, 1500.0, 110.0,  100.0,  65.0,  55.0,  0.85, 0.45),
    "necrosis": (2200.0, 2600.0, 250.0,  220.0,  150.0, 120.0, 0.92, 0.0),
}

#: T1 relaxivity of a gadolinium chelate (gadobutrol-like), 1/(mM·s) → 1/(mM·ms) below.
R1_PER_MM_S = {1.5: 5.2, 3.0: 5.0}


@dataclass
class TissueTable:
    """Per-tissue parameters, arrays of shape (len(TISSUES),): t1, t2, t2s (ms), pd (a.u.), gd (mM)."""

    t1: np.ndarray
    t2: np.ndarray
    t2s: np.ndarray
    pd: np.ndarray
    gd: np.ndarray
    field: float

    def copy(self) -> "TissueTable":
        return TissueTable(self.t1.copy(), self.t2.copy(), self.t2s.copy(), self.pd.copy(), self.gd.copy(),
                           self.field)


def tissue_table(field: float = 3.0) -> TissueTable:
    """Nominal parameters at `field` tesla (linear in B0 between 1.5 and 3 T, clamped outside)."""
    w = float(np.clip((field - 1.5) / 1.5, 0.0, 1.0))
    rows = np.array([_TABLE[t] for t in TISSUES], dtype=np.float64)
    t1 = (1 - w) * rows[:, 0] + w * rows[:, 1]
    t2 = (1 - w) * rows[:, 2] + w * rows[:, 3]
    t2s = (1 - w) * rows[:, 4] + w * rows[:, 5]
    return TissueTable(t1, t2, t2s, rows[:, 6].copy(), rows[:, 7].copy(), float(field))


def jitter(table: TissueTable, rng: np.random.Generator, rel: float = 0.07) -> TissueTable:
    """Per-subject variation: each tissue's T1, T2, T2*, PD scaled by a log-normal factor (σ ≈ `rel`)."""
    out = table.copy()
    n = len(TISSUES)
    out.t1 *= np.exp(rng.normal(0, rel, n))
    out.t2 *= np.exp(rng.normal(0, rel, n))
    out.t2s = np.minimum(out.t2s * np.exp(rng.normal(0, rel, n)), out.t2)
    out.pd = np.clip(out.pd * np.exp(rng.normal(0, rel / 2, n)), 0.0, 1.0)
    out.gd *= np.exp(rng.normal(0, 0.2, n))
    return out


def relaxivity(field: float) -> float:
    """Gadolinium r1 in 1/(mM·ms) at `field` tesla."""
    w = float(np.clip((field - 1.5) / 1.5, 0.0, 1.0))
    return ((1 - w) * R1_PER_MM_S[1.5] + w * R1_PER_MM_S[3.0]) / 1000.0


def post_contrast_t1(table: TissueTable) -> np.ndarray:
    """T1 after gadolinium: 1/T1' = 1/T1 + r1·C (ms)."""
    return 1.0 / (1.0 / table.t1 + relaxivity(table.field) * table.gd)
