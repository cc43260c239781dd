"""Issue 27 experiment data: DDS with K=4 posterior samples (+ SENSE) on simulator val/test slices and the real brains."""
import os, sys, numpy as np, torch
from recon_core.prior.cache import get_prior
from recon_core.samplers.dds import dds_reconstruct
from recon_core.samplers import SamplerConfig
from recon_core.sim.export import ExportConfig, simulate_subject, subject_seed
from recon_core.metadata.record import MetadataRecord
from recon_core.masks import make_mask
from recon_core.coils import coil_maps
from recon_core.baselines import reconstruct
from recon_core.raw.retrospective import load_real, undersample, object_region
from recon_core.raw.image import scanner_units, slice_maps
from recon_core.metadata.header import record_from_header
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
which = sys.argv[1]
prior = get_prior("default", "cpu")
K = 4
cfg = SamplerConfig(samples=K)
out = {}
def sim(split, n, accels):
    for i in range(n):
        ec = ExportConfig(n_slices=1, split=split, matrix=128, coils=8, slices_per_subject=1, calib=24, save_kspace=True)
        r = simulate_subject(ec, subject_seed(100 + i, split, 0), 1)
        full, ref, rec = r["kspace"][0], r["reference"][0], MetadataRecord.from_dict(r["records"][0])
        for a in accels:
            m = make_mask("uniform1d", (128, 128), a, seed=i)
            k = (full * m.mask[None]).astype(np.complex64)
            maps = coil_maps(k[None], mask=m.mask)
            res = dds_reconstruct(prior, k[None], maps, m.mask, [rec], config=cfg, device="cpu")
            sense = np.asarray(reconstruct("sense", k[None], maps, m.mask))[0]
            key = f"{split}{i}_x{a}"
            out[key] = dict(ref=np.abs(ref), region=object_region(np.abs(ref)), samples=res.samples[:, 0], sense=sense, accel=a)
            print(key, flush=True)
def real(accels):
    for f in ("/work/realdata/ismrmrd/pulseq_invivo_flash.h5", "/work/realdata/ismrmrd/marcsous_head.h5"):
        rs = load_real(f)[0]
        for a in accels:
            sd, m = undersample(rs.sd, f"uniform1d:{a}:0.08", 0)
            maps = slice_maps(sd)
            rec = record_from_header(rs.header, slice_index=sd.key.slice)
            res = dds_reconstruct(prior, sd.kspace[None], maps[None], sd.mask, [rec], config=cfg, device="cpu")
            sense = np.asarray(reconstruct("sense", sd.kspace[None], maps[None], sd.mask))[0]
            smp = np.stack([scanner_units(sd, maps, s) for s in res.samples[:, 0]])
            key = f"real_{f.split('/')[-1][:6]}_x{a}"
            out[key] = dict(ref=rs.reference, region=rs.region, samples=smp, sense=scanner_units(sd, maps, sense), accel=a)
            print(key, flush=True)
if which == "val":
    sim("val", 8, (4, 8))
elif which == "test":
    sim("test", 8, (4, 8))
else:
    real((4, 6))
np.savez_compressed(f"{os.environ.get('CONTEXTMRI_CAL_DIR', '/work/runs/cal2')}/{which}.npz", **{f"{k}|{n}": v for k, d in out.items() for n, v in d.items()})
