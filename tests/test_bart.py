"""BART `pics` as a baseline (recon_core.baselines.bart): the wrapper on a tiny case, the layout, and what happens
without the binary (explicitly named → one clear error, exit 2; default set → skipped with a note)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from recon_core.errors import InputError

HAVE_BART = shutil.which("bart") is not None


@pytest.mark.skipif(not HAVE_BART, reason="bart not installed")
@pytest.mark.parametrize("method", ["bart-w", "bart-tv"])
def test_pics_recovers_a_fully_sampled_image(method):
    from recon_core.baselines import reconstruct
    from recon_core.metrics import psnr
    from tests.test_dds import make_data

    x, ksp, maps, mask = make_data(B=2, accel=4)
    full = np.ones_like(mask)
    rec = reconstruct(method, ksp, maps, full, lamda=1e-5)
    assert rec.shape == x.shape and rec.dtype == np.complex64
    assert np.all(psnr(x, rec) > 40)                           # right layout, scale and phase
    # undersampled: better than zero-filled, and λ changes the result
    zf = reconstruct("zerofilled", ksp, maps, mask)
    r1 = reconstruct(method, ksp, maps, mask, lamda=3e-3)
    r2 = reconstruct(method, ksp, maps, mask, lamda=3e-1)
    assert np.all(psnr(x, r1) > psnr(x, zf)) and np.abs(r1 - r2).max() > 1e-3 * np.abs(r1).max()
    # scale-free: the same data ×1000 gives the same image ×1000
    r3 = reconstruct(method, ksp * 1000, maps, mask, lamda=3e-3)
    assert np.linalg.norm(r3 - 1000 * r1) / np.linalg.norm(1000 * r1) < 1e-2   # (BART's random wavelet shifts)


def test_missing_binary_is_one_clear_error(monkeypatch):
    from recon_core.baselines import reconstruct
    from tests.test_dds import make_data

    monkeypatch.setenv("PATH", "/nonexistent")
    x, ksp, maps, mask = make_data(B=1)
    with pytest.raises(InputError, match="'bart' binary"):
        reconstruct("bart-w", ksp, maps, mask)


def test_evaluation_baseline_set_without_bart(monkeypatch, tmp_path):
    from training.evaluation import EvalConfig

    monkeypatch.setenv("PATH", "/nonexistent")
    notes = []
    c = EvalConfig(model="default", data=str(tmp_path), out=str(tmp_path / "o"))
    assert "bart-w" not in c.resolved_baselines(notes.append) and "bart" in notes[0]
    with pytest.raises(InputError, match="bart-w need the 'bart' binary"):
        EvalConfig(model="default", data=str(tmp_path), out=str(tmp_path / "o"),
                   baselines=("sense", "bart-w")).resolved_baselines()


def test_evaluate_cli_named_bart_missing_exit_2(monkeypatch, tmp_path, capsys):
    from gadget.cli import main

    monkeypatch.setenv("PATH", "/nonexistent")
    from tests.test_evaluate import MATRIX  # noqa: F401  (same tiny export layout)
    rc = main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--baselines", "bart-w"])
    err = capsys.readouterr().err
    assert rc == 2 and "bart" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
