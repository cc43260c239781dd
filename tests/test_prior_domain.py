"""The prior's training domain: summarised at training time into the manifest, compared with each scan
(matrix, anatomy, contrast, field strength, FOV), said in the log and image meta (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from recon_core.metadata.record import MetadataRecord
from recon_core.prior.domain import describe_domain, domain_warnings


def _records():
    return [MetadataRecord(anatomy="brain", contrast=c, field_strength=f) for c in ("T1", "T2") for f in (1.5, 3.0)]


def test_describe_domain_lists_what_was_seen():
    d = describe_domain(_records(), fov_mm=240.0, matrix=(128, 128))
    assert d == {"anatomy": ["brain"], "contrast": ["T1", "T2"], "field_strength": [1.5, 3.0],
                 "fov_mm": [240.0, 240.0], "matrix": [128, 128], "count": 4}


@pytest.mark.parametrize("record, fov, shape, expect", [
    (MetadataRecord(anatomy="brain", contrast="T2", field_strength=3.0), (240, 240), (128, 128), []),
    (MetadataRecord(anatomy="knee", contrast="T2"), (240, 240), (128, 128), ["anatomy 'knee'"]),
    (MetadataRecord(anatomy="brain", contrast="PDFS"), (240, 240), (128, 128), ["contrast 'PDFS'"]),
    (MetadataRecord(anatomy="brain", field_strength=7.0), (240, 240), (128, 128), ["field strength 7 T"]),
    (MetadataRecord(anatomy="brain"), (160, 160), (128, 128), ["field of view 160×160 mm"]),
    (MetadataRecord(anatomy="brain"), (240, 240), (256, 256), ["trained on 128×128"]),
    (MetadataRecord(), None, (128, 128), []),                      # nothing known: nothing claimed
])
def test_domain_warnings_name_each_departure(record, fov, shape, expect):
    d = describe_domain(_records(), fov_mm=240.0, matrix=(128, 128))
    got = domain_warnings(d, record, fov, shape)
    assert len(got) == len(expect) and all(e in g for e, g in zip(expect, got)), got


def test_training_stores_the_domain_and_the_processor_reports_a_departure(tmp_path, caplog):
    """A tiny prior trained on brain T1/T2 records: its manifest holds the domain; a knee scan through the
    stream processor is reconstructed, with the departure in the log and in image meta."""
    import logging

    from gadget.params import ReconParams
    from gadget.replay import replay
    from recon_core.prior.model import load_prior
    from recon_core.sim import simulate_scan, write_scan
    from tests.test_training import tiny_cfg
    from training.datasets import ImageDataset
    from training.loop import train

    rng = np.random.default_rng(0)
    imgs = rng.standard_normal((4, 2, 32, 32)).astype(np.float32)
    res = train(tiny_cfg(), out=tmp_path / "run", dataset=ImageDataset(imgs, _records(), fov_mm=240.0),
                progress=False, max_steps=1)
    prior = load_prior(res.out / "model")
    dom = prior.manifest["training"]["domain"]
    assert dom["anatomy"] == ["brain"] and dom["contrast"] == ["T1", "T2"] and dom["fov_mm"] == [240.0, 240.0]

    f = write_scan(str(tmp_path / "s.h5"), simulate_scan("T2", matrix=32, coils=4, seed=0))
    params = ReconParams(method="dds", device="cpu", nfe=2, anatomy="knee")
    with caplog.at_level(logging.WARNING):
        out = replay(f, None, params, prior=prior, progress=False)
    msg = out.images[0].meta["prior_domain_warning"]
    assert "anatomy 'knee' was not in the prior's training data" in msg and "fine-tune" in msg
    assert any("anatomy 'knee'" in r.getMessage() for r in caplog.records)


def test_scanner_domain_check_nominal_field_orientation_pixel_size():
    """Issue 26 item 4: 2.89 T is a 3 T scan; orientation, phase-encoding direction and pixel size are
    compared where the domain records them; each departure is one sentence."""
    from types import SimpleNamespace

    from recon_core.metadata.record import MetadataRecord
    from recon_core.prior.domain import domain_warnings, nominal_field, scan_geometry

    assert nominal_field(2.89362) == 3.0 and nominal_field(1.494) == 1.5 and nominal_field(0.55) == 0.55
    assert nominal_field(2.0) == 2.0
    dom = {"anatomy": ["brain"], "contrast": ["T1"], "field_strength": [1.5, 3.0], "fov_mm": [180.0, 300.0],
           "matrix": [128, 128], "orientation": ["axial"], "phase_encoding": ["AP"], "pixel_mm": [0.8, 2.3]}
    axial_ap = SimpleNamespace(slice_dir=(0, 0, 1), phase_dir=(0, 1, 0))
    rec = MetadataRecord(anatomy="brain", contrast="T1", field_strength=2.89362)
    assert domain_warnings(dom, rec, (256.0, 256.0), (256, 256), 128, head=axial_ap) == []   # 1 mm pixels, 256²: fine
    sag_si = SimpleNamespace(slice_dir=(1, 0, 0), phase_dir=(0, 0.1, -0.99))
    assert scan_geometry(sag_si, (256.0, 256.0), (128, 128)) == {"orientation": "sagittal", "phase_encoding": "SI",
                                                                 "pixel_mm": 2.0}
    w = domain_warnings(dom, rec, (240.0, 240.0), (64, 64), 128, head=sag_si)
    assert len(w) == 3
    assert any("pixel size 3.75 mm" in s for s in w) and any("orientation sagittal" in s for s in w)
    assert any("phase-encoding direction SI" in s for s in w)
    w = domain_warnings(dom, MetadataRecord(field_strength=7.0), None, None, 128)
    assert w == ["field strength 7 T (nominal 7 T) was not in the prior's training data (1.5 T, 3 T)"]
    # a domain without pixel sizes (older priors): the matrix rule as before
    old = {k: v for k, v in dom.items() if k not in ("pixel_mm", "orientation", "phase_encoding")}
    assert domain_warnings(old, None, None, (256, 256), 128) == \
        ["the prior was trained on 128×128 images; this scan is 256×256"]
