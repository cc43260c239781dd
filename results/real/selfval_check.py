"""Self-validation against its classical candidates, slice by slice (issue 26 target: never worse than the
classical candidate by more than 0.2 dB).

    python results/real/selfval_check.py MODEL OUT.json [REAL_FILES...]

For each real file (all slices; masks regular1d:2:24, regular1d:3:24, uniform1d:4:0.08, uniform1d:6:0.08) and
each of the first 8 slices of the simulator's classic validation split (/work/data/sim128, uniform1d ×4
and ×8): PSNR of DDS alone, of SENSE and L1-wavelet (the classical candidates, default settings, the same maps),
and of the self-validated reconstruction (its choice recorded). Real slices are scored inside the head
against the fully sampled RSS (training/evaluation/real.py), simulator slices on the whole image against
the simulator's reference (fastMRI convention).
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import torch


def _row(name, spec, ref_fn, sd_like, prior, record_fn):
    from recon_core import baselines
    from recon_core.samplers import diffusion_sampler
    from recon_core.samplers import SamplerConfig

    ksp, maps, mask, records = sd_like
    out = {"slice": name, "mask": spec}
    for nm, meth in (("sense", "sense"), ("l1wavelet", "l1wavelet")):
        out[nm] = ref_fn(np.asarray(baselines.reconstruct(meth, ksp[None], maps[None], mask))[0])
    plain = diffusion_sampler("dds", validated=False)(prior, ksp[None], maps[None], mask, records=records,
                                                      config=SamplerConfig())
    out["dds"] = ref_fn(np.asarray(plain.image)[0])
    sv = diffusion_sampler("dds")(prior, ksp[None], maps[None], mask, records=records,
                                  config=SamplerConfig(self_validate=True))
    out["selfval"] = ref_fn(np.asarray(sv.image)[0])
    info = sv.timings["self_validation"][0]
    out["chosen"] = info.get("chosen", "skipped")
    out["classical_best"] = max(out["sense"], out["l1wavelet"])
    out["selfval_minus_classical"] = round(out["selfval"] - out["classical_best"], 3)
    out["selfval_minus_dds"] = round(out["selfval"] - out["dds"], 3)
    print(json.dumps(out), flush=True)
    return out


def main(model, out_path, files):
    from training.evaluation.real import load_real, undersample
    from recon_core.raw.image import scanner_units
    from recon_core.masks import make_mask
    from recon_core.metadata.header import record_from_header
    from recon_core.metrics import masked_metrics, psnr
    from recon_core.prior.cache import get_prior
    from recon_core.raw.image import slice_maps
    from recon_core.coils import espirit_maps
    from recon_core.sim.export import load_split

    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    prior = get_prior(model, "cpu")
    rows = []
    for f in files:
        for rs in load_real(f):
            rec = record_from_header(rs.header, slice_index=rs.sd.key.slice)
            for spec in ("regular1d:2:24", "regular1d:3:24", "uniform1d:4:0.08", "uniform1d:6:0.08"):
                sd, _ = undersample(rs.sd, spec)
                maps = slice_maps(sd)
                fn = lambda img, sd=sd, maps=maps, rs=rs: round(  # noqa: E731
                    masked_metrics(rs.reference, scanner_units(sd, maps, img), rs.region)["psnr"], 3)
                rows.append(_row(rs.name, spec, fn, (sd.kspace, maps, sd.mask, [rec]), prior, None))
    split = load_split("/work/data/sim128", "val")
    for i in range(8):
        for spec, acc in (("uniform1d:4", 4), ("uniform1d:8", 8)):
            m = make_mask("uniform1d", split.kspace.shape[-2:], acc, seed=1000 + i).mask
            k = (np.asarray(split.kspace[i]) * m[None]).astype(np.complex64)
            maps = np.asarray(espirit_maps(torch.from_numpy(k[None]), mask=m[None]))[0].astype(np.complex64)
            ref = np.asarray(split.reference[i])
            fn = lambda img, ref=ref: round(float(psnr(ref, img)), 3)  # noqa: E731
            rows.append(_row(f"sim-val#{i}", spec, fn, (k, maps, m, [split.records[i]]), prior, None))
    worst = min(r["selfval_minus_classical"] for r in rows)
    summary = {"model": model, "rows": rows, "worst_selfval_minus_classical": worst,
               "n_worse_than_classical_by_0.2": sum(r["selfval_minus_classical"] < -0.2 for r in rows),
               "mean_selfval_minus_dds": round(float(np.mean([r["selfval_minus_dds"] for r in rows])), 3)}
    with open(out_path, "w") as fh:
        json.dump(summary, fh, indent=1)
    print({k: v for k, v in summary.items() if k != "rows"})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] or ["tests/data/real/pulseq_invivo_flash.h5"])
