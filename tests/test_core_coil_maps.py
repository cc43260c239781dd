"""The one coil-map recipe (`recon_core.coils.coil_maps`): the scanner path (`raw.image.slice_maps`), the
evaluations and validation (batched k-space + sampling masks) and the training data (fully sampled k-space +
a calibration size) get the same maps for the same data; the crop policy closes ESPIRiT's holes."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from recon_core.coils import coil_maps, espirit_maps
from recon_core.fft import ifft2c_np
from recon_core.raw.acs import acs_mask
from recon_core.raw.image import calibration_quality, slice_maps
from recon_core.raw.reader import read_slices
from recon_core.sim import simulate_scan, write_scan
from recon_core.sim.export import espirit as export_maps

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    scan = simulate_scan("T2", n_slices=2, matrix=64, coils=4, mask="uniform1d", accel=3, acs_lines=12, seed=1)
    return read_slices(write_scan(str(tmp_path_factory.mktemp("raw") / "s.h5"), scan)).slices


def _holes(maps, obj):
    return int((obj & ((np.abs(maps) ** 2).sum(0) == 0)).sum())


def test_every_path_gets_the_same_maps(slices):
    infos = [{} for _ in slices]
    scanner = [slice_maps(sd, info=i) for sd, i in zip(slices, infos)]
    k = np.stack([sd.calib for sd in slices])
    batch_info = {}
    evaluation = coil_maps(torch.from_numpy(k), mask=np.stack([sd.mask for sd in slices]), info=batch_info)
    rows = coil_maps(k, acs_rows=slices[0].acs_rows)
    for s in range(len(slices)):
        np.testing.assert_array_equal(evaluation[s].numpy(), scanner[s])
        np.testing.assert_array_equal(rows[s], scanner[s])
        assert batch_info["slices"][s] == infos[s]                  # the crop is chosen per slice
    assert scanner[0].dtype == np.complex64 and scanner[0].shape == slices[0].calib.shape
    full = torch.from_numpy(np.stack([sd.kspace for sd in slices]))  # the export's "full" grid, datasets
    np.testing.assert_array_equal(export_maps(full, 12, "full").numpy(), coil_maps(full, calib=12).numpy())


def test_ten_line_calibration_leaves_no_holes_in_the_object(tmp_path):
    """ISMRMRD's Shepp-Logan fills the FOV: ESPIRiT at the usual crop 0.95 from 10 ACS lines zeroes object
    pixels; the recipe lowers the crop until none is lost."""
    f = str(tmp_path / "sl.h5")
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "64", "-c", "8", "-C", "-o", f], check=True,
                   capture_output=True)
    k = read_slices(f).slices[0].kspace
    sos = np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(0))
    obj = sos > 0.1 * sos.max()
    rows = (k.shape[-2] // 2 - 5, k.shape[-2] // 2 + 5)
    assert _holes(espirit_maps(k, mask=acs_mask(k.shape[-2:], rows)), obj) > 0
    info = {}
    maps = coil_maps(k, acs_rows=rows, info=info)
    assert _holes(maps, obj) == 0 and info["maps"] == "espirit" and info["crop"] < 0.95
    assert info["coverage"] >= 0.99 and info["acs_lines"] == 10


def test_too_few_lines_give_low_resolution_maps_for_every_slice(slices):
    k = np.stack([sd.calib for sd in slices])
    c = k.shape[-2] // 2
    info = {}
    maps = coil_maps(k, acs_rows=(c - 3, c + 3), info=info)
    assert maps.shape == k.shape and maps.dtype == np.complex64
    for q in info["slices"]:
        assert q["maps"] == "lowres" and "6 ACS lines are too few for ESPIRiT" in q["fallback"]
        assert np.isnan(q["crop"]) and q["coverage"] > 0.99


def test_calibration_quality_of_a_slice_is_the_recipes(slices):
    info = {}
    maps = slice_maps(slices[0], info=info)
    q = calibration_quality(slices[0], maps)
    assert q == {key: info[key] for key in q}
