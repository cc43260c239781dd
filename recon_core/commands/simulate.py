"""`contextmri simulate`: write one simulated brain scan as an ISMRMRD raw file (see recon_core.sim.scan)."""

NAME = "simulate"
HELP = "simulate a multi-coil brain scan (T1/T1POST/T2/FLAIR/PD) as an ISMRMRD raw .h5 with a reference image"


def add_arguments(p):
    p.add_argument("--out", required=True, help="output RAW.h5 (ISMRMRD; group 'dataset', images in 'reference')")
    p.add_argument("--contrast", default="T2", type=str.upper, choices=["T1", "T1POST", "T2", "FLAIR", "PD"])
    p.add_argument("--sequence", default=None, choices=["TurboSpinEcho", "Flash"],
                   help="T1/T1POST: Flash or TurboSpinEcho (default random); others are TurboSpinEcho")
    p.add_argument("--slices", type=int, default=1, help="number of axial slices")
    p.add_argument("--matrix", type=int, default=128, help="reconstructed matrix (square, even)")
    p.add_argument("--coils", type=int, default=8, help="receive channels")
    p.add_argument("--mask", default="equispaced1d", choices=["uniform1d", "equispaced1d", "gaussian1d", "poisson2d"],
                   help="phase-encode undersampling (poisson2d is refused: it undersamples within readouts)")
    p.add_argument("--accel", type=float, default=4.0, help="acceleration R (1 = fully sampled)")
    p.add_argument("--acs", type=int, default=None, help="number of ACS lines (default: the mask's, ≥ 8)")
    p.add_argument("--acs-mode", default="embedded", choices=["embedded", "separate"],
                   help="embedded: ACS lines flagged CALIBRATION_AND_IMAGING; separate: extra CALIBRATION-only lines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--field", type=float, default=None, choices=[1.5, 3.0], help="B0 in tesla (default: random)")
    p.add_argument("--pathology", default="none", help="none | wm_lesions | tumour")
    p.add_argument("--snr", type=float, default=30.0, help="SNR in dB (mean brain signal / noise std)")
    p.add_argument("--tr", type=float, default=None, help="TR (ms)")
    p.add_argument("--te", type=float, default=None, help="TE (ms)")
    p.add_argument("--ti", type=float, default=None, help="TI (ms, FLAIR only)")
    p.add_argument("--flip", type=float, default=None, help="flip angle (degrees)")
    p.add_argument("--fov", type=float, default=240.0, help="field of view (mm)")
    p.add_argument("--thickness", type=float, default=4.0, help="slice thickness (mm)")
    p.add_argument("--noise-readouts", type=int, default=4, help="noise-only readouts sent first")
    p.add_argument("--orientation", default="axial", choices=["axial", "sagittal", "coronal"],
                   help="slice orientation (slices from the 3-D head; the acquisitions' direction cosines match)")
    p.add_argument("--phase-rl", action="store_true",
                   help="phase encoding along the image's other in-plane axis (R→L for axial: the anatomy turned 90°)")


def run(args):
    import os

    from recon_core.errors import InputError
    from recon_core.sim.scan import simulate_scan, write_scan

    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise InputError(f"--out: directory {out_dir} does not exist")
    if os.path.isdir(args.out):
        raise InputError(f"--out: {args.out} is a directory; expected a file name such as RAW.h5")
    scan = simulate_scan(contrast=args.contrast, n_slices=args.slices, matrix=args.matrix, coils=args.coils,
                         mask=args.mask, accel=args.accel, seed=args.seed, field=args.field, pathology=args.pathology,
                         snr=args.snr, tr=args.tr, te=args.te, ti=args.ti, flip=args.flip, sequence=args.sequence,
                         acs_mode=args.acs_mode, acs_lines=args.acs, fov_mm=args.fov, thickness_mm=args.thickness,
                         noise_readouts=args.noise_readouts, orientation=args.orientation, phase_rl=args.phase_rl)
    write_scan(args.out, scan)
    p = scan.protocol
    ti = f" TI={p.ti:g}" if p.ti is not None else ""
    print(f"wrote {args.out}: {p.protocol_name} {p.sequence} TR={p.tr:g} TE={p.te:g}{ti} FA={p.flip:g} "
          f"{p.field:g}T, {scan.reference.shape[0]} {args.orientation} slice(s) {args.matrix}²"
          f"{' (phase R→L)' if args.phase_rl and args.orientation == 'axial' else ' (phase transposed)' if args.phase_rl else ''}, "
          f"{args.coils} coils, "
          f"{args.mask} R={scan.accel:.2f} ({len(scan.acs_lines)} ACS, {args.acs_mode}), "
          f"pathology={','.join(scan.pathology) or 'none'}")
    return 0
