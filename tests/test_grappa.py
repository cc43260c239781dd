"""GRAPPA (issue 15): the scanner's own reconstruction as a method, measured against SENSE."""

from __future__ import annotations

import numpy as np
import pytest

from recon_core import baselines
from recon_core.errors import InputError
from recon_core.baselines.grappa import grappa_kspace


def _slice(accel, seed=3, matrix=96, acs=24):
    from recon_core.raw import Assembler, EncodingGeometry
    from recon_core.raw.image import slice_maps
    from recon_core.raw.noise import unwhitened_intensity
    from recon_core.sim.scan import simulate_scan

    scan = simulate_scan("T2", matrix=matrix, coils=8, mask="equispaced1d", accel=accel, acs_lines=acs, seed=seed)
    asm = Assembler(EncodingGeometry.from_header(scan.header))
    sd = ([s for a in scan.acquisitions for s in asm.add(a)] + asm.flush())[0]
    maps = slice_maps(sd)
    f = unwhitened_intensity(maps, sd.prewhitener)
    return sd, maps, np.abs(scan.reference[0]), 1.0 if f is None else f


def test_fully_sampled_is_unchanged_and_acquired_samples_are_kept():
    sd, maps, _, _ = _slice(2)
    full = np.ones(sd.mask.shape, bool)
    k = sd.calib * 0 + sd.kspace
    np.testing.assert_array_equal(grappa_kspace(k * sd.mask[None], sd.mask)[:, sd.mask], (k * sd.mask[None])[:, sd.mask])
    np.testing.assert_allclose(grappa_kspace(k, full), k.astype(np.complex64), rtol=0, atol=0)


def test_grappa_recovers_the_missing_lines():
    """Nearly noise-free data: the synthesised lines are close to what a fully sampled acquisition measured
    there (zero-filling: relative error 1; at 30 dB SNR those high-frequency lines are mostly noise)."""
    from recon_core.sim.scan import simulate_scan

    scan = simulate_scan("T2", matrix=64, coils=8, mask="equispaced1d", accel=2, acs_lines=24, seed=5, snr=90)
    full = scan.kspace[0]                                  # (C, ny, nx), every line
    mask = np.repeat(scan.mask[:, :1], full.shape[-1], axis=1)
    filled = grappa_kspace(full * mask[None], mask, lamda=1e-4)
    miss = ~mask
    err = np.linalg.norm(filled[:, miss] - full[:, miss]) / np.linalg.norm(full[:, miss])
    assert err < 0.3, err


@pytest.mark.parametrize("accel", [2, 3])
def test_grappa_is_not_worse_than_sense(accel):
    """Equispaced 1-D, 24 ACS lines, 8 coils (other seeds than the ones the defaults were chosen on)."""
    from recon_core.metrics import psnr

    got = {"grappa": [], "sense": []}
    for seed in (21, 22):
        sd, maps, ref, f = _slice(accel, seed=seed)
        for m in got:
            img = baselines.reconstruct(m, sd.kspace[None], maps[None], sd.mask)[0]
            got[m].append(psnr(ref, np.abs(img) * f))
    assert np.mean(got["grappa"]) >= np.mean(got["sense"]) - 0.2, got


def test_grappa_through_replay_and_bad_input(tmp_path):
    from gadget.params import ReconParams
    from gadget.replay import replay
    from recon_core.sim import simulate_scan, write_scan

    f = write_scan(str(tmp_path / "s.h5"), simulate_scan("T1", matrix=32, coils=4, accel=2, seed=0))
    res = replay(f, None, ReconParams(method="grappa", device="cpu"), progress=False)
    assert res.images[0].meta["method"] == "grappa" and np.isfinite(res.results[0].image).all()
    with pytest.raises(InputError, match="calibration block"):
        grappa_kspace(np.ones((2, 16, 16), np.complex64), np.zeros((16, 16), bool))
    with pytest.raises(InputError, match="lambda"):
        grappa_kspace(np.ones((2, 16, 16), np.complex64), np.ones((16, 16), bool), lamda=-1)
