"""precision "auto": a timed trial picks bf16 only where it is faster and accurate; cached per machine."""

from __future__ import annotations

import time

import pytest
import torch

from recon_core.errors import InputError
from recon_core.precision import check_precision, choose_precision, choose_runtime


def _trial(slow: str, diff: float = 0.0):
    calls = []

    def trial(p):
        calls.append(p)
        time.sleep(0.02 if p == slow else 0.001)
        return torch.ones(8) * (1.0 + (diff if p == "bf16" else 0.0))
    return trial, calls


def test_fixed_precision_runs_no_trial():
    trial, calls = _trial("fp32")
    ch = choose_precision("bf16", "cpu", trial, "k1")
    assert ch.precision == "bf16" and ch.source == "fixed" and calls == []


def test_auto_picks_the_faster_accurate_one(monkeypatch):
    monkeypatch.setenv("CONTEXTMRI_PRECISION_CACHE", "0")
    trial, _ = _trial("fp32")
    ch = choose_precision("auto", "cpu", trial, "k2")
    assert ch.precision == "bf16" and ch.source == "measured" and ch.seconds["fp32"] > ch.seconds["bf16"]
    trial, _ = _trial("bf16")
    assert choose_precision("auto", "cpu", trial, "k3").precision == "fp32"
    # faster but inaccurate → fp32
    trial, _ = _trial("fp32", diff=0.5)
    ch = choose_precision("auto", "cpu", trial, "k4")
    assert ch.precision == "fp32" and ch.rel_diff == pytest.approx(0.5)


def test_cache_per_machine_and_key():
    logs = []
    trial, calls = _trial("fp32")
    a = choose_precision("auto", "cpu", trial, "cache-key", log=logs.append)
    n = len(calls)
    b = choose_precision("auto", "cpu", trial, "cache-key", log=logs.append)
    assert a.source == "measured" and b.source == "cache" and b.precision == a.precision and len(calls) == n
    assert "precision auto →" in logs[0] and "cache" in logs[1]


def test_unknown_precision_is_refused():
    with pytest.raises(InputError, match="unknown precision 'fp8'"):
        check_precision("fp8")


def test_inference_trial_on_a_real_prior():
    from recon_core.prior import build_prior

    prior = build_prior("tiny").eval()
    ch = choose_runtime(prior, "auto", "torch", (32, 32), "cpu")
    assert ch.precision in ("fp32", "bf16") and set(ch.seconds) == {"torch/fp32", "torch/bf16"}
    assert ch.engine == "torch" and ch.runner is not None and "runner" not in ch.to_meta()
    assert ch.rel_diff is not None and ch.rel_diff < 0.1
    meta = ch.to_meta()
    assert meta["requested"] == "auto" and meta["hardware"].startswith("cpu:")
