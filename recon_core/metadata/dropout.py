"""Classifier-free-guidance dropout on metadata records (pure functions; dropping = setting fields to None).

Modes:
- "contextmri": with probability `p_empty` the whole record is emptied (empty prompt / null tokens);
  otherwise the MR-parameter block (sequence, tr, te, ti, flip_angle) is dropped as one unit with
  probability `p_params` (ContextMRI's training recipe).
- "independent": with probability `p_empty` the whole record is emptied; otherwise every field is dropped
  independently with probability `p_field` ("Metadata Matters"; pass p_empty=0 for the pure per-field scheme).
- "none": records returned unchanged (copies).
Random numbers: a fixed number of draws per record from the numpy Generator, so results depend only on
the seed and the batch, not on which fields are present.
"""

from __future__ import annotations

import numpy as np

from recon_core.errors import InputError
from recon_core.metadata.record import PARAM_BLOCK_FIELDS, MetadataRecord

MODES = ("contextmri", "independent", "none")


def _check_p(name, p):
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise InputError(f"CFG dropout {name}: expected a probability in [0, 1], got {p}")
    return p


def apply_cfg_dropout(records, mode: str = "contextmri", p_empty: float = 0.1, p_params: float = 0.5,
                      p_field: float = 0.5, generator: np.random.Generator | int | None = None
                      ) -> list[MetadataRecord]:
    """Return new records with fields dropped for CFG training (inputs are not modified).

    `generator`: a numpy Generator (or an int seed; None → seed 0, so results are always reproducible).
    """
    if mode not in MODES:
        raise InputError(f"CFG dropout mode: expected one of {MODES}, got {mode!r}")
    p_empty, p_params, p_field = _check_p("p_empty", p_empty), _check_p("p_params", p_params), _check_p("p_field", p_field)
    rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(
        0 if generator is None else generator)
    recs = [r if isinstance(r, MetadataRecord) else MetadataRecord.from_dict(r) for r in records]
    if mode == "none":
        return [r.replace() for r in recs]
    names = MetadataRecord.field_names()
    out = []
    for r in recs:
        u_empty = rng.random()
        if mode == "contextmri":
            u_params = rng.random()
            if u_empty < p_empty:
                out.append(MetadataRecord())
            elif u_params < p_params:
                out.append(r.replace(**{f: None for f in PARAM_BLOCK_FIELDS}))
            else:
                out.append(r.replace())
        else:
            u = rng.random(len(names))
            if u_empty < p_empty:
                out.append(MetadataRecord())
            else:
                out.append(r.replace(**{f: None for f, ui in zip(names, u) if ui < p_field}))
    return out
