"""Seeded Cartesian sampling masks.

Every generator returns a `MaskResult`: `mask` bool (ny, nx) (1-D masks select phase-encode rows,
i.e. whole readouts), the realised acceleration ny·nx / #sampled, and the ACS (fully sampled centre)
line indices. Defaults follow ContextMRI / fastMRI: ×4 → 8 % ACS, ×8 → 4 % ACS; otherwise
acs_fraction = 0.32 / accel.

- uniform1d:   ACS + the other lines drawn uniformly at random **without** replacement so that the
               realised acceleration equals the nominal one (up to rounding to whole lines).
- equispaced1d: ACS + every R-th line with a random offset, topped up/thinned to the exact count.
- regular1d:   the scanner's GRAPPA pattern: every R-th line counted from the centre line (so the
               centre is sampled) plus the ACS block; the realised acceleration is below R.
- gaussian1d:  ACS + lines drawn without replacement with a Gaussian density around the centre.
- poisson2d:   variable-density Poisson disc over (ky, kx) with sigpy's Poisson-disc kernel and a
               bounded slope search (`sigpy.mri.poisson`'s own search can loop forever), a square
               calibration region of side = number of ACS lines.

The ACS block never has fewer than MIN_ACS_LINES (8) lines when the matrix allows it: ESPIRiT needs
a calibration region larger than its 6-point kernel (at 320 lines the ContextMRI fractions give
13–26 lines anyway; at 128 lines ×8 would give only 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

MIN_ACS_LINES = 8
KINDS = ("uniform1d", "equispaced1d", "regular1d", "gaussian1d", "poisson2d")


@dataclass
class MaskResult:
    mask: np.ndarray            # bool (ny, nx)
    accel: float                # realised acceleration ny*nx / sampled
    acs_lines: np.ndarray       # int indices of fully sampled centre rows (ky)
    kind: str
    nominal_accel: float


def default_acs_fraction(accel: float) -> float:
    """ContextMRI defaults: ×4 → 0.08, ×8 → 0.04 (i.e. 0.32 / R), capped to 1."""
    return min(1.0, 0.32 / accel)


def parse_mask_spec(spec: str, allow_acs: bool = False) -> tuple[str, float]:
    """'uniform1d:4' → ('uniform1d', 4.0). A third field (the ACS, `parse_mask_acs`) only where the caller
    applies it (`allow_acs`); elsewhere it is refused rather than ignored."""
    try:
        kind, accel = spec.split(":")[:2]
        accel = float(accel)
        if spec.count(":") > (2 if allow_acs else 1):
            raise ValueError
    except ValueError:
        form = "KIND:ACCEL[:ACS] such as uniform1d:4 or regular1d:2:24" if allow_acs else "KIND:ACCEL such as uniform1d:4"
        raise InputError(f"mask spec {spec!r}: expected {form}") from None
    if kind not in KINDS:
        raise InputError(f"mask spec {spec!r}: unknown kind {kind!r}, expected one of {', '.join(KINDS)}")
    return kind, accel


def parse_mask_acs(spec: str) -> dict:
    """The optional ACS field of KIND:ACCEL:ACS as make_mask keywords: an integer ≥ 1 is a number of
    lines ({'acs_lines': n}), a number in (0, 1) a fraction of the lines ({'acs_fraction': f}); {} if absent."""
    parts = spec.split(":")
    if len(parts) < 3:
        return {}
    try:
        v = float(parts[2])
    except ValueError:
        raise InputError(f"mask spec {spec!r}: the ACS field must be a number of lines or a fraction") from None
    if v >= 1 and v == int(v):
        return {"acs_lines": int(v)}
    if 0 < v < 1:
        return {"acs_fraction": v}
    raise InputError(f"mask spec {spec!r}: the ACS field must be a whole number of lines ≥ 1 or a fraction in (0, 1)")


def _acs(ny: int, accel: float, acs_fraction: float | None, acs_lines: int | None) -> np.ndarray:
    if acs_lines is None:
        frac = default_acs_fraction(accel) if acs_fraction is None else acs_fraction
        if not 0 <= frac <= 1:
            raise InputError(f"acs_fraction must be in [0, 1], got {frac}")
        acs_lines = max(int(round(ny * frac)), min(MIN_ACS_LINES, ny))
    n_target = int(round(ny / accel))
    if accel > 1 and acs_lines > n_target:
        acs_lines = n_target
    start = ny // 2 - acs_lines // 2
    return np.arange(start, start + acs_lines)


def _check(shape, accel, min_acs=0):
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"mask shape: expected (ny, nx), got {shape}")
    if not np.isfinite(accel) or accel < 1:
        raise InputError(f"acceleration must be ≥ 1, got {accel}")
    if accel > shape[0] * shape[1]:
        raise InputError(f"acceleration {accel} too high for a {shape[0]}×{shape[1]} matrix")


def realised_accel(mask) -> float:
    """The acceleration a sampling mask (…, ny, nx) bool realises: all samples / measured samples."""
    return float(np.size(mask) / max(int(np.count_nonzero(mask)), 1))


def _finish_rows(rows: np.ndarray, shape, kind, accel, acs) -> MaskResult:
    ny, nx = shape
    mask = np.zeros(shape, dtype=bool)
    mask[rows] = True
    return MaskResult(mask, ny / max(int(mask[:, 0].sum()), 1), acs, kind, float(accel))


def _line_setup(shape, accel, seed, acs_fraction, acs_lines):
    """Common start of the 1-D generators → (rng, ACS rows, number of other rows to pick, candidate rows)."""
    _check(shape, accel)
    ny = shape[0]
    rng = np.random.default_rng(seed)
    acs = _acs(ny, accel, acs_fraction, acs_lines)
    n_total = max(int(round(ny / accel)), len(acs))
    return rng, acs, n_total - len(acs), np.setdiff1d(np.arange(ny), acs)


def uniform1d(shape, accel, seed=0, acs_fraction=None, acs_lines=None) -> MaskResult:
    rng, acs, n_other, others = _line_setup(shape, accel, seed, acs_fraction, acs_lines)
    picked = rng.choice(others, size=n_other, replace=False)
    return _finish_rows(np.concatenate([acs, picked]).astype(int), shape, "uniform1d", accel, acs)


def equispaced1d(shape, accel, seed=0, acs_fraction=None, acs_lines=None) -> MaskResult:
    rng, acs, n_other, others = _line_setup(shape, accel, seed, acs_fraction, acs_lines)
    if n_other > 0:
        # evenly spaced positions among the non-ACS lines, random offset
        step = len(others) / n_other
        pos = (rng.uniform(0, step) + step * np.arange(n_other)).astype(int).clip(0, len(others) - 1)
        picked = others[np.unique(pos)]
        if len(picked) < n_other:  # rounding collisions: top up from the remaining lines
            rest = np.setdiff1d(others, picked)
            picked = np.concatenate([picked, rng.choice(rest, n_other - len(picked), replace=False)])
    else:
        picked = np.array([], dtype=int)
    return _finish_rows(np.concatenate([acs, picked]).astype(int), shape, "equispaced1d", accel, acs)


def regular1d(shape, accel, seed=0, acs_fraction=None, acs_lines=None) -> MaskResult:
    """Every round(accel)-th line counted from the centre line ny // 2, plus the ACS block (seed unused)."""
    _check(shape, accel)
    ny = shape[0]
    R = max(int(round(accel)), 1)
    if acs_lines is None and acs_fraction is None:
        acs_lines = 24 if ny >= 48 else MIN_ACS_LINES
    acs = _acs(ny, 1.0, acs_fraction, acs_lines)
    rows = np.arange(ny)
    picked = rows[(rows - ny // 2) % R == 0]
    return _finish_rows(np.union1d(acs, picked).astype(int), shape, "regular1d", accel, acs)


def gaussian1d(shape, accel, seed=0, acs_fraction=None, acs_lines=None, sigma_fraction=0.3) -> MaskResult:
    rng, acs, n_other, others = _line_setup(shape, accel, seed, acs_fraction, acs_lines)
    ny = shape[0]
    w = np.exp(-0.5 * ((others - ny / 2) / (sigma_fraction * ny)) ** 2)
    picked = rng.choice(others, size=n_other, replace=False, p=w / w.sum())
    return _finish_rows(np.concatenate([acs, picked]).astype(int), shape, "gaussian1d", accel, acs)


def poisson2d(shape, accel, seed=0, acs_fraction=None, acs_lines=None) -> MaskResult:
    _check(shape, accel)
    ny, nx = shape
    acs = _acs(ny, accel, acs_fraction, acs_lines)
    calib = (len(acs), min(len(acs), nx))
    mask = np.ones(shape, dtype=bool) if accel == 1 else _poisson_disc(shape, float(accel), calib, int(seed) % 2 ** 32)
    # sigpy's calibration region may be off by one at even sizes: force our ACS block
    cy0, cx0 = ny // 2 - calib[0] // 2, nx // 2 - calib[1] // 2
    mask[cy0:cy0 + calib[0], cx0:cx0 + calib[1]] = True
    return MaskResult(mask, ny * nx / max(int(mask.sum()), 1), acs, "poisson2d", float(accel))


POISSON_TOL = 0.05        # |realised − nominal| acceleration accepted by the slope search
POISSON_MAX_ITERS = 48    # bisection steps (the float interval is exhausted long before)


def _poisson_disc(shape, accel: float, calib, seed: int, max_attempts: int = 60) -> np.ndarray:
    """Variable-density Poisson disc (bool (ny, nx)) with sigpy's sampling kernel and density model
    (radius ∝ 1 + slope·r outside the calibration box), searching the slope by a *bounded* bisection.

    `sigpy.mri.poisson` runs the same bisection without a bound: when no slope meets its tolerance the
    interval stops shrinking and it loops forever (seen at 128², ×8). Here: at most POISSON_MAX_ITERS
    steps, the mask closest to `accel` is kept, and a miss larger than POISSON_TOL·max(1, accel/4)
    is an InputError. Same seed → same mask; identical to sigpy wherever sigpy terminates."""
    from sigpy.mri.samp import _poisson  # numba kernel (Bridson's algorithm with variable radius)

    ny, nx = shape
    y, x = np.mgrid[:ny, :nx]
    x = np.maximum(abs(x - nx / 2) - calib[-1] / 2, 0)
    x /= max(x.max(), 1e-12)
    y = np.maximum(abs(y - ny / 2) - calib[-2] / 2, 0)
    y /= max(y.max(), 1e-12)
    r = np.sqrt(x ** 2 + y ** 2)
    state = np.random.get_state()  # the numba kernel seeds numpy's global generator; restore it after
    try:
        lo, hi = 0.0, float(max(nx, ny))
        best, best_err = None, np.inf
        for _ in range(POISSON_MAX_ITERS):
            slope = (lo + hi) / 2
            rx = np.clip((1 + r * slope) * nx / max(nx, ny), 1, None)
            ry = np.clip((1 + r * slope) * ny / max(nx, ny), 1, None)
            m = _poisson(nx, ny, max_attempts, rx, ry, calib, seed)
            realised = nx * ny / max(float(np.sum(m)), 1.0)
            if abs(realised - accel) < best_err:
                best, best_err = m, abs(realised - accel)
            if best_err < POISSON_TOL or not lo < slope < hi:
                break
            if realised < accel:
                lo = slope
            else:
                hi = slope
    finally:
        np.random.set_state(state)
    if best_err >= POISSON_TOL * max(1.0, accel / 4):
        raise InputError(f"poisson2d: cannot reach acceleration {accel:g} on {tuple(shape)} "
                         f"(closest {nx * ny / max(float(np.sum(best)), 1.0):.2f})")
    return np.abs(best.reshape(shape)) > 0


_GENERATORS = {"uniform1d": uniform1d, "equispaced1d": equispaced1d, "regular1d": regular1d, "gaussian1d": gaussian1d,
               "poisson2d": poisson2d}


def make_mask(kind: str, shape, accel: float, seed: int = 0, acs_fraction=None, acs_lines=None) -> MaskResult:
    """Dispatch by kind name (see module docstring)."""
    if kind not in _GENERATORS:
        raise InputError(f"unknown mask kind {kind!r}: expected one of {', '.join(KINDS)}")
    return _GENERATORS[kind](tuple(int(s) for s in shape), float(accel), seed=seed,
                             acs_fraction=acs_fraction, acs_lines=acs_lines)
