"""Evaluation of conditional *synthesis* (`contextmri generate`) per (contrast, pathology) cell:

- diversity: mean pairwise MS-SSIM (`recon_core.metrics.ms_ssim`) of the n samples of a cell (lower = more
  diverse), beside the same statistic of n real images of that cell (what real anatomy varies by);
- contrast fidelity: the fraction of samples a simple contrast classifier assigns to the requested contrast.
  The classifier (multinomial logistic regression on a 16×16 block-mean thumbnail + an intensity histogram of
  the percentile-normalised magnitude) is fitted on real images and its accuracy on held-out real images is
  reported with it, so a low score on samples is not the classifier's fault.

Images are (N, H, W) complex (or real) normalised magnitudes; everything is seeded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from recon_core.errors import InputError
from recon_core.metrics import ms_ssim
from recon_core.sim.pathology import LABELS

HIST_BINS = 24


def contrast_features(images) -> np.ndarray:
    """(N, H, W) → (N, 256 + HIST_BINS) float32: 16×16 block means and a histogram of |x| / p99(|x|)."""
    mag = np.abs(np.asarray(images))
    if mag.ndim != 3 or mag.shape[1] % 16 or mag.shape[2] % 16:
        raise InputError(f"contrast features: expected (N, H, W) with H, W divisible by 16, got {mag.shape}")
    n, h, w = mag.shape
    p = np.percentile(mag.reshape(n, -1), 99, axis=1).reshape(n, 1, 1)
    x = mag / np.maximum(p, 1e-8)
    thumb = x.reshape(n, 16, h // 16, 16, w // 16).mean(axis=(2, 4)).reshape(n, -1)
    hist = np.stack([np.histogram(xi[xi > 0.05], bins=HIST_BINS, range=(0.05, 1.5))[0] for xi in x]).astype(np.float64)
    hist = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    return np.concatenate([thumb, hist * 10], axis=1).astype(np.float32)


@dataclass
class ContrastClassifier:
    classes: list
    weight: torch.Tensor
    bias: torch.Tensor
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, images, labels, l2: float = 1e-3, seed: int = 0) -> "ContrastClassifier":
        feats = contrast_features(images)
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise InputError("contrast classifier: need images of at least two contrasts")
        y = torch.tensor([classes.index(v) for v in labels])
        mu, sd = feats.mean(0), feats.std(0) + 1e-6
        X = torch.from_numpy((feats - mu) / sd)
        torch.manual_seed(seed)
        W = torch.zeros(X.shape[1], len(classes), requires_grad=True)
        b = torch.zeros(len(classes), requires_grad=True)
        opt = torch.optim.LBFGS([W, b], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(X @ W + b, y) + l2 * W.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return cls(classes, W.detach(), b.detach(), mu, sd)

    def predict(self, images) -> list:
        X = torch.from_numpy((contrast_features(images) - self.mean) / self.std)
        return [self.classes[i] for i in (X @ self.weight + self.bias).argmax(dim=1).tolist()]


def pairwise_ms_ssim(images) -> float:
    """Mean MS-SSIM over all pairs of (N ≥ 2) images, each pair's data range the larger maximum."""
    mags = [np.abs(np.asarray(x)) for x in images]
    if len(mags) < 2:
        raise InputError("diversity needs at least two images")
    vals = [ms_ssim(a, b, data_range=float(max(a.max(), b.max()))) for a, b in itertools.combinations(mags, 2)]
    return float(np.mean(vals))


def template_record(records, contrast: str, pathology_kind_: str):
    """A real record of `contrast` (its sequence parameters) with the pathology of `pathology_kind_`."""
    for r in records:
        if (r.contrast or "").upper() == contrast.upper():
            return r.replace(pathology=list(LABELS[pathology_kind_]))
    raise InputError(f"no record with contrast {contrast!r} to take the sequence parameters from")
