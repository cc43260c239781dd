"""GRAPPA vs SENSE on a real multi-coil scan: the Skyra GRE twix file of tests/data/twix (2 channels,
160², fully sampled), retrospectively undersampled (equispaced ×2, 24 ACS lines; ×3 for the record),
against the fully sampled reconstruction (ESPIRiT maps of the full data, SENSE-combined) as reference.

    python results/grappa/grappa_on_twix.py          (seconds)
"""

import json
import tempfile

import numpy as np

from recon_core import baselines
from recon_core.coils import espirit_maps
from recon_core.io_utils import write_text_atomic
from recon_core.masks import make_mask
from recon_core.metrics import psnr, ssim
from recon_core.raw.reader import read_slices
from recon_core.raw.twix import convert

TWIX = "tests/data/twix/gre.dat"


def main():
    with tempfile.TemporaryDirectory() as d:
        convert(TWIX, f"{d}/gre.h5")
        sd = read_slices(f"{d}/gre.h5").slices[0]
    full = sd.kspace                                              # (2, 160, 160), every line acquired
    maps_full = espirit_maps(full, mask=np.ones(full.shape[-2:], bool))
    ref = np.abs(baselines.reconstruct("zerofilled", full[None], maps_full[None], np.ones(full.shape[-2:], bool))[0])
    rows = {}
    for accel in (2, 3):
        m = make_mask("equispaced1d", full.shape[-2:], accel, seed=0, acs_lines=24).mask
        k = full * m[None]
        maps = espirit_maps(k, mask=m)
        row = {}
        for method in ("zerofilled", "sense", "grappa"):
            img = np.abs(baselines.reconstruct(method, k[None], maps[None], m)[0])
            row[method] = {"psnr": float(psnr(ref, img)), "ssim": float(ssim(ref, img))}
        rows[f"equispaced1d:{accel}"] = row
        print(accel, {k2: round(v["psnr"], 2) for k2, v in row.items()})
    write_text_atomic("results/grappa/twix_results.json", json.dumps(
        {"command": "python results/grappa/grappa_on_twix.py", "file": TWIX, "coils": int(full.shape[0]),
         "reference": "fully sampled, ESPIRiT maps of the full data, coil-combined", "cells": rows}, indent=1))


if __name__ == "__main__":
    main()
