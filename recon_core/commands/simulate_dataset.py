"""`contextmri simulate-dataset`: export a split of simulated slices for training/evaluation (recon_core.sim.export)."""

import os

NAME = "simulate-dataset"
HELP = "export simulated MVUE slices + coil maps + metadata (train/val/test from disjoint subject seeds)"


def add_arguments(p):
    p.add_argument("--out", required=True, help="output directory DIR (writes DIR/<split>/)")
    p.add_argument("--n-slices", type=int, required=True, help="number of slices in the split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--matrix", type=int, default=128)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--slices-per-subject", type=int, default=8)
    p.add_argument("--calib", type=int, default=24, help="ACS (calibration) block side for ESPIRiT")
    p.add_argument("--snr", type=float, nargs=2, default=(25.0, 38.0), metavar=("LO", "HI"), help="SNR range (dB)")
    p.add_argument("--field", type=float, default=None, choices=[1.5, 3.0], help="B0 (default: random per subject)")
    p.add_argument("--contrasts", default="T1,T1POST,T2,FLAIR,PD", help="comma list")
    p.add_argument("--kspace", dest="kspace", action="store_true", default=None, help="save kspace.npy")
    p.add_argument("--no-kspace", dest="kspace", action="store_false", help="do not save kspace.npy")
    p.add_argument("--no-maps", action="store_true", help="do not save maps.npy")
    p.add_argument("--espirit-grid", default="half", choices=["half", "full"],
                   help="half: ESPIRiT on every second pixel + upsampling (~5x faster, 0.3%% MVUE difference)")
    p.add_argument("--variety", default="none", choices=["none", "scanner", "real"],
                   help="scanner: domain randomisation per subject (orientation, in-plane transform, FOV/pixel size "
                        "with 128² windows of larger grids, SNR 20–50 dB, bias, fine warp, GRE family, random "
                        "tissue intensities; recon_core/sim/variety.py); real: slices of the real magnitude volumes "
                        "in --anatomy with the same geometry variety, simulated phase, coils and noise "
                        "(recon_core/sim/real_anatomy.py)")
    p.add_argument("--anatomy", default=None, metavar="DIR",
                   help="with --variety real: directory of NIfTI volumes and their volumes.json "
                        "([{file, contrast, source, licence}])")
    p.add_argument("--workers", type=int, default=2, help="worker processes (output identical for any value)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR/<split> with another config")
    p.add_argument("--no-progress", action="store_true")


def run(args):
    from recon_core.errors import InputError
    from recon_core.sim.export import ExportConfig, simulate_dataset

    if args.workers < 1:
        raise InputError(f"--workers must be ≥ 1, got {args.workers}")
    cfg = ExportConfig(n_slices=args.n_slices, seed=args.seed, split=args.split, matrix=args.matrix, coils=args.coils,
                       slices_per_subject=args.slices_per_subject, calib=args.calib, snr=tuple(args.snr),
                       field=args.field, contrasts=tuple(c.strip().upper() for c in args.contrasts.split(",") if c.strip()),
                       save_kspace=args.kspace, save_maps=not args.no_maps, espirit_grid=args.espirit_grid,
                       variety=args.variety, anatomy=os.path.abspath(args.anatomy) if args.anatomy else None)
    info = simulate_dataset(args.out, cfg, progress=not args.no_progress, workers=args.workers,
                            overwrite=args.overwrite)
    print(f"wrote {args.out}/{args.split}: {info['count']} slices from {info['subjects']} subjects "
          f"({info['matrix']}², {info['coils']} coils), {info['slices_per_second']} slices/s")
    return 0
