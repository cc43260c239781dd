"""Evaluation and benchmark applications on top of recon_core (imports recon_core; recon_core's library
modules never import this package).

    config     EvalConfig (cells, CFG weights, baselines, the SamplerConfig sampler settings)
    harness    Evaluation: cells, baselines (λ tuned on validation), DDS runs, ablations, twin, oracle maps
    cache      UnitCache: resumable per-unit results in OUTDIR/.cache
    report     results.md;   figures: PNG figures;   stats / ablation: small pure helpers
    bench      `contextmri bench`: where the time of one DDS slice goes, against BART and sigpy
"""

from .ablation import drop_fields, pathology_kind, wrong_pathology
from .config import BASELINES, CLASSICAL_CS, DEFAULT_CFG, DEFAULT_MASKS, LAMBDA_GRID, EvalConfig
from .harness import CellData, Evaluation, run_evaluation

__all__ = ["BASELINES", "CLASSICAL_CS", "DEFAULT_CFG", "DEFAULT_MASKS", "LAMBDA_GRID", "CellData", "EvalConfig",
           "Evaluation", "drop_fields", "pathology_kind", "run_evaluation", "wrong_pathology"]
