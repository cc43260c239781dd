"""Scan protocols and the signal equations that turn tissue fractions into an MR image.

Contrasts and sequences (names as ContextMRI / fastMRI headers use them):
- T2, PD: TurboSpinEcho, S = PD (1 − e^{−TR/T1}) e^{−TE/T2} (TE = effective echo time).
- FLAIR: TurboSpinEcho with an inversion pulse,
  S = PD (1 − 2e^{−TI/T1} + e^{−TR/T1}) e^{−TE/T2} (signed: the complex data keep the sign;
  a magnitude display shows |S|). TI is drawn around the CSF null for the drawn TR.
- T1: Flash (spoiled GRE), S = PD sin α (1 − E1)/(1 − cos α E1) e^{−TE/T2*}, E1 = e^{−TR/T1};
  or TurboSpinEcho ("T1 TSE", short TR/TE) with the spin-echo equation.
- T1POST: as T1, with 1/T1' = 1/T1 + r1·C for tissues that take up gadolinium.
Parameter ranges (ms, degrees) lie inside the ContextMRI brain ranges (TR 247–15810, TE 2–126,
TI 100–2500, FA 69–180); TI is only defined (written) for inversion-recovery sequences.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recon_core.errors import InputError

from .tissues import INDEX, TissueTable, post_contrast_t1

CONTRASTS = ("T1", "T1POST", "T2", "FLAIR", "PD")
SEQUENCES = ("TurboSpinEcho", "Flash")
PROTOCOL_NAMES = {"T1": "AXT1", "T1POST": "AXT1POST", "T2": "AXT2", "FLAIR": "AXFLAIR", "PD": "AXPD"}

# contrast/sequence → ranges (lo, hi) for TR, TE, flip, echo train length; TI handled separately
_RANGES = {
    ("T1", "Flash"):          dict(tr=(247, 400), te=(2.0, 4.8), fa=(69, 90), etl=(1, 1)),
    ("T1", "TurboSpinEcho"):  dict(tr=(400, 800), te=(8.0, 15.0), fa=(130, 180), etl=(2, 4)),
    ("T2", "TurboSpinEcho"):  dict(tr=(3000, 6500), te=(80.0, 126.0), fa=(120, 180), etl=(8, 24)),
    ("PD", "TurboSpinEcho"):  dict(tr=(2000, 4000), te=(10.0, 35.0), fa=(120, 180), etl=(4, 12)),
    ("FLAIR", "TurboSpinEcho"): dict(tr=(8000, 11000), te=(80.0, 126.0), fa=(120, 180), etl=(12, 24)),
}


@dataclass
class Protocol:
    """One scan's sequence parameters. Times in ms, flip angle in degrees, field in tesla."""

    contrast: str
    sequence: str
    tr: float
    te: float
    flip: float
    field: float
    ti: float | None = None
    echo_spacing: float | None = None
    etl: int = 1

    @property
    def protocol_name(self) -> str:
        return PROTOCOL_NAMES[self.contrast]

    @property
    def inversion(self) -> bool:
        return self.ti is not None

    def to_dict(self) -> dict:
        return asdict(self)


def _round(x: float, step: float) -> float:
    return float(np.round(x / step) * step)


def _flair_null_ti(tr: float, t1_csf: float) -> float:
    """TI that nulls a tissue of longitudinal time t1_csf: 1 − 2e^{−TI/T1} + e^{−TR/T1} = 0."""
    return float(-t1_csf * np.log((1.0 + np.exp(-tr / t1_csf)) / 2.0))


