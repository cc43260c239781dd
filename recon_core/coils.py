"""Coil sensitivity maps by ESPIRiT from the fully sampled k-space centre (ACS).

Two backends, same maths (Uecker et al., MRM 2014), same parameters (kernel 6, thresh 0.02, crop 0.95):
- "torch" (default): batched over slices, device-agnostic. The calibration (Hankel) matrix of all
  kernel-sized patches of the ACS block is decomposed by SVD; the signal-subspace projector
  P = Σ_n v_n v_nᴴ (σ_n > thresh·σ_max) is folded into a (C, C, 2k−1, 2k−1) difference kernel, whose
  zero-padded centred IFFT gives, at every pixel r, the C×C matrix G(r) = Σ_n k_n(r) k_n(r)ᴴ (k_n the
  image-domain kernels, scaled so that eigenvalues are ≈ 1 where the object is). The maps are the
  eigenvectors of G(r) for its largest eigenvalue (torch.linalg.eigh on all pixels at once), zeroed
  where that eigenvalue < crop, phase referenced to coil 0. No per-pixel power iterations.
- "sigpy": `sigpy.mri.app.EspiritCalib` per slice (square calibration region).

The calibration region comes from the data: the largest centred block that is fully sampled
(`calib_region`). A rectangular region (all ACS rows × the readout) is used by the torch backend.

`coil_maps` is the one recipe every path calls (scanner, evaluations, validation, training data): ESPIRiT
with an eigenvalue-crop policy judged by `calibration_quality`, `lowres_maps` where ESPIRiT cannot cover
the object. `espirit_maps` is the primitive (the bench times it alone).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from .errors import InputError
from .fft import ifft2c_np
from .masks import MIN_ACS_LINES
from .validate import as_tensor, check_ndim

#: largest side of the ESPIRiT calibration block (see `espirit_maps`)
MAX_CALIB = 32
#: ESPIRiT eigenvalue crops tried in turn until the maps cover the calibration image's signal (`coil_maps`)
CROPS = (0.95, 0.9, 0.8, 0.7)
#: the coverage (`calibration_quality`) a crop must reach, with no signal pixel outside its support
COVERAGE_TARGET = 0.99
#: below this coverage after every crop, ESPIRiT has failed (holes in the object): low-resolution maps
FALLBACK_COVERAGE = 0.9


def _centred_run(full: np.ndarray) -> int:
    """Largest w such that the centred block [n//2 − w//2, n//2 − w//2 + w) of a 1-D bool array is all True."""
    n = len(full)
    for w in range(n, 0, -1):
        lo = n // 2 - w // 2
        if full[lo:lo + w].all():
            return w
    return 0


def calib_region(mask: np.ndarray) -> tuple[int, int]:
    """Size (cy, cx) of the largest centred, fully sampled rectangle of a (ny, nx) bool mask.

    Rows are taken first (the centre rows that are sampled across the centre columns), then the
    columns that are sampled in all of those rows.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise InputError(f"mask: expected (ny, nx), got shape {mask.shape}")
    ny, nx = mask.shape
    col = mask[:, nx // 2]
    cy = _centred_run(col)
    if cy == 0:
        return 0, 0
    # a 2-D (Poisson) mask may sample lines next to the ACS block in the centre column: shrink the
    # row count while that widens the block (largest min side, then largest area)
    best = (0, 0)
    for h in range(cy, 0, -1):
        rows = slice(ny // 2 - h // 2, ny // 2 - h // 2 + h)
        w = _centred_run(mask[rows].all(axis=0))
        if (min(h, w), h * w) > (min(best), best[0] * best[1]):
            best = (h, w)
        if w == nx:
            break
    return best


def _mask_from_kspace(ksp: torch.Tensor) -> np.ndarray:
    return (ksp.abs().sum(dim=tuple(range(ksp.ndim - 2))) > 0).cpu().numpy()


def _crop_centre(x: torch.Tensor, cy: int, cx: int) -> torch.Tensor:
    ny, nx = x.shape[-2:]
    y0, x0 = ny // 2 - cy // 2, nx // 2 - cx // 2
    return x[..., y0:y0 + cy, x0:x0 + cx]


def espirit_maps(ksp, mask=None, calib=None, kernel_width: int = 6, thresh: float = 0.02,
                 crop: float = 0.95, backend: str = "torch", device=None, max_calib: int = MAX_CALIB):
    """ESPIRiT maps from k-space.

    ksp: (C, ny, nx) or (B, C, ny, nx) complex (undersampled is fine; only the ACS block is used).
    mask: (ny, nx) sampling mask; default = where |ksp| is non-zero (summed over batch/coils).
    calib: None (from the mask, each side capped at `max_calib`), an int (square side) or (cy, cx).
    Each side is capped at max_calib (32) and the area at max(ny·nx/16, 24²) (the longer side gives
    way). Wider regions pull noise-dominated high frequencies into the calibration matrix (birdcage
    maps, Shepp-Logan 128², SNR 20 dB, fully sampled: map error 0.023 with 32², 0.49 with 48², 0.94
    with 128²); thin 1-D ACS blocks (8–12 lines × up to 32–48 readout points) keep enough patches.
    Returns maps with the shape of `ksp` (numpy complex64 for numpy input, else a torch tensor).
    """
    was_numpy = isinstance(ksp, np.ndarray)
    k = as_tensor(ksp, "k-space", device=device)
    check_ndim(k, (3, 4), "k-space", "(C, ny, nx) or (B, C, ny, nx)")
    single = k.ndim == 3
    if single:
        k = k[None]
    cy, cx = _calib_size(_common_mask(k, mask), calib, max_calib, kernel_width)
    if backend == "torch":
        maps = _espirit_torch(k, cy, cx, kernel_width, thresh, crop)
    elif backend == "sigpy":
        maps = _espirit_sigpy(k, min(cy, cx), _kernel_size(kernel_width, min(cy, cx)), thresh, crop)
    else:
        raise InputError(f"unknown ESPIRiT backend {backend!r}: expected torch or sigpy")
    if single:
        maps = maps[0]
    return maps.cpu().numpy() if was_numpy else maps


def _common_mask(k: torch.Tensor, mask) -> np.ndarray:
    """(ny, nx) bool sampling mask of k-space k (B, C, ny, nx): `mask` (ny, nx), or (B, ny, nx) reduced to
    the lines every slice has; None: where |k| is non-zero."""
    ny, nx = k.shape[-2:]
    m = _mask_from_kspace(k) if mask is None else np.asarray(mask)
    if m.ndim == 3:
        m = m.all(axis=0)
    if m.shape != (ny, nx):
        raise InputError(f"mask: expected shape {(ny, nx)} to match k-space, got {m.shape}")
    return m


def _calib_size(m: np.ndarray, calib, max_calib: int, kernel_width: int) -> tuple[int, int]:
    """(cy, cx) ESPIRiT calibration block of the (ny, nx) mask `m`: `calib_region`, capped by `calib`
    (int or (cy, cx)), by `max_calib` per side and by the area budget (see `espirit_maps`)."""
    ny, nx = m.shape
    cy, cx = calib_region(m)
    if calib is not None:
        want = (calib, calib) if np.isscalar(calib) else tuple(calib)
        cy, cx = min(cy, int(want[0])), min(cx, int(want[1]))
    cy, cx = min(cy, max_calib), min(cx, max_calib)
    budget = max(ny * nx // 16, 24 * 24)                             # calibration area ≤ 1/16 of k-space
    if cy * cx > budget:
        if cy >= cx:
            cy = max(budget // cx, 3)
        else:
            cx = max(budget // cy, 3)
    if min(cy, cx) < 3:
        raise InputError(f"no usable calibration (ACS) region: the fully sampled k-space centre is {cy}×{cx}, "
                         f"ESPIRiT needs at least 3×3 (ideally ≥ {kernel_width + 2} lines)")
    return cy, cx


def _kernel_size(kw: int, calib: int) -> int:
    """Kernel side for a calibration side: at most half of it (measured on birdcage maps at 128²:
    a 6-point kernel across only 8–10 ACS lines pushes the object's eigenvalues below the 0.95 crop,
    the map error rises from ~0.02 to > 0.5), at least 3."""
    return max(min(kw, calib // 2), min(3, calib))


def _top_eigvec(H: torch.Tensor, floor: float = 0.0, iters: int = 48, tol: float = 1e-5):
    """Largest eigenpair of the Hermitian PSD C×C matrix at every pixel. H (B, ny, nx, C, C) → (eigenvalue
    (B, ny, nx) float32, unit vector (B, C, ny, nx) complex64).

    Pixels whose largest eigenvalue cannot reach `floor` are skipped (eigenvalue and vector 0; λ₁ ≤ ‖H‖_F), which
    changes no map cropped at ≥ floor (a 256² 11-coil slice: a third of the pixels, the air around the head). The
    rest by certified power iteration (`_certified_power`): a pixel whose eigenvector is not certified to `tol`
    (sin of the angle to the true one) after `iters` steps gets an exact batched eigendecomposition
    (`torch.linalg.eigh`), as every pixel did before (256² 11 coils: 0.25 s for ~32 k pixels, against ~0.05 s
    for the iteration). Uncertified pixels are where the top two eigenvalues are close — where the object folds in
    a reduced phase FOV, both overlapping tissues have ESPIRiT eigenvalue ≈ 1; plain power iteration there leaves a
    mixture (CG-SENSE 29.4 dB on the acquisition set's fold case; exact: 50.2, like sigpy's 100 iterations, 52.0).
    """
    B, ny, nx, C, _ = H.shape
    H = H.reshape(-1, C, C)
    lam = torch.zeros(H.shape[0], dtype=torch.float32, device=H.device)
    vec = torch.zeros(H.shape[0], C, dtype=torch.complex64, device=H.device)
    fro = (H.real ** 2 + H.imag ** 2).sum((1, 2)).sqrt()
    idx = (fro >= floor).nonzero()[:, 0] if floor > 0 else torch.arange(H.shape[0], device=H.device)
    Hs = H[idx]
    mu, v, ok = _certified_power(Hs, fro[idx], iters, tol)
    bad = (~ok).nonzero()[:, 0]
    if bad.numel():
        Hb = Hs[bad]
        w, V = torch.linalg.eigh((Hb + Hb.conj().transpose(1, 2)) / 2)  # exactly Hermitian; ascending
        mu[bad], v[bad] = w[:, -1].to(mu.dtype), V[:, :, -1].to(v.dtype)
    lam[idx], vec[idx] = mu.float(), v.to(torch.complex64)
    return lam.reshape(B, ny, nx), vec.reshape(B, ny, nx, C).permute(0, 3, 1, 2)


def _certified_power(H: torch.Tensor, fro: torch.Tensor, iters: int, tol: float, chunk: int = 12):
    """Power iteration on Hermitian H (P, C, C) from its row sums H·1, with a bound on each pixel's
    error: the Rayleigh quotient μ and residual r = ‖Hv − μv‖ give sin∠(v, v₁) ≤ r / (μ − λ₂) (Davis–Kahan), and
    λ₂ ≤ sqrt(‖H‖_F² − μ²) because Σλᵢ² = ‖H‖_F² and λ₁ ≥ μ. Pixels are checked every `chunk` steps and only the
    uncertified ones iterate on, up to `iters` steps. Returns (μ (P,), unit v (P, C), certified (P,) bool: the
    bound ≤ tol)."""
    dev = H.device
    v = H.sum(-1, keepdim=True)                                       # (P, C, 1); uncertified if ⟂ v₁
    P = H.shape[0]
    mu = torch.zeros(P, dtype=H.real.dtype, device=dev)
    ok = torch.zeros(P, dtype=torch.bool, device=dev)
    live = torch.arange(P, device=dev)                                # pixels still iterating
    Hl, vl, done = H, v, 0
    while live.numel() and done < iters:
        for _ in range(min(chunk, iters - done)):
            vl = Hl @ vl
        done += chunk
        vl = vl * (vl.real ** 2 + vl.imag ** 2).sum(1, keepdim=True).clamp_min(1e-30).rsqrt()
        Hv = Hl @ vl
        m = (vl.conj() * Hv).sum((1, 2)).real
        res = Hv - m[:, None, None] * vl
        r = (res.real ** 2 + res.imag ** 2).sum((1, 2)).sqrt()
        gap = m - (fro[live] ** 2 - m ** 2).clamp_min(0).sqrt()
        good = (gap > 0) & (r <= tol * gap)
        mu[live], v[live], ok[live] = m, vl, good
        keep = (~good).nonzero()[:, 0]
        live, Hl, vl = live[keep], Hl[keep], vl[keep]
    return mu, v[..., 0], ok


def _centred_idft(n: int, half: int, device) -> torch.Tensor:
    """(n, 2·half + 1) complex64: the centred orthonormal inverse DFT (`ifft2c`'s convention along one axis)
    from the frequencies −half…half to every pixel."""
    u = np.arange(n)[:, None] - n // 2
    d = np.arange(-half, half + 1)[None, :]
    return torch.from_numpy((np.exp(2j * np.pi * u * d / n) / np.sqrt(n)).astype(np.complex64)).to(device)


def _espirit_torch(k: torch.Tensor, cy: int, cx: int, kw: int, thresh: float, crop: float) -> torch.Tensor:
    lam, vec = _espirit_eig(k, cy, cx, kw, thresh, floor=crop)
    return (vec * (lam >= crop)[:, None]).contiguous().to(torch.complex64)


def _espirit_eig(k: torch.Tensor, cy: int, cx: int, kw: int, thresh: float,
                 floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(top eigenvalue (B, ny, nx), its eigenvector (B, C, ny, nx) complex64 phase-referenced to coil 0):
    ESPIRiT before the crop (the maps at crop c ≥ floor are vec · (lam ≥ c); pixels whose eigenvalue is surely
    below `floor` are 0, see `_top_eigvec`)."""
    B, C, ny, nx = k.shape
    ky, kx = _kernel_size(kw, cy), _kernel_size(kw, cx)
    calib = _crop_centre(k, cy, cx)                                  # (B, C, cy, cx)
    # Hankel matrix: rows = patches, columns = (coil, ky, kx) — torch unfold works on real tensors,
    # so unfold real and imaginary parts separately.
    unf = torch.nn.functional.unfold
    re = unf(calib.real.contiguous(), (ky, kx))
    im = unf(calib.imag.contiguous(), (ky, kx))
    A = torch.complex(re, im).transpose(1, 2)                       # (B, P, C*ky*kx)
    # Right singular vectors of A = eigenvectors of AᴴA (a small Hermitian matrix; much faster than
    # an SVD of the tall Hankel matrix), σ² = eigenvalues.
    AhA = A.conj().transpose(1, 2) @ A                               # (B, n, n), n = C*ky*kx
    # one eigh per slice: on CPU a batched complex eigh is ~4x slower than a loop (torch 2.13, measured)
    s2, V = (torch.stack(t) for t in zip(*[torch.linalg.eigh(a) for a in AhA.to(torch.complex128)]))  # ascending
    keep = (s2 > (thresh ** 2) * s2[:, -1:]).to(V.dtype)             # σ > thresh·σ_max
    # Projector onto the signal subspace, P[a, b] = Σ_n w_n v_n[a] conj(v_n[b]) with v_n = conj(V[:, n])
    # (rows of Vᴴ, as an SVD returns them)
    P = torch.einsum("bn,ban,bcn->bac", keep, V.conj(), V).to(torch.complex64)
    P = P.reshape(B, C, ky, kx, C, ky, kx)
    # Difference kernel D[c, c', Δy, Δx] = Σ_{u − u' = Δ} P[(c, u), (c', u')]
    D = torch.zeros(B, C, C, 2 * ky - 1, 2 * kx - 1, dtype=P.dtype, device=P.device)
    Pp = P.permute(0, 1, 4, 2, 5, 3, 6)                              # (B, C, C', iy, iy', ix, ix')
    dx = (torch.arange(kx)[:, None] - torch.arange(kx)[None, :] + kx - 1).reshape(-1).to(P.device)
    for iy in range(ky):
        for iy2 in range(ky):
            blk = Pp[:, :, :, iy, iy2].reshape(B, C, C, kx * kx)     # over (ix, ix')
            D[:, :, :, iy - iy2 + ky - 1].index_add_(-1, dx, blk)
    # The image-domain Gram matrix G = ifft2c(D centred in an (ny, nx) grid): D has only (2ky−1)(2kx−1)
    # frequencies, so two small inverse-DFT products give it, in the (B, ny, nx, C, C) layout the
    # per-pixel decomposition wants (no full-grid FFT, shifts or transposes of 121 planes).
    Ey, Ex = _centred_idft(ny, ky - 1, P.device), _centred_idft(nx, kx - 1, P.device)
    T = torch.einsum("yi,bcdij->byjcd", Ey, D).reshape(B * ny, 2 * kx - 1, C * C)
    G = (Ex @ T).reshape(B, ny, nx, C, C) * (np.sqrt(ny * nx) / (ky * kx))
    lam, vec = _top_eigvec(G, floor)                                 # (B, ny, nx), (B, C, ny, nx)
    ref = vec[:, :1]
    mag = (ref.real ** 2 + ref.imag ** 2).sqrt()
    phase = torch.where(mag > 0, ref.conj() / mag.clamp_min(1e-30), torch.ones_like(ref))
    return lam, vec * phase


def _espirit_sigpy(k: torch.Tensor, width: int, kw: int, thresh: float, crop: float) -> torch.Tensor:
    from sigpy.mri.app import EspiritCalib

    out = []
    for b in range(k.shape[0]):
        kb = k[b].cpu().numpy()
        maps = EspiritCalib(kb, calib_width=width, thresh=thresh, kernel_width=kw, crop=crop,
                            show_pbar=False).run()
        out.append(torch.from_numpy(np.asarray(maps, dtype=np.complex64)))
    return torch.stack(out).to(k.device)


def lowres_maps(calib: np.ndarray, acs_rows: tuple[int, int], width: int | None = None,
                support_threshold: float = 0.05, dilate: int = 2) -> np.ndarray:
    """Coil maps from the low-resolution coil images of the ACS block (no eigen-decomposition, no crop).

    calib (C, ny, nx) complex; acs_rows (lo, hi) the fully sampled rows. The ACS rows × the central
    `width` columns (default: as many as there are rows, at least 8) are Hann-windowed, zero-filled and
    inverse-FFT'd; maps = coil image / root-sum-of-squares (unit norm over coils, like ESPIRiT's), phase
    referenced to coil 0, kept where the low-resolution root-sum-of-squares exceeds `support_threshold` ×
    its maximum, dilated by `dilate` pixels (the signal region of `calibration_quality` is the 0.1
    level, so no signal pixel is cut). Smoother and far less exact than ESPIRiT (the classic sensitivity
    estimate of Pruessmann's SENSE): the last resort of `coil_maps` when the calibration is too small
    for ESPIRiT. Returns (C, ny, nx) complex64.
    """
    C, ny, nx = calib.shape
    lo, hi = int(acs_rows[0]), int(acs_rows[1])
    if hi - lo < 2:
        raise InputError(f"no calibration for coil maps: {hi - lo} ACS line(s)")
    w = max(hi - lo, 8) if width is None else int(width)
    w = min(w, nx)
    x0 = nx // 2 - w // 2
    win = np.zeros((ny, nx), np.float32)
    win[lo:hi, x0:x0 + w] = np.outer(np.hanning(hi - lo + 2)[1:-1], np.hanning(w + 2)[1:-1])
    img = ifft2c_np(calib * win[None])
    sos = np.sqrt((np.abs(img) ** 2).sum(axis=0))
    maps = np.where(sos > 0, img / np.maximum(sos, 1e-30), 0) * np.exp(-1j * np.angle(img[0]))[None]
    support = sos > support_threshold * float(sos.max() or 1.0)
    if dilate:
        support = binary_dilation(support, iterations=int(dilate))
    maps = maps * support[None]
    return maps.astype(np.complex64)


# ------------------------------------------------------------------------------ the coil-map recipe
def coil_maps(ksp, acs_rows=None, mask=None, calib=None, backend: str = "torch", device=None,
              info: dict | None = None):
    """Coil maps by the one recipe of every path (scanner, evaluations, validation, training data).

    ksp (C, ny, nx) or (B, C, ny, nx) complex, numpy or torch; only its calibration region is used
    (`calibration_region`: the ACS rows `acs_rows` (lo, hi) × the readout, else the largest centred
    fully sampled block of `mask`, each side capped at `calib`). Per slice: ESPIRiT (`espirit_maps`) at
    the usual crop 0.95; where that support would drop object pixels (`calibration_quality`: coverage <
    COVERAGE_TARGET or any signal pixel outside the support, e.g. an object filling the FOV) the crop is
    lowered step by step (CROPS) and the first that covers the signal (else the best) is kept.
    `lowres_maps` (no holes by construction) when the region has fewer than MIN_ACS_LINES rows, or when
    even the best crop covers less than FALLBACK_COVERAGE of the signal. `info`, when given, receives
    {"maps": "espirit" | "lowres", "fallback": reason or "", "crop" (nan for lowres),
    **calibration_quality}; batched input: {"slices": [one such dict per slice]}.
    Returns maps with the shape of `ksp` (numpy complex64 for numpy input, else a torch tensor).
    """
    was_numpy = isinstance(ksp, np.ndarray)
    k = as_tensor(ksp, "k-space", device=device)
    check_ndim(k, (3, 4), "k-space", "(C, ny, nx) or (B, C, ny, nx)")
    kb = k[None] if k.ndim == 3 else k
    block = calibration_region(kb, acs_rows, mask, calib)
    lines = int(block.any(axis=1).sum())
    at_crop = _espirit_at_crops(kb, block, backend) if lines >= MIN_ACS_LINES else None
    kn = kb.cpu().numpy()
    picked = [_pick_maps(kn[b], block, at_crop, b) for b in range(kn.shape[0])]
    if info is not None:
        info.update(picked[0][1] if k.ndim == 3 else {"slices": [q for _, q in picked]})
    maps = np.stack([m for m, _ in picked])
    maps = maps[0] if k.ndim == 3 else maps
    return maps if was_numpy else torch.from_numpy(maps).to(k.device)


def calibration_region(ksp, acs_rows=None, mask=None, calib=None) -> np.ndarray:
    """(ny, nx) bool calibration region of k-space (…, ny, nx) for `coil_maps`: rows `acs_rows` (lo, hi)
    × the whole readout (the raw layer's ACS rule); else the largest centred fully sampled block
    (`calib_region`) of `mask` ((ny, nx), or (B, ny, nx): what every slice samples; default: where |ksp| is
    non-zero), each side capped at `calib` (int or (cy, cx)) when given."""
    ny, nx = ksp.shape[-2:]
    block = np.zeros((ny, nx), bool)
    if acs_rows is not None:
        block[int(acs_rows[0]):int(acs_rows[1])] = True
        return block
    k = ksp if isinstance(ksp, torch.Tensor) else torch.from_numpy(np.asarray(ksp))
    cy, cx = calib_region(_common_mask(k, mask))
    if calib is not None:
        want = (calib, calib) if np.isscalar(calib) else tuple(calib)
        cy, cx = min(cy, int(want[0])), min(cx, int(want[1]))
    block[ny // 2 - cy // 2:ny // 2 - cy // 2 + cy, nx // 2 - cx // 2:nx // 2 - cx // 2 + cx] = True
    return block


def _espirit_at_crops(k: torch.Tensor, block: np.ndarray, backend: str, kernel_width: int = 6,
                      thresh: float = 0.02):
    """crop → ESPIRiT maps (B, C, ny, nx) numpy complex64 of k (B, C, ny, nx) calibrated on `block`, cached;
    the torch backend decomposes once for every crop (maps at crop c = eigenvector · (eigenvalue ≥ c))."""
    if backend == "torch":
        lam, vec = _espirit_eig(k, *_calib_size(block, None, MAX_CALIB, kernel_width), kernel_width, thresh,
                                floor=min(CROPS))
        return functools.cache(lambda c: (vec * (lam >= c)[:, None]).cpu().numpy().astype(np.complex64))
    return functools.cache(lambda c: np.asarray(espirit_maps(k, mask=block, kernel_width=kernel_width, thresh=thresh,
                                                             crop=c, backend=backend).cpu()).astype(np.complex64))


def _pick_maps(calib: np.ndarray, block: np.ndarray, at_crop, b: int) -> tuple[np.ndarray, dict]:
    """(maps (C, ny, nx) complex64, info) of slice `b` (calib (C, ny, nx)) by the policy of `coil_maps`;
    at_crop None: too few ACS lines for ESPIRiT."""
    rows = np.flatnonzero(block.any(axis=1))
    lines = len(rows)
    best, reason = None, ""
    if at_crop is not None:
        for crop in CROPS:
            maps = at_crop(crop)[b]
            q = calibration_quality(calib, block, maps)
            score = (q["coverage"] >= COVERAGE_TARGET and q["signal_outside_support"] == 0, q["coverage"])
            if best is None or score > best[2]:
                best = (maps, {"maps": "espirit", "fallback": "", "crop": crop, **q}, score)
            if score[0]:
                break
        if best[1]["coverage"] < FALLBACK_COVERAGE:
            reason = f"ESPIRiT maps cover only {100 * best[1]['coverage']:.1f} % of the signal with {lines} ACS lines"
    else:
        reason = f"{lines} ACS lines are too few for ESPIRiT (needs {MIN_ACS_LINES})"
    if not reason:
        return best[0], best[1]
    lo, hi = (int(rows[0]), int(rows[-1]) + 1) if lines else (0, 0)
    maps = lowres_maps(calib, (lo, hi), width=min(max(lines, 8), int(block.any(axis=0).sum())))
    return maps, {"maps": "lowres", "fallback": reason, "crop": float("nan"), **calibration_quality(calib, block, maps)}


def calibration_quality(calib: np.ndarray, block: np.ndarray, maps: np.ndarray, threshold: float = 0.1) -> dict:
    """How well coil maps (C, ny, nx) cover the object, from the data alone.

    The low-resolution coil images of the calibration region `block` ((ny, nx) bool, always fully
    sampled) of calib (C, ny, nx) give a sum-of-squares image; its pixels above `threshold` × its maximum
    are "signal". coverage = fraction of the signal energy that lies where the maps are non-zero (1.0:
    ESPIRiT's crop keeps every signal pixel; below ~0.97 the reconstruction loses object there). Also the
    fraction of signal pixels outside the support, the support's share of the field of view and the
    region's number of rows. Returns plain floats (for image meta and logs).
    """
    k = np.zeros_like(calib)
    k[:, block] = calib[:, block]
    sos = np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(axis=0))
    support = (np.abs(maps) ** 2).sum(axis=0) > 0
    sig = sos > threshold * float(sos.max() or 1.0)
    e = sos ** 2
    total = float(e[sig].sum()) or 1.0
    return {"coverage": float(e[sig & support].sum()) / total,
            "signal_outside_support": float((sig & ~support).sum()) / max(int(sig.sum()), 1),
            "support_fraction": float(support.mean()), "acs_lines": int(block.any(axis=1).sum())}


def rss(coil_images, dim: int = -3):
    """Root-sum-of-squares coil combination (numpy or torch), over the coil axis `dim`."""
    if isinstance(coil_images, torch.Tensor):
        return coil_images.abs().pow(2).sum(dim=dim).sqrt()
    return np.sqrt((np.abs(coil_images) ** 2).sum(axis=dim))
