"""What the real-data score can resolve (session 18): the measurement floor of each reference.

    python results/real/reference_floor.py FILE [FILE ...]

Per fully sampled file: the noise power P of a pixel of RSS² (`rss_noise_power`); SENSE from *all* lines (R = 1:
no undersampling error, the product's maps from 24 ACS lines) scored against the plain RSS and the unbiased
reference (the floor every method shares); and, per mask, the PSNR an ideal reconstruction would score against the
unbiased reference — the truth plus the measured samples' own noise, so its only error is the reference's noise on
the unmeasured lines (a Monte-Carlo draw with the estimated σ).
"""

import sys

import numpy as np

from recon_core import baselines
from recon_core.fft import ifft2c_np
from recon_core.metrics import masked_metrics
from recon_core.raw.image import scanner_units, slice_maps, to_recon_space
from recon_core.raw.retrospective import load_real, physical_kspace, undersample

MASKS = ("regular1d:2:24", "regular1d:3:24", "uniform1d:4:0.08", "uniform1d:6:0.08")


def main(paths):
    rng = np.random.default_rng(0)
    for path in paths:
        for plain, unb in zip(load_real(path, "rss"), load_real(path)):
            sd = unb.sd
            maps = slice_maps(undersample(sd, MASKS[0])[0])
            img = scanner_units(sd, maps, np.asarray(baselines.reconstruct("sense", sd.kspace[None], maps[None],
                                                                           sd.mask))[0])
            p_plain = masked_metrics(plain.reference, img, plain.region)["psnr"]
            p_unb = masked_metrics(unb.reference, img, unb.region)["psnr"]
            print(f"{unb.name}: P {unb.noise_power:.4g}; SENSE from all lines {p_plain:.2f} dB against the plain RSS, "
                  f"{p_unb:.2f} against the unbiased reference")
            k = physical_kspace(sd)
            sigma = np.sqrt(unb.noise_power / k.shape[0])
            noise = (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)) * sigma / np.sqrt(2)
            for spec in MASKS:
                unmeasured = ~np.asarray(undersample(sd, spec)[0].mask, bool)
                rss2 = (np.abs(ifft2c_np(k - noise * unmeasured[None])) ** 2).sum(0) - unb.noise_power
                ideal = to_recon_space(np.sqrt(np.maximum(rss2, 0)).astype(np.float32), sd)
                print(f"  {spec:18s} {100 * unmeasured.mean():.0f} % unmeasured: an ideal reconstruction scores "
                      f"≤ {masked_metrics(unb.reference, ideal, unb.region)['psnr']:.2f} dB")


if __name__ == "__main__":
    main(sys.argv[1:])
