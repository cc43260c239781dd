"""Synthesis evaluation pieces (issue 17): MS-SSIM and the contrast classifier."""

from __future__ import annotations

import numpy as np
import pytest

from recon_core.errors import InputError


def _img(rng, n=64):
    yy, xx = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    return (xx ** 2 + yy ** 2 < 0.6).astype(float) + 0.1 * rng.random((n, n))


def test_ms_ssim_properties():
    from recon_core.metrics import ms_ssim, ssim

    rng = np.random.default_rng(0)
    a = _img(rng, 128)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    b1, b2 = a + 0.05 * rng.standard_normal(a.shape), a + 0.3 * rng.standard_normal(a.shape)
    assert 1.0 > ms_ssim(a, b1) > ms_ssim(a, b2) > 0
    assert ms_ssim(a, b2, scales=1) == pytest.approx(ssim(a, b2))      # one scale is the SSIM
    with pytest.raises(InputError, match="too small"):
        ms_ssim(a[:32, :32], a[:32, :32], scales=5)
    assert ms_ssim(a[:32, :32], b2[:32, :32]) == pytest.approx(ms_ssim(a[:32, :32], b2[:32, :32], scales=3))


def test_contrast_classifier_separates_and_diversity():
    from training.evaluation.synthesis import ContrastClassifier, pairwise_ms_ssim

    rng = np.random.default_rng(1)
    n = 64
    yy, xx = np.mgrid[-1:1:n * 1j, -1:1:n * 1j]
    r2 = xx ** 2 + yy ** 2

    def make(kind, k):
        out = []
        for _ in range(k):
            s = 0.5 + 0.2 * rng.random()
            base = (r2 < s).astype(float)
            img = base * (1.0 if kind == "A" else 0.3) + (kind == "B") * ((r2 > s * 0.7) & (r2 < s))
            out.append(img + 0.05 * rng.random((n, n)))
        return np.stack(out)

    Xa, Xb = make("A", 30), make("B", 30)
    clf = ContrastClassifier.fit(np.concatenate([Xa[:20], Xb[:20]]), ["A"] * 20 + ["B"] * 20)
    pred = clf.predict(np.concatenate([Xa[20:], Xb[20:]]))
    assert pred == ["A"] * 10 + ["B"] * 10
    same = np.stack([Xa[0]] * 3)
    assert pairwise_ms_ssim(same) == pytest.approx(1.0)
    assert pairwise_ms_ssim(Xa[:3]) < 0.999
    with pytest.raises(InputError, match="at least two"):
        pairwise_ms_ssim(Xa[:1])
