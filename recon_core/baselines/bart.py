"""BART (the Berkeley Advanced Reconstruction Toolbox, Debian package `bart`) as a classical peer.

The strongest widely used compressed-sensing baseline: `bart pics` with an l1-wavelet (`W`) or total-
variation (`T`) regulariser, given the *same* coil maps as every other method (the project's ESPIRiT;
`bart ecalib` with its defaults fails on short calibration regions, REFERENCE.md), the sampling pattern
(`-p`) and `-S` (output rescaled to the input's units). Like `recon_core.baselines`, each slice is divided
by the 99th percentile of its zero-filled image first, so one λ serves data in any scanner units.

Data exchange: .cfl/.hdr files (complex64, column-major; BART dims: 0 readout, 1 phase, 3 coils) in a
temporary directory; one `bart` process per slice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import torch

from ..errors import InputError
from ..fft import ifft2c_np
from ..mvue import percentile_scale
from .spec import BaselineSpec

REGULARISERS = {"bart-w": "W", "bart-tv": "T"}
DEFAULT_LAMBDA = {"bart-w": 3e-3, "bart-tv": 3e-3}
DEFAULT_ITERS = 100


def available() -> bool:
    return shutil.which("bart") is not None


def binary() -> str:
    path = shutil.which("bart")
    if path is None:
        raise InputError("baseline needs the 'bart' binary, which is not on PATH (Debian: apt-get install bart)")
    return path


def write_cfl(name: str, arr: np.ndarray) -> None:
    """BART .cfl/.hdr: complex64, column-major, dims listed in the header."""
    arr = np.asarray(arr, dtype=np.complex64)
    with open(name + ".hdr", "w") as fh:
        fh.write("# Dimensions\n" + " ".join(str(d) for d in arr.shape) + "\n")
    arr.ravel(order="F").tofile(name + ".cfl")


def read_cfl(name: str) -> np.ndarray:
    with open(name + ".hdr") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln and not ln.startswith("#")]
    dims = [int(d) for d in lines[0].split()]
    data = np.fromfile(name + ".cfl", dtype=np.complex64)
    return data.reshape(dims, order="F")


def to_bart(arr: np.ndarray) -> np.ndarray:
    """(C, ny, nx) → BART (nx, ny, 1, C)."""
    return np.transpose(arr, (2, 1, 0))[:, :, None, :]


def run(args: list[str]) -> None:
    """Run `bart ARGS`; a failure raises InputError with BART's own message."""
    r = subprocess.run([binary()] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise InputError(f"bart {args[0]} failed: {msg[-1] if msg else 'exit ' + str(r.returncode)}")


def pics(ksp: np.ndarray, maps: np.ndarray, mask: np.ndarray, method: str = "bart-w", lamda: float | None = None,
         n_iter: int = DEFAULT_ITERS) -> np.ndarray:
    """`bart pics -S -R <W|T>:3:0:λ -i n_iter -p mask` per slice.

    ksp, maps: (B, C, ny, nx) complex; mask (ny, nx) or (B, ny, nx). Returns (B, ny, nx) complex64 in the
    input's units.
    """
    if method not in REGULARISERS:
        raise InputError(f"unknown BART method {method!r}: expected one of {', '.join(REGULARISERS)}")
    lam = DEFAULT_LAMBDA[method] if lamda is None else float(lamda)
    ksp = np.asarray(ksp, dtype=np.complex64)
    maps = np.asarray(maps, dtype=np.complex64)
    if ksp.ndim != 4 or maps.shape != ksp.shape:
        raise InputError(f"bart pics: k-space and maps must both be (B, C, ny, nx), got {ksp.shape} and {maps.shape}")
    B, C, ny, nx = ksp.shape
    m = np.asarray(mask).astype(bool)
    m = np.broadcast_to(m if m.ndim == 3 else m[None], (B, ny, nx))
    y = ksp * m[:, None]
    zf = (np.conj(maps) * ifft2c_np(y)).sum(axis=1)
    scale = percentile_scale(torch.from_numpy(zf)).numpy().astype(np.float64)
    scale = np.where(scale > 0, scale, 1.0)
    out = np.zeros((B, ny, nx), np.complex64)
    reg = f"{REGULARISERS[method]}:3:0:{lam:g}"
    with tempfile.TemporaryDirectory(prefix="contextmri-bart-") as d:
        k, s, p, x = (os.path.join(d, n) for n in ("k", "s", "p", "x"))
        for b in range(B):
            write_cfl(k, to_bart(y[b] / scale[b]))
            write_cfl(s, to_bart(maps[b]))
            write_cfl(p, m[b].T.astype(np.complex64)[:, :, None, None])
            run(["pics", "-S", "-R", reg, "-i", int(n_iter), "-p", p, k, s, x])
            out[b] = read_cfl(x).reshape(nx, ny).T * scale[b]
    return out


def ecalib(ksp: np.ndarray, calib: int, kernel: int) -> np.ndarray:
    """`bart ecalib -m1 -r calib -k kernel` on (C, ny, nx) k-space → maps (C, ny, nx) complex64."""
    with tempfile.TemporaryDirectory(prefix="contextmri-bart-") as d:
        k, s = os.path.join(d, "k"), os.path.join(d, "s")
        write_cfl(k, to_bart(ksp))
        run(["ecalib", "-m1", "-r", int(calib), "-k", int(kernel), k, s])
        return np.transpose(read_cfl(s).reshape(ksp.shape[2], ksp.shape[1], -1), (2, 1, 0)).astype(np.complex64)


def _solve(method):
    def solve(k, s, mask, lamda, n_iter):
        return pics(k, s, mask, method, lamda=lamda, n_iter=n_iter)
    return solve


_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SPECS = tuple(BaselineSpec(name, _solve(name), backend="numpy", lamda=DEFAULT_LAMBDA[name], n_iter=DEFAULT_ITERS,
                           lambda_grid=_GRID, real_grid=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2), requires="bart",
                           regularised=True, summary=f"`bart pics` {label} with the same maps (needs the `bart` binary)")
              for name, label in (("bart-w", "l1-wavelet"), ("bart-tv", "total variation")))
