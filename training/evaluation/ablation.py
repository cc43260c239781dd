"""Metadata ablations of the evaluation: cumulative field removal and wrong/unknown pathology."""

from __future__ import annotations

from recon_core.sim.pathology import LABELS, pathology_kind  # noqa: F401  (re-exported)

MR_PARAM_FIELDS = ("sequence", "tr", "te", "ti", "flip_angle", "field_strength")
ABLATIONS = ("all", "-mr", "-mr-contrast", "-mr-contrast-slice", "uncond")
ABLATION_LABELS = {"all": "all metadata", "-mr": "− MR params", "-mr-contrast": "− MR params − contrast",
                   "-mr-contrast-slice": "− MR params − contrast − slice", "uncond": "unconditional (w = 0)"}
WRONG_PATHOLOGY = {"none": "tumour", "wm_lesions": "tumour", "tumour": "wm_lesions"}


def drop_fields(record, variant: str):
    """Cumulative ablation of a MetadataRecord (see module docstring)."""
    kw = {}
    if variant in ("-mr", "-mr-contrast", "-mr-contrast-slice"):
        kw.update({f: None for f in MR_PARAM_FIELDS})
    if variant in ("-mr-contrast", "-mr-contrast-slice"):
        kw["contrast"] = None
    if variant == "-mr-contrast-slice":
        kw["slice"] = None
    return record.replace(**kw) if kw else record



def wrong_pathology(record):
    return record.replace(pathology=list(LABELS[WRONG_PATHOLOGY[pathology_kind(record)]]))


