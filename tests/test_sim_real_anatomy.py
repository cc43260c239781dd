"""Real-anatomy training export (issue 26): volumes read in scanner (RAS) orientation, rendered with the
scanner variety, simulated coils/noise, records, and the errors a bad volume directory gives."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from recon_core.errors import InputError
from recon_core.sim import real_anatomy as RA
from recon_core.sim import variety as V
from recon_core.sim.export import ExportConfig, _check, simulate_subject

pytestmark = pytest.mark.usefixtures("one_thread")

SEMI_MM = (70.0, 90.0, 80.0)      # head semi-axes along R, A, S (mm)
BLOB_RAS = (30.0, 40.0, 35.0)     # a bright blob right-anterior-superior of the centre


def _head_volume(shape=(64, 72, 64), vox=3.0):
    """(volume in RAS voxel order, RAS affine): an ellipsoid head (scalp shell, darker brain) and a blob."""
    X, Y, Z = shape
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float32)
    ras = (ijk - np.array([X / 2, Y / 2, Z / 2])) * vox
    r = np.sqrt(sum((ras[..., k] / SEMI_MM[k]) ** 2 for k in range(3)))
    vol = np.where(r < 1, 300.0, 0.0) - np.where(r < 0.85, 150.0, 0.0)
    vol += 500.0 * (np.linalg.norm(ras - np.array(BLOB_RAS), axis=-1) < 9)
    rng = np.random.default_rng(0)
    vol = np.abs(vol + rng.normal(0, 3, shape)).astype(np.float32)   # background noise, as a real magnitude has
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = -np.array([X / 2, Y / 2, Z / 2]) * vox
    return vol, aff


@pytest.fixture(scope="module")
def anatomy(tmp_path_factory):
    d = tmp_path_factory.mktemp("anat")
    vol, aff = _head_volume()
    nib.save(nib.Nifti1Image(vol, aff), str(d / "ras.nii.gz"))
    # the same head stored LPS-flipped (x, y reversed) with its axes permuted (z, x, y): loading must undo it
    X, Y, _ = vol.shape
    lpi = vol[::-1, ::-1, :]
    a_lpi = aff.copy()
    a_lpi[:3, 0], a_lpi[:3, 1] = -aff[:3, 0], -aff[:3, 1]
    a_lpi[:3, 3] = aff[:3, 3] + aff[:3, 0] * (X - 1) + aff[:3, 1] * (Y - 1)
    perm = np.ascontiguousarray(np.transpose(lpi, (2, 0, 1)))          # perm[a, b, c] = lpi[b, c, a]
    a_perm = a_lpi.copy()
    a_perm[:3, :3] = np.stack([a_lpi[:3, 2], a_lpi[:3, 0], a_lpi[:3, 1]], axis=1)
    nib.save(nib.Nifti1Image(perm, a_perm), str(d / "perm.nii.gz"))
    (d / "volumes.json").write_text(json.dumps([
        {"file": "ras.nii.gz", "contrast": "T1", "source": "test", "licence": "test"},
        {"file": "perm.nii.gz", "contrast": "FLAIR", "source": "test", "licence": "test"}]))
    return d


def _blob_ras(path):
    vol, head, aff, centroid = RA.load_volume(str(path))
    peak = np.argwhere(vol >= vol.max() * 0.95).mean(0)
    return (aff @ np.r_[peak, 1.0])[:3], vol, head, centroid


def test_volumes_load_in_scanner_orientation_normalised_with_background_zeroed(anatomy):
    entries = RA.load_manifest(anatomy)
    assert [e["contrast"] for e in entries] == ["T1", "FLAIR"]
    b1, vol, head, centroid = _blob_ras(entries[0]["path"])
    b2, vol2, _, _ = _blob_ras(entries[1]["path"])
    assert np.allclose(b1, BLOB_RAS, atol=4) and np.allclose(b2, BLOB_RAS, atol=4)
    assert vol.shape == vol2.shape                             # both canonical (RAS voxel order)
    assert np.allclose(np.percentile(vol[head], 99), 1.0, atol=0.05)
    assert vol[~head].max() < 0.05                             # the magnitude noise outside the head is gone
    assert np.allclose(centroid, 0, atol=4)


def test_rendered_slices_have_the_drawn_geometry(anatomy):
    entry = RA.load_manifest(anatomy)[0]
    for seed in (3, 5, 11, 17):
        v = V.draw_variety(seed)
        r = RA.render_real(entry, seed, 3, v)
        r2 = RA.render_real(entry, seed, 3, v)
        assert np.array_equal(r["x"], r2["x"])                   # deterministic in the seed
        M = v.render_matrix
        assert r["x"].shape == (3, M, M) and r["x"].dtype == np.complex64 and np.isfinite(r["x"]).all()
        assert r["brain"].sum() > 0 and not (r["brain"] & ~r["head"]).any()
        # the head's largest in-plane width matches its size in mm at the drawn pixel size (rotation ≤ 12°,
        # slices off-centre are narrower: compare the widest slice with the head's longest in-plane semi-axis)
        pix = v.fov_mm / M
        width_mm = max(max(h.any(0).sum(), h.any(1).sum()) for h in r["head"]) * pix
        ax = {"axial": (0, 1), "sagittal": (1, 2), "coronal": (0, 2)}[v.orientation]
        longest = 2 * max(SEMI_MM[k] for k in ax)
        assert 0.6 * longest < width_mm < 1.15 * longest / np.cos(np.deg2rad(RA.ROTATION_DEG)), (v, width_mm)


def test_real_export_subject(anatomy):
    cfg = ExportConfig(n_slices=2, variety="real", anatomy=str(anatomy), save_maps=False, coils=4)
    _check(cfg)
    seen = set()
    for seed in range(60, 66):
        r = simulate_subject(cfg, seed, 2)
        assert r["mvue"].shape == (2, 2, 128, 128) and np.isfinite(r["mvue"]).all()
        mag = np.hypot(r["mvue"][:, 0], r["mvue"][:, 1])
        assert np.allclose(np.percentile(mag.reshape(2, -1), 99, axis=1), 1.0, atol=0.02)
        rec, ix = r["records"][0], r["index"][0]
        assert rec["anatomy"] == "brain" and rec["contrast"] == ix["contrast"] in ("T1", "FLAIR")
        assert rec["sequence"] is None and rec["tr"] is None and rec["pathology"] is None
        assert [q["slice"] for q in r["records"]] == [0, 1]
        assert ix["variety"]["intensity"] == "real" and ix["variety"]["volume"] in ("ras.nii.gz", "perm.nii.gz")
        seen.add(ix["variety"]["volume"])
    assert len(seen) == 2
    g = V.export_geometry({"variety": "real"}, [{"variety": V.draw_variety(s).to_dict()} for s in range(50)])
    assert g["orientation"] == ["axial", "coronal", "sagittal"]


def test_bad_anatomy_directories_are_named(tmp_path, anatomy):
    with pytest.raises(InputError, match="volumes.json"):
        RA.load_manifest(tmp_path)
    (tmp_path / "volumes.json").write_text("[{")
    with pytest.raises(InputError, match="not valid JSON"):
        RA.load_manifest(tmp_path)
    (tmp_path / "volumes.json").write_text(json.dumps([{"contrast": "T1"}]))
    with pytest.raises(InputError, match="entry 0 has no 'file'"):
        RA.load_manifest(tmp_path)
    (tmp_path / "volumes.json").write_text(json.dumps([{"file": "missing.nii.gz"}]))
    with pytest.raises(InputError, match="missing.nii.gz"):
        RA.load_manifest(tmp_path)
    (tmp_path / "junk.nii.gz").write_bytes(b"not a volume")
    (tmp_path / "volumes.json").write_text(json.dumps([{"file": "junk.nii.gz", "sha256": "0" * 64}]))
    RA.load_manifest(tmp_path)
    with pytest.raises(InputError, match="SHA-256"):
        RA.load_manifest(tmp_path, verify=True)
    with pytest.raises(InputError, match="junk.nii.gz"):
        RA.load_volume(str(tmp_path / "junk.nii.gz"))
    with pytest.raises(InputError, match="--anatomy"):
        _check(ExportConfig(n_slices=2, variety="real"))
    with pytest.raises(InputError, match="only with variety real"):
        _check(ExportConfig(n_slices=2, anatomy=str(anatomy)))


def test_cli_refuses_real_variety_without_volumes(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gadget", "simulate-dataset", "--out", str(tmp_path / "o"),
                        "--n-slices", "2", "--variety", "real"], capture_output=True, text=True)
    assert p.returncode == 2 and "--anatomy" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_real_export_loads_as_training_data(tmp_path, anatomy):
    from recon_core.sim.export import simulate_dataset
    from training.datasets import load_export

    cfg = ExportConfig(n_slices=2, variety="real", anatomy=str(anatomy), coils=4, slices_per_subject=2,
                       save_maps=False)
    info = simulate_dataset(tmp_path / "exp", cfg, progress=False)
    assert info["count"] == 2 and info["config"]["anatomy"] == str(anatomy)
    ds = load_export(tmp_path / "exp", "train")
    assert len(ds) == 2 and ds.resolution == (128, 128)
    assert ds.geometry["orientation"][0] in V.ORIENTATIONS and 180 <= ds.fov_mm[0] <= 300
    assert ds.records[0].contrast in ("T1", "FLAIR")
