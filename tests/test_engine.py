"""Inference engines (recon_core.prior.engine): every runtime computes the eager UNet's ε̂ on a real (tiny)
diffusers prior, at any batch and matrix; `engine auto` times them and keeps the choice within 2 % of fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_core.errors import InputError
from recon_core.precision import choose_runtime
from recon_core.prior import build_prior
from recon_core.prior.engine import ENGINE_PRECISIONS, build_engine, check_engine, engines_for, export_onnx
from recon_core.samplers.dds import dds_reconstruct


@pytest.fixture(scope="module")
def prior():
    return build_prior("tiny", seed=3).eval()


def _inputs(prior, b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 2, h, w, generator=g)
    t = torch.tensor([100 + 200 * i for i in range(b)], dtype=torch.long)
    tok = prior.uncondition(b).detach()
    return x, t, tok


@pytest.mark.parametrize("name", [e for e in engines_for("cpu")])
def test_every_engine_matches_eager_fp32_at_two_shapes(prior, name):
    run = build_engine(prior, name, "fp32")
    # batch, non-square matrix (multiples of the UNet's 8), and a grid the attention splits into 2 × 3 windows
    for b, h, w in ((2, 32, 32), (3, 24, 40), (1, 64, 96)):
        x, t, tok = _inputs(prior, b, h, w)
        with torch.no_grad():
            ref = prior.predict_eps(x, t, tok)
            out = run.predict_eps(x, t, tok)
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert float((out - ref).norm() / ref.norm()) < 1e-4, (name, b, h, w)


@pytest.mark.skipif("openvino-streams" not in engines_for("cpu"), reason="openvino not installed")
def test_openvino_streams_split_the_batch_and_match_openvino(prior):
    """The CFG pair (and any batch) split across one stream per thread gives openvino's own ε̂, part by part in
    order: batches 1 (no split), 2 (one per stream), 5 (parts of 3 and 2 with 2 threads)."""
    one, split = build_engine(prior, "openvino", "fp32"), build_engine(prior, "openvino-streams", "fp32")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for b in (1, 2, 5):
            x, t, tok = _inputs(prior, b, 32, 24, seed=b)
            a, c = one.predict_eps(x, t, tok), split.predict_eps(x, t, tok)
            assert c.shape == a.shape
            assert float((c - a).norm() / a.norm()) < 1e-5, b
        assert any(n == 2 for _, n in split.compiled)          # the batches ≥ 2 ran on two streams
    finally:
        torch.set_num_threads(threads)


def test_export_is_cached_and_atomic(prior, tmp_path):
    p1 = export_onnx(prior)
    mtime = p1.stat().st_mtime_ns
    assert export_onnx(prior) == p1 and p1.stat().st_mtime_ns == mtime     # reused, not re-exported
    assert not [f for f in p1.parent.iterdir() if f.name.startswith("tmp")]
    other = build_prior("tiny", seed=4).eval()
    assert export_onnx(other) != p1                                          # keyed by the weights


def test_auto_measures_every_installed_engine_and_stays_accurate(prior):
    logs = []
    ch = choose_runtime(prior, "auto", "auto", (40, 48), "cpu", log=logs.append)   # a shape no other test uses
    expected = {f"{e}/{p}" for e in engines_for("cpu") for p in ("fp32", "bf16") if p in ENGINE_PRECISIONS[e]}
    assert set(ch.seconds) == expected and ch.source == "measured"
    assert ch.rel_diff <= 0.02 and ch.engine in engines_for("cpu")
    assert logs and "precision auto" in logs[0]
    again = choose_runtime(prior, "auto", "auto", (40, 48), "cpu")
    assert again.source == "cache" and (again.engine, again.precision) == (ch.engine, ch.precision)
    assert again.runner is not None


def test_dds_runs_and_reports_each_engine(prior):
    rng = np.random.default_rng(0)
    C, n = 4, 32
    maps = (rng.standard_normal((1, C, n, n)) + 1j * rng.standard_normal((1, C, n, n))).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(1, keepdims=True))
    img = np.zeros((n, n), np.complex64)
    img[8:24, 10:22] = 1.0
    ksp = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(maps * img, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    mask = np.zeros((n, n), bool)
    mask[::2] = True
    mask[12:20] = True
    images = {}
    for name in engines_for("cpu"):
        r = dds_reconstruct(prior, ksp, maps, mask, None, device="cpu", nfe=3, engine=name, precision="fp32")
        assert r.timings["engine"] == name and r.timings["precision_choice"]["engine"] == name
        images[name] = r.image[0]
    ref = images["torch"]
    for name, im in images.items():
        assert np.linalg.norm(im - ref) / np.linalg.norm(ref) < 1e-3, name


def test_bad_engine_requests_name_the_problem(prior):
    with pytest.raises(InputError, match="unknown engine 'tensorrt'"):
        check_engine("tensorrt", "cpu")
    if "onnxruntime" in engines_for("cpu"):
        with pytest.raises(InputError, match="onnxruntime cannot run bf16"):
            choose_runtime(prior, "bf16", "onnxruntime", (32, 32), "cpu")
    with pytest.raises(InputError, match="cannot run fp16"):
        build_engine(prior, "openvino", "fp16")


def test_a_prior_that_computes_eps_otherwise_runs_its_own_predict_eps(prior):
    """Engines stand in for the UNet only: a wrapper (or a subclass overriding predict_eps) keeps eager torch."""

    class Wrapper:
        def __init__(self, base):
            self.base, self.unet, self.calls = base, base.unet, 0

        def predict_eps(self, x, t, tokens):
            self.calls += 1
            return self.base.predict_eps(x, t, tokens)

        def uncondition(self, n):
            return self.base.uncondition(n)

    w = Wrapper(prior)
    ch = choose_runtime(w, "auto", "auto", (32, 32), "cpu")
    assert ch.engine == "torch" and set(ch.seconds) == {"torch/fp32", "torch/bf16"}
    x, t, tok = _inputs(prior, 2, 32, 32)
    ch.runner.predict_eps(x, t, tok)
    assert w.calls > 0                                  # the wrapper's own ε, not an exported graph
    if "openvino" in engines_for("cpu"):
        with pytest.raises(InputError, match="computes ε otherwise"):
            choose_runtime(w, "auto", "openvino", (32, 32), "cpu")


def test_an_engine_that_fails_is_skipped_and_named(prior, monkeypatch):
    import recon_core.precision as precision

    real = precision.runner_for

    def flaky(p, name, prec):
        if name == "onnxruntime":
            raise RuntimeError("export failed")
        return real(p, name, prec)

    monkeypatch.setattr(precision, "runner_for", flaky)
    if "onnxruntime" not in engines_for("cpu"):
        pytest.skip("onnxruntime not installed")
    ch = choose_runtime(prior, "auto", "auto", (24, 32), "cpu")      # a shape no other test uses
    assert "onnxruntime/fp32" in ch.failed and "export failed" in ch.failed["onnxruntime/fp32"]
    assert ch.engine != "onnxruntime" and "onnxruntime/fp32" not in ch.seconds


def test_a_cached_choice_that_cannot_run_this_prior_is_measured_again(prior, monkeypatch):
    """The runtime cache is per architecture; another prior of the same one (e.g. with an adapter) whose weights an
    engine cannot take falls back to a fresh trial instead of failing the scan."""
    import recon_core.precision as precision

    shape = (16, 24)                                     # a shape no other test uses
    first = choose_runtime(prior, "auto", "auto", shape, "cpu")
    other = build_prior("tiny", seed=5).eval()            # same architecture, other weights
    real = precision.runner_for

    def refuse_cached(p, name, prec):
        if p is other and (name, prec) == (first.engine, first.precision) and first.engine != "torch":
            raise RuntimeError("cannot export")
        return real(p, name, prec)

    monkeypatch.setattr(precision, "runner_for", refuse_cached)
    again = choose_runtime(other, "auto", "auto", shape, "cpu")
    assert again.runner is not None
    if first.engine != "torch":
        assert again.source == "measured" and f"{first.engine}/{first.precision}" in again.failed


def test_engines_are_dropped_with_their_prior():
    """A long-running server that replaces its prior must not keep the old one (and its engines) alive."""
    import gc
    import weakref

    from recon_core.prior import engine as E

    p = build_prior("tiny", seed=6).eval()
    E.runner_for(p, "torch-cl", "fp32")
    E.weights_hash(p)
    ref = weakref.ref(p)
    n = len(E._MEMO)
    del p
    gc.collect()
    assert ref() is None and len(E._MEMO) <= n - 2     # the prior and its UNet are gone from the memo
