"""simulate-dataset export: layout, normalisation, metadata, disjoint splits, determinism, resume."""

import json
import subprocess
import sys

import numpy as np
import pytest

from recon_core.sim import export
from recon_core.sim.export import ExportConfig, load_split, simulate_dataset

CFG = dict(n_slices=5, matrix=64, coils=4, slices_per_subject=2, seed=3)


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    simulate_dataset(d, ExportConfig(split="val", **CFG), progress=False)
    return d


def test_layout_and_normalisation(val_dir):
    data = load_split(val_dir, "val")
    assert len(data) == 5 and data.mvue.shape == (5, 2, 64, 64) and data.mvue.dtype == np.float32
    assert data.kspace.shape == (5, 4, 64, 64) and data.maps.shape == (5, 4, 64, 64)   # val: k-space on
    assert data.reference.dtype == np.complex64 and data.scale.shape == (5,)
    mag = np.abs(data.mvue[:, 0] + 1j * data.mvue[:, 1])
    assert np.allclose(np.percentile(mag.reshape(5, -1), 99, axis=1), 1, rtol=1e-3)
    assert np.allclose((data.mvue[:, 0] + 1j * data.mvue[:, 1]) * data.scale[:, None, None], data.reference,
                       atol=1e-6 * np.abs(data.reference).max())
    # reference = MVUE of the stored full k-space with the stored maps (scanner units)
    from recon_core.mvue import mvue_from_kspace
    assert np.allclose(mvue_from_kspace(np.asarray(data.kspace), np.asarray(data.maps)), data.reference,
                       atol=1e-5 * np.abs(data.reference).max())
    seen = {}
    for r, ix in zip(data.records, data.index):
        assert r.anatomy == "brain" and r.contrast in ("T1", "T1POST", "T2", "FLAIR", "PD")
        assert r.tr and r.te and r.flip_angle and r.field_strength in (1.5, 3.0) and r.age and r.sex in "MF"
        # slice = the scanner's slice counter within the subject's scan (0, 1, ... in acquisition order);
        # the position in the virtual stack is kept in the index
        assert r.pathology is not None and r.slice == seen.get(ix["subject_seed"], 0)
        seen[ix["subject_seed"]] = r.slice + 1
        assert ix["stack_position"] == ix["slice_index"] and 0 <= ix["stack_position"] < export.STACK_SLICES
    info = json.loads((val_dir / "val" / "info.json").read_text())
    assert info["count"] == 5 and info["subjects"] == 3 and info["config"]["split"] == "val"
    assert not any(p.name.startswith(".") for p in val_dir.iterdir())     # no partial directory left


def test_splits_use_disjoint_subject_seeds(val_dir, tmp_path):
    simulate_dataset(tmp_path, ExportConfig(split="train", **CFG), progress=False)
    tr, va = load_split(tmp_path, "train"), load_split(val_dir, "val")
    assert tr.kspace is None                                           # train: k-space off by default
    s_tr = {i["subject_seed"] for i in tr.index}
    s_va = {i["subject_seed"] for i in va.index}
    assert s_tr and s_va and not (s_tr & s_va)
    seeds = {export.subject_seed(s, sp, i) for s in range(3) for sp in export.SPLITS for i in range(50)}
    assert len(seeds) == 3 * 3 * 50


def test_deterministic_resumable_and_worker_independent(val_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = export.simulate_subject

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(export, "CHECKPOINT_SECONDS", 0.0)
    monkeypatch.setattr(export, "simulate_subject", flaky)
    with pytest.raises(RuntimeError):
        simulate_dataset(tmp_path, ExportConfig(split="val", **CFG), progress=False)
    prog = json.loads((tmp_path / ".val.partial" / "progress.json").read_text())
    assert prog["subjects_done"] == 1 and not (tmp_path / "val").exists()
    simulate_dataset(tmp_path, ExportConfig(split="val", **CFG), progress=False)      # resumes at subject 1
    assert calls["n"] == 4
    a, b = load_split(tmp_path, "val"), load_split(val_dir, "val")
    assert np.array_equal(a.mvue, b.mvue) and np.array_equal(a.kspace, b.kspace)
    assert [r.to_dict() for r in a.records] == [r.to_dict() for r in b.records]
    monkeypatch.setattr(export, "simulate_subject", real)
    c_dir = tmp_path / "w2"
    simulate_dataset(c_dir, ExportConfig(split="val", **CFG), progress=False, workers=2)
    assert np.array_equal(load_split(c_dir, "val").mvue, b.mvue)


def test_cli_bad_input_exit_2(tmp_path):
    for args in (["--n-slices", "0"], ["--n-slices", "4", "--matrix", "63"], ["--n-slices", "4", "--calib", "4"]):
        p = subprocess.run([sys.executable, "-m", "gadget", "simulate-dataset", "--out", str(tmp_path / "d")] + args,
                           capture_output=True, text=True)
        assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    assert not (tmp_path / "d" / "train").exists()
