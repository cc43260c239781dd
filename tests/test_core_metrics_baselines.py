import numpy as np
import pytest
import torch

from recon_core.baselines import METHODS, reconstruct
from recon_core.coils import espirit_maps
from recon_core.errors import InputError
from recon_core.masks import make_mask
from recon_core.metrics import all_metrics, nmse, psnr, ssim
from recon_core.mvue import mvue_from_kspace


def test_psnr_nmse_hand_computed():
    ref = np.zeros((4, 4))
    ref[0, 0] = 2.0
    rec = ref.copy()
    rec[1, 1] = 1.0  # MSE = 1/16, range = max(ref) = 2
    assert psnr(ref, rec) == pytest.approx(10 * np.log10(4 / (1 / 16)))
    assert nmse(ref, rec) == pytest.approx(1 / 4)
    # contextmri: min-max to [0,1] first → ref [0..1], rec [0..0.5 at (1,1)] → MSE = 0.25/16
    assert psnr(ref, rec, convention="contextmri") == pytest.approx(10 * np.log10(1 / (0.25 / 16)))


def test_ssim_properties():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    # constant images: means equal → SSIM 1 by the stabilised formula; different constants < 1
    c = np.full((16, 16), 0.5)
    mu1, mu2, L = 0.5, 0.25, 0.5
    c1 = (0.01 * L) ** 2
    assert ssim(c, np.full((16, 16), 0.25)) == pytest.approx((2 * mu1 * mu2 + c1) / (mu1 ** 2 + mu2 ** 2 + c1))
    noisy = a + 0.3 * rng.standard_normal(a.shape)
    assert ssim(a, noisy) < 0.9
    # batch = per-slice values; complex input uses the magnitude
    v = ssim(np.stack([a, a]), np.stack([a, noisy]) * np.exp(1j * 0.3))
    assert v.shape == (2,) and v[0] == pytest.approx(1.0)


def test_ssim_matches_skimage_if_available():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.random((40, 40))
    b = a + 0.1 * rng.standard_normal(a.shape)
    # our metrics compare magnitudes (fastMRI convention): skimage on |b| is the same number
    assert ssim(a, b) == pytest.approx(skm.structural_similarity(a, np.abs(b), data_range=a.max()), abs=1e-6)


def test_metric_errors():
    with pytest.raises(InputError, match="shapes"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(InputError, match="convention"):
        psnr(np.ones((4, 4)), np.ones((4, 4)), convention="x")
    with pytest.raises(InputError, match="non-finite"):
        psnr(np.ones((4, 4)), np.full((4, 4), np.nan))


def test_baselines_shapes_units_and_ranking(phantom_scan):
    img, _, ksp = phantom_scan
    m = make_mask("uniform1d", img.shape, 4, seed=2).mask
    y = (ksp * m)[None] * 1e4  # arbitrary scanner units
    maps = espirit_maps(y, mask=m)
    ref = mvue_from_kspace(ksp[None] * 1e4, maps)
    out = {meth: reconstruct(meth, y, maps, m) for meth in METHODS}
    for meth, x in out.items():
        assert x.shape == (1,) + img.shape and x.dtype == np.complex64
    scores = {meth: psnr(ref[0], x[0]) for meth, x in out.items()}
    assert scores["l1wavelet"] > scores["zerofilled"] + 3, scores
    assert scores["sense"] > scores["zerofilled"] + 3, scores
    # scanner units preserved: the l1 image is on the reference's scale
    assert 0.8 < np.abs(out["l1wavelet"]).max() / np.abs(ref).max() < 1.2
    # torch in → torch out
    t = reconstruct("sense", torch.from_numpy(y), torch.from_numpy(maps), m)
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(out["sense"]), atol=1e-2 * float(t.abs().max()))



def test_cycle_spinning_l1wavelet_beats_fixed_grid(phantom_scan):
    """Random wavelet shifts (BART pics W's default) remove the fixed grid's blocky errors: at random ×4 the
    shifted L1-wavelet beats sigpy's fixed-grid app at each one's best λ, in the input's units, reproducibly."""
    img, _, ksp = phantom_scan
    m = make_mask("uniform1d", img.shape, 4, seed=5).mask
    y = (ksp * m)[None] * 1e3
    maps = espirit_maps(y, mask=m)
    ref = mvue_from_kspace(ksp[None] * 1e3, maps)
    best = {meth: max(psnr(ref[0], reconstruct(meth, y, maps, m, lamda=lam)[0]) for lam in (3e-4, 1e-3, 3e-3))
            for meth in ("l1wavelet", "l1wavelet-shift")}
    assert best["l1wavelet-shift"] > best["l1wavelet"] + 0.3, best
    a, b = (reconstruct("l1wavelet-shift", y, maps, m) for _ in range(2))
    assert np.array_equal(a, b)
    assert 0.8 < np.abs(a).max() / np.abs(ref).max() < 1.2

def test_baseline_bad_input(phantom_scan):
    _, maps, ksp = phantom_scan
    m = np.ones(ksp.shape[-2:], bool)
    with pytest.raises(InputError, match="method"):
        reconstruct("magic", ksp[None], maps[None], m)
    with pytest.raises(InputError, match="maps"):
        reconstruct("sense", ksp[None], maps[None, :4], m)
    with pytest.raises(InputError, match="mask"):
        reconstruct("sense", ksp[None], maps[None], m[:10])
    assert set(all_metrics(np.abs(ksp[0]), np.abs(ksp[0]))) == {"psnr", "ssim", "nmse"}