def draw_protocol(contrast: str, rng: np.random.Generator, field: float = 3.0, sequence: str | None = None,
                  tr=None, te=None, ti=None, flip=None, t1_csf: float | None = None) -> Protocol:
    """Random realistic protocol for `contrast` (given values win), validated (see `validate_protocol`)."""
    contrast = str(contrast).upper()
    if contrast not in CONTRASTS:
        raise InputError(f"contrast: expected one of {', '.join(CONTRASTS)}, got {contrast!r}")
    if sequence is None:
        sequence = ("Flash" if rng.random() < 0.5 else "TurboSpinEcho") if contrast in ("T1", "T1POST") \
            else "TurboSpinEcho"
    if sequence not in SEQUENCES:
        raise InputError(f"sequence: expected one of {', '.join(SEQUENCES)}, got {sequence!r}")
    base = "T1" if contrast == "T1POST" else contrast
    if (base, sequence) not in _RANGES:
        raise InputError(f"sequence {sequence} is not offered for contrast {contrast} "
                         f"(T2/PD/FLAIR are TurboSpinEcho; T1 is Flash or TurboSpinEcho)")
    r = _RANGES[(base, sequence)]
    tr_lo, tr_hi = r["tr"]
    t1c = t1_csf if t1_csf is not None else (4000.0 if field < 2.25 else 4300.0)
    if contrast == "FLAIR" and ti is None:
        # keep the CSF null reachable with TI ≤ 2460 ms (ContextMRI's TI ≤ 2500 with margin for the jitter);
        # for T1_csf ≤ 2460/ln 2 the null TI (< T1 ln 2) is reachable at every TR: no cap needed
        arg = 2 * np.exp(-2460.0 / t1c) - 1
        if arg > 0:
            tr_hi = max(tr_lo + 500.0, min(tr_hi, -t1c * np.log(arg)))
    tr_v = float(tr) if tr is not None else _round(rng.uniform(tr_lo, tr_hi), 1.0)
    te_v = float(te) if te is not None else _round(rng.uniform(*r["te"]), 0.01 if sequence == "Flash" else 1.0)
    fa_v = float(flip) if flip is not None else _round(rng.uniform(*r["fa"]), 1.0)
    etl = int(rng.integers(r["etl"][0], r["etl"][1] + 1))
    ti_v = None
    if contrast == "FLAIR":
        if ti is not None:
            ti_v = float(ti)
        else:
            ti_v = _round(float(np.clip(_flair_null_ti(tr_v, t1c) * rng.uniform(0.98, 1.015), 1800, 2500)), 1.0)
    elif ti is not None:
        raise InputError(f"--ti is only meaningful for FLAIR (inversion recovery); contrast {contrast} has no "
                         f"inversion pulse, got TI={ti}")
    esp = None
    if sequence == "TurboSpinEcho":
        # effective TE sits at the k-space centre echo; echo spacing 6–12 ms, at most the effective TE
        esp = _round(min(rng.uniform(6.0, 12.0), te_v), 0.01)
    p = Protocol(contrast=contrast, sequence=sequence, tr=tr_v, te=te_v, flip=fa_v, field=float(field), ti=ti_v,
                 echo_spacing=esp, etl=etl if sequence == "TurboSpinEcho" else 1)
    validate_protocol(p)
    return p


def validate_protocol(p: Protocol) -> None:
    """Physically impossible parameters → InputError naming the problem."""
    for name in ("tr", "te", "flip", "field"):
        v = getattr(p, name)
        if not np.isfinite(v) or v <= 0:
            raise InputError(f"{name.upper() if name != 'flip' else 'flip angle'} must be a positive number, got {v}")
    if p.te >= p.tr:
        raise InputError(f"TE must be shorter than TR: got TE={p.te:g} ms ≥ TR={p.tr:g} ms")
    if p.ti is not None:
        if not np.isfinite(p.ti) or p.ti <= 0:
            raise InputError(f"TI must be a positive number, got {p.ti}")
        if p.ti >= p.tr:
            raise InputError(f"TI must be shorter than TR: got TI={p.ti:g} ms ≥ TR={p.tr:g} ms")
    if p.flip > 180:
        raise InputError(f"flip angle must be in (0, 180] degrees, got {p.flip:g}")
    if p.field not in (1.5, 3.0):
        raise InputError(f"field strength: expected 1.5 or 3 (T), got {p.field:g}")


def tissue_signals(table: TissueTable, p: Protocol) -> np.ndarray:
    """Signal of each pure tissue (len(TISSUES),) float64 under protocol `p` (signed for FLAIR)."""
    t1 = post_contrast_t1(table) if p.contrast == "T1POST" else table.t1
    pd, t2 = table.pd, table.t2
    if p.sequence == "Flash":
        e1 = np.exp(-p.tr / t1)
        a = np.deg2rad(p.flip)
        s = pd * np.sin(a) * (1 - e1) / (1 - np.cos(a) * e1) * np.exp(-p.te / table.t2s)
    elif p.ti is not None:
        s = pd * (1 - 2 * np.exp(-p.ti / t1) + np.exp(-p.tr / t1)) * np.exp(-p.te / t2)
    else:
        s = pd * (1 - np.exp(-p.tr / t1)) * np.exp(-p.te / t2)
    return s


def render(fractions: np.ndarray, table: TissueTable, p: Protocol) -> np.ndarray:
    """Tissue fractions (T, ...) → real signal image (...) float32 = Σ_t fraction_t · S_t."""
    s = tissue_signals(table, p).astype(np.float32)
    return np.tensordot(s, fractions.astype(np.float32, copy=False), axes=(0, 0))


def expected_order(p: Protocol, table: TissueTable) -> dict:
    """Pure-tissue signal magnitudes of WM, GM and CSF (for checks and tests)."""
    s = np.abs(tissue_signals(table, p))
    return {k: float(s[INDEX[k]]) for k in ("wm", "gm", "csf")}
