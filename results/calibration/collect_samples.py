"""Issue 27 experiment data: DDS with K posterior samples (+ SENSE) on simulator val/test slices and the real brains.
Usage: python results/calibration/collect_samples.py {val,test,real} [THREADS] [K] [DEVICE] [KINDS]
(K default 4, DEVICE cpu, KINDS uniform1d (the test split's Table-1 cells: uniform1d,poisson2d); output
$CONTEXTMRI_CAL_DIR/{which}.npz, real files from $CONTEXTMRI_REAL_DIR)."""
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
K = int(sys.argv[3]) if len(sys.argv) > 3 else 4
DEV = sys.argv[4] if len(sys.argv) > 4 else "cpu"
KINDS = (sys.argv[5] if len(sys.argv) > 5 else "uniform1d").split(",")
prior = get_prior("default", DEV)
cfg = SamplerConfig(samples=K)
ACC = {"uniform1d": (4, 8), "poisson2d": (8, 15)}
out = {}
def save():   # after every case: a run cut short keeps what it finished
    np.savez_compressed(f"{os.environ.get('CONTEXTMRI_CAL_DIR', '/work/runs/cal2')}/{which}.npz",
                        **{f"{k}|{n}": v for k, d in out.items() for n, v in d.items()})
def sim(split, n, kinds):
    for i in range(n):
        ec = ExportConfig(n_slices=1, split=split, matrix=128, coils=8, slices_per_subject=1, calib=24, save_kspace=True)
        r = simulate_subject(ec, subject_seed(100 + i, split, 0), 1)
        full, ref, rec = r["kspace"][0], r["reference"][0], MetadataRecord.from_dict(r["records"][0])
        for kind, a in [(kd, a) for kd in kinds for a in ACC[kd]]:
            m = make_mask(kind, (128, 128), a, seed=i)
            k = (full * m.mask[None]).astype(np.complex64)
            maps = coil_maps(k[None], mask=m.mask)
            res = dds_reconstruct(prior, k[None], maps, m.mask, [rec], config=cfg, device=DEV)
            sense = np.asarray(reconstruct("sense", k[None], maps, m.mask))[0]
            key = f"{split}{i}_x{a}" if kind == "uniform1d" else f"{split}{i}_{kind}x{a}"
            out[key] = dict(ref=np.abs(ref), region=object_region(np.abs(ref)), samples=res.samples[:, 0], sense=sense, accel=a)
            print(key, flush=True)
            save()
def real(accels):
    rd = os.environ.get("CONTEXTMRI_REAL_DIR", "/work/realdata/ismrmrd")
    for f in (f"{rd}/pulseq_invivo_flash.h5", f"{rd}/marcsous_head.h5"):
        if not os.path.exists(f):
            print(f"skipping {f}: absent", flush=True)
            continue
        rs = load_real(f)[0]
        for a in accels:
            sd, m = undersample(rs.sd, f"uniform1d:{a}:0.08", 0)
            maps = slice_maps(sd)
            rec = record_from_header(rs.header, slice_index=sd.key.slice)
            res = dds_reconstruct(prior, sd.kspace[None], maps[None], sd.mask, [rec], config=cfg, device=DEV)
            sense = np.asarray(reconstruct("sense", sd.kspace[None], maps[None], sd.mask))[0]
            smp = np.stack([scanner_units(sd, maps, s) for s in res.samples[:, 0]])
            key = f"real_{f.split('/')[-1][:6]}_x{a}"
            out[key] = dict(ref=rs.reference, region=rs.region, samples=smp, sense=scanner_units(sd, maps, sense), accel=a)
            print(key, flush=True)
            save()
if which == "val":
    sim("val", 8, KINDS)
elif which == "test":
    sim("test", 8, KINDS)
else:
    real((4, 6))
save()
