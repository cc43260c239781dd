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
    from recon_core.prior.checkpoint import load_prior
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
