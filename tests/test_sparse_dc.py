"""Sparse data consistency (recon_core/sparse_dc.py) and the cycle-spinning wavelet prox (recon_core/wavelet.py)."""

import numpy as np
import pytest
import torch

from recon_core.cg import data_consistency
from recon_core.masks import make_mask
from recon_core.metrics import psnr
from recon_core.operators import SenseOp
from recon_core.sparse_dc import sparse_data_consistency
from recon_core.wavelet import ShiftedWavelet


@pytest.fixture(scope="module")
def problem(phantom_scan):
    img, maps, ksp = phantom_scan
    m = make_mask("uniform1d", img.shape, 4, seed=3).mask
    op = SenseOp(torch.from_numpy(maps[None]), torch.from_numpy(m))
    y = torch.from_numpy((ksp * m)[None])
    return img, op, op.AH(y)


def test_lambda_zero_is_plain_data_consistency(problem):
    img, op, AHy = problem
    x0 = torch.zeros((1,) + img.shape, dtype=torch.complex64)
    plain = data_consistency(op, x0, None, 20.0, 5, AHy=AHy)
    same = sparse_data_consistency(op, x0, 20.0, 5, AHy, 1.0, 0.0, 3, ShiftedWavelet(img.shape))
    assert torch.equal(plain, same)


def test_sparsity_fills_what_the_prior_leaves_empty(problem):
    """A 'prior' that knows nothing (x̂0 = 0, weight μ small): plain DDS consistency returns the damped zero-filled
    image; the sparsity term recovers much of the unmeasured k-space, as ℓ1-wavelet CS does."""
    img, op, AHy = problem
    x0 = torch.zeros((1,) + img.shape, dtype=torch.complex64)
    plain = data_consistency(op, x0, None, 20.0, 10, AHy=AHy)
    sparse = sparse_data_consistency(op, x0, torch.tensor([20.0]), 10, AHy, 0.01, 2e-3, 30, ShiftedWavelet(img.shape))
    p_plain, p_sparse = psnr(np.abs(img), np.abs(plain[0].numpy())), psnr(np.abs(img), np.abs(sparse[0].numpy()))
    assert p_sparse > p_plain + 2.0, (p_plain, p_sparse)


def test_shifted_wavelet_is_seeded_and_batch_consistent():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 32, 32)) + 1j * rng.standard_normal((3, 32, 32))).astype(np.complex64)
    a = ShiftedWavelet((32, 32), seed=4).batch(torch.from_numpy(x), 0.5)
    b = ShiftedWavelet((32, 32), seed=4).batch(torch.from_numpy(x[1:2]), 0.5)
    assert torch.equal(a[1:2], b)
    # threshold 0 is the identity (an orthogonal wavelet, circular shifts undone)
    same = ShiftedWavelet((32, 32), seed=1)(x[0], 0.0)
    np.testing.assert_allclose(same, x[0], atol=1e-5)
