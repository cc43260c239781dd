"""The one ACS rule: where the calibration (autocalibration signal) block of a slice is.

The ACS is the largest contiguous run of acquired rows that contains the k-space centre row, taken from
the calibration-flagged lines when there are any (else from the imaging lines); calibration lines that
do not touch the centre but form one contiguous block are accepted too. Fewer than `MIN_CALIB_LINES`
(4) is "no ACS". The coil-map recipe (`recon_core.coils.coil_maps`, via `recon_core.raw.image.slice_maps`)
is then given exactly these rows: ESPIRiT when there are at least `MIN_ACS_LINES` (8, the masks' own
floor, `recon_core.masks`), the low-resolution coil maps for a smaller block.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..masks import MIN_ACS_LINES  # noqa: F401  (re-exported by recon_core.raw)

#: the smallest calibration block accepted at all (below MIN_ACS_LINES: low-resolution maps, not ESPIRiT)
MIN_CALIB_LINES = 4


def central_block(rows: np.ndarray, center: int) -> tuple[int, int]:
    """Largest contiguous run of True in `rows (ny,)` containing `center` → (start, stop); (c, c) if none."""
    ny = rows.shape[0]
    if not rows[center]:
        return center, center
    lo = center
    while lo > 0 and rows[lo - 1]:
        lo -= 1
    hi = center + 1
    while hi < ny and rows[hi]:
        hi += 1
    return lo, hi


def locate_acs(rows: np.ndarray, centre: int, ref_rows: np.ndarray | None = None, min_acs: int = MIN_CALIB_LINES,
               where: str = "slice") -> tuple[int, int, str]:
    """(lo, hi, source) of the ACS block: rows (ny,) bool acquired imaging rows; ref_rows (ny,) bool
    calibration-flagged rows or None. source "calibration-lines" | "kspace-centre". InputError if none."""
    if ref_rows is not None and ref_rows.any():
        lo, hi = central_block(ref_rows, centre)
        if hi - lo < min_acs:  # calibration lines not contiguous around the centre: take all of them
            idx = np.flatnonzero(ref_rows)
            lo, hi = int(idx.min()), int(idx.max()) + 1
            if not ref_rows[lo:hi].all() or hi - lo < min_acs:
                raise InputError(f"no ACS in {where}: the {int(ref_rows.sum())} calibration-flagged lines do not form a "
                                 f"contiguous block of at least {min_acs} lines")
        return lo, hi, "calibration-lines"
    lo, hi = central_block(rows, centre)
    if hi - lo < min_acs:
        raise InputError(f"no ACS in {where}: no calibration-flagged lines and only {hi - lo} fully "
                         f"sampled central k-space lines (need at least {min_acs})")
    return lo, hi, "kspace-centre"


def acs_mask(shape: tuple, acs_rows: tuple) -> np.ndarray:
    """(ny, nx) bool with the ACS rows `acs_rows = (lo, hi)` set (all readout columns)."""
    m = np.zeros(shape, bool)
    lo, hi = acs_rows
    m[lo:hi] = True
    return m
