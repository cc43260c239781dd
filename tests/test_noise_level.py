"""k-space noise estimate from the calibration block (recon_core.noise_level)."""

import numpy as np
import pytest

from recon_core.noise_level import kspace_sigma

pytestmark = pytest.mark.usefixtures("one_thread")


def _scan(seed, M, snr):
    from recon_core.fft import fft2c_np
    from recon_core.sim import acquisition as A
    from recon_core.sim.contrast import draw_protocol
    from recon_core.sim.phantom import make_subject, render_slab
    from recon_core.sim.scan import image_from_slab

    rng = np.random.default_rng(seed)
    subj = make_subject(seed)
    p = draw_protocol("T2", rng, field=subj.field)
    slab = render_slab(subj, [10.0], matrix=M, fov_mm=240)
    x = image_from_slab(slab, subj, p, rng)
    S = A.coil_maps(8, M, rng)
    sig = A.noise_sigma(x, slab.brain > 0.5, slab.fractions.sum(0) > 0.5, snr)
    n = A.correlated_noise((8, M, M), A.noise_covariance(8, rng), sig, rng)
    return fft2c_np(S[None] * x[:, None])[0] + n, float(np.sqrt(np.mean(np.abs(n) ** 2)))


@pytest.mark.parametrize("snr", [20, 45])
def test_sigma_matches_the_added_noise_at_any_snr(snr):
    k, true = _scan(3, 128, snr)
    mask = np.zeros((128, 128), bool)
    mask[::3] = True
    mask[52:76] = True
    est = float(kspace_sigma(k, mask)[0])
    assert 0.8 < est / true < 1.1
    # scale-equivariant: the estimate is in the units of the data
    assert float(kspace_sigma(k * 1e3, mask)[0]) == pytest.approx(est * 1e3, rel=1e-6)


def test_too_small_calibration_gives_nan():
    k, _ = _scan(4, 64, 30)
    mask = np.zeros((64, 64), bool)
    mask[::4] = True
    mask[30:34] = True
    assert np.isnan(float(kspace_sigma(k, mask)[0]))
