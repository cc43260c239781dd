import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def phantom_scan():
    """A 64² 8-coil Shepp-Logan scan with true birdcage maps: (img (ny,nx), maps (C,ny,nx), ksp (C,ny,nx))."""
    import sigpy as sp
    import sigpy.mri as mr

    from recon_core.fft import fft2c_np

    n, c = 64, 8
    maps = mr.birdcage_maps((c, n, n), r=1.2).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    yy, xx = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    img = (sp.shepp_logan((n, n)) * np.exp(1j * 0.4 * (xx + yy))).astype(np.complex64)
    ksp = fft2c_np(maps * img)
    return img, maps, ksp


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/contextmri (the precision-choice cache)."""
    import os

    d = tmp_path_factory.mktemp("contextmri-cache")
    old = os.environ.get("CONTEXTMRI_CACHE_DIR")
    os.environ["CONTEXTMRI_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("CONTEXTMRI_CACHE_DIR", None)
    else:
        os.environ["CONTEXTMRI_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tiny tensors (fastest, no OpenMP spinning on a busy 2-core box);
    modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
