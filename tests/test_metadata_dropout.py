"""CFG dropout on records: rates as configured (fixed seed, statistical bounds), purity, reproducibility."""

import numpy as np
import pytest

from recon_core.errors import InputError
from recon_core.metadata.dropout import apply_cfg_dropout
from recon_core.metadata.record import PARAM_BLOCK_FIELDS, MetadataRecord

FULL = MetadataRecord(anatomy="knee", slice=20, contrast="PDFS", sequence="TurboSpinEcho", tr=3120, te=33, ti=100,
                      flip_angle=140, field_strength=3, age=40, sex="F", pathology=["Meniscus Tear"])
N = 20000


def _bound(p, n):
    return 4.5 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_contextmri_mode_rates():
    recs = [FULL] * N
    out = apply_cfg_dropout(recs, mode="contextmri", p_empty=0.1, p_params=0.5, generator=np.random.default_rng(7))
    empty = np.array([r.is_empty() for r in out])
    assert abs(empty.mean() - 0.1) < _bound(0.1, N)
    kept = [r for r in out if not r.is_empty()]
    params_dropped = np.array([all(getattr(r, f) is None for f in PARAM_BLOCK_FIELDS) for r in kept])
    assert abs(params_dropped.mean() - 0.5) < _bound(0.5, len(kept))
    # the block goes as one unit, the rest stays
    for r in kept:
        assert len({getattr(r, f) is None for f in PARAM_BLOCK_FIELDS}) == 1
        assert (r.anatomy, r.slice, r.contrast, r.pathology) == ("knee", 20, "PDFS", ["Meniscus Tear"])
    assert recs[0] == FULL and recs[0].tr == 3120.0  # inputs untouched


@pytest.mark.parametrize("p_field,p_empty", [(0.5, 0.0), (0.2, 0.1)])
def test_independent_mode_rates(p_field, p_empty):
    out = apply_cfg_dropout([FULL] * N, mode="independent", p_empty=p_empty, p_field=p_field,
                            generator=np.random.default_rng(3))
    empty = np.array([r.is_empty() for r in out])
    p_all = p_empty + (1 - p_empty) * p_field ** len(MetadataRecord.field_names())
    assert abs(empty.mean() - p_all) < _bound(p_all, N)
    for name in MetadataRecord.field_names():
        rate = np.mean([getattr(r, name) is None for r in out])
        expected = p_empty + (1 - p_empty) * p_field
        assert abs(rate - expected) < _bound(expected, N), name
    # fields dropped independently: joint rate of two fields ≈ product
    both = np.mean([(r.tr is None) and (r.contrast is None) for r in out if not r.is_empty()])
    assert abs(both - p_field ** 2) < 0.02


def test_reproducible_and_none_mode():
    a = apply_cfg_dropout([FULL] * 50, "independent", generator=np.random.default_rng(1))
    b = apply_cfg_dropout([FULL] * 50, "independent", generator=np.random.default_rng(1))
    c = apply_cfg_dropout([FULL] * 50, "independent", generator=np.random.default_rng(2))
    assert a == b and a != c
    assert apply_cfg_dropout([FULL.to_dict()], "none") == [FULL]
    with pytest.raises(InputError, match="mode"):
        apply_cfg_dropout([FULL], "sometimes")
    with pytest.raises(InputError, match="p_empty"):
        apply_cfg_dropout([FULL], p_empty=1.5)
