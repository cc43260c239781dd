import numpy as np
import pytest
import torch

from recon_core.cg import conjugate_gradient, data_consistency, sense_solve
from recon_core.errors import InputError
from recon_core.fft import fft2c, fft2c_np, ifft2c, ifft2c_np
from recon_core.operators import SenseOp


def _rand(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def test_fft_round_trip_and_norm():
    x = _rand((3, 4, 32, 24), 0)
    k = fft2c(x)
    assert torch.allclose(ifft2c(k), x, atol=1e-5)
    assert torch.allclose(k.norm(), x.norm(), rtol=1e-5)  # orthonormal
    xn = x.numpy()
    assert np.allclose(fft2c_np(xn), k.numpy(), atol=1e-4)
    assert np.allclose(ifft2c_np(fft2c_np(xn)), xn, atol=1e-5)


def test_fft_centred_dc():
    x = torch.ones(1, 16, 16, dtype=torch.complex64)
    k = fft2c(x)
    assert abs(k[0, 8, 8].real - 16.0) < 1e-4  # DC at the centre (ny//2, nx//2), ortho: sqrt(N)
    assert k.abs().sum() - k[0, 8, 8].abs() < 1e-3


def test_adjoint_identity():
    B, C, ny, nx = 3, 5, 24, 20
    maps = _rand((B, C, ny, nx), 1)
    mask = torch.rand(B, ny, nx, generator=torch.Generator().manual_seed(2)) > 0.5
    op = SenseOp(maps, mask)
    x, y = _rand((B, ny, nx), 3), _rand((B, C, ny, nx), 4)
    lhs = (op.A(x).conj() * y).sum()
    rhs = (x.conj() * op.AH(y)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    assert torch.allclose(op.AHA(x), op.AH(op.A(x)), atol=1e-4)


@pytest.mark.parametrize("pattern", ["rows", "columns", "points", "rows-batch"])
def test_normal_operator_one_axis_masks(pattern):
    """AᴴA takes 1-D FFTs when the mask varies along one axis only: the same operator as Aᴴ(A(x)) (2-D FFTs),
    for phase lines along y, along x, a per-slice line mask, and a 2-D pattern (which keeps the 2-D path)."""
    B, C, ny, nx = 2, 4, 24, 20
    g = torch.Generator().manual_seed(5)
    maps = _rand((B, C, ny, nx), 6)
    if pattern == "rows":
        mask, axis = (torch.rand(ny, 1, generator=g) > 0.5).expand(ny, nx), -2
    elif pattern == "columns":
        mask, axis = (torch.rand(1, nx, generator=g) > 0.5).expand(ny, nx), -1
    elif pattern == "rows-batch":
        mask, axis = (torch.rand(B, ny, 1, generator=g) > 0.5).expand(B, ny, nx), -2
    else:
        mask, axis = torch.rand(ny, nx, generator=g) > 0.5, None
    op = SenseOp(maps, mask)
    assert op.axis == axis
    x = _rand((B, ny, nx), 7)
    assert torch.allclose(op.AHA(x), op.AH(op.A(x)), atol=1e-4)


def test_cg_batch_slices_independent():
    """A zero slice and a non-zero slice in one batch each get their single-slice answer."""
    B, C, n = 2, 4, 16
    maps = _rand((B, C, n, n), 5)
    mask = (torch.rand(n, n, generator=torch.Generator().manual_seed(6)) > 0.4)
    y = _rand((B, C, n, n), 7) * mask
    y[0] = 0
    op = SenseOp(maps, mask)
    both = sense_solve(op, y, n_iter=15)
    assert torch.all(both[0] == 0)
    single = sense_solve(SenseOp(maps[1:], mask), y[1:], n_iter=15)
    assert torch.allclose(both[1], single[0], atol=1e-4, rtol=1e-4)
    # also with the DDS data-consistency system and a very differently scaled slice
    x0 = _rand((B, n, n), 8)
    y2 = _rand((B, C, n, n), 9) * mask
    y2[1] *= 1e3
    dc = data_consistency(op, x0, y2, gamma=5.0, n_iter=5)
    for b in range(B):
        ob = SenseOp(maps[b:b + 1], mask)
        assert torch.allclose(dc[b], data_consistency(ob, x0[b:b + 1], y2[b:b + 1], 5.0, 5)[0], rtol=1e-4, atol=1e-3)


def test_cg_solves_complex_hermitian_system():
    """CG with true complex inner products converges on a complex Hermitian PD system
    (with the unconjugated upstream inner product it would not)."""
    g = torch.Generator().manual_seed(10)
    n = 12
    M = torch.complex(torch.randn(n, n, generator=g), torch.randn(n, n, generator=g))
    H = M @ M.conj().T + n * torch.eye(n, dtype=torch.complex64)
    xt = _rand((2, n), 11)
    b = (H @ xt.T).T
    x = conjugate_gradient(lambda v: (H @ v.T).T, b, n_iter=3 * n)
    assert torch.allclose(x, xt, atol=1e-3)


def test_data_consistency_fits_measurements(phantom_scan):
    img, maps, ksp = phantom_scan
    mask = np.zeros(ksp.shape[-2:], bool)
    mask[::2] = True
    op = SenseOp(maps[None], mask)
    y = torch.from_numpy(ksp[None] * mask)
    x0 = torch.zeros(1, *img.shape, dtype=torch.complex64)
    x = data_consistency(op, x0, y, gamma=1e3, n_iter=30)
    assert (op.A(x) - y).norm() / y.norm() < 0.05


@pytest.mark.parametrize("bad", ["maps_shape", "mask_shape", "nan", "dtype"])
def test_bad_input_raises_valueerror(bad):
    maps = _rand((1, 4, 8, 8), 0)
    mask = np.ones((8, 8), bool)
    if bad == "maps_shape":
        with pytest.raises(InputError, match="maps"):
            SenseOp(maps[0], mask)
    elif bad == "mask_shape":
        with pytest.raises(ValueError, match=r"mask.*\(8, 8\)"):
            SenseOp(maps, np.ones((8, 9), bool))
    elif bad == "nan":
        m = maps.clone()
        m[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="non-finite"):
            SenseOp(m, mask)
    else:
        with pytest.raises(ValueError, match="dtype"):
            SenseOp(torch.ones(1, 4, 8, 8, dtype=torch.int64), mask)
    op = SenseOp(maps, mask)
    with pytest.raises(ValueError, match="expected shape"):
        op.A(torch.zeros(2, 8, 8, dtype=torch.complex64))
