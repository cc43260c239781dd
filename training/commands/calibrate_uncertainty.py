"""`contextmri calibrate-uncertainty`: fit the error-estimate calibration of a prior (issue 27) and store it in
the prior's manifest (key "uncertainty"), so the scanner's error-estimate series and expected-error meta use it."""

NAME = "calibrate-uncertainty"
HELP = "fit a prior's calibrated error estimate on simulator validation slices and write it into its manifest"


def add_arguments(parser):
    parser.add_argument("--model", default="default", help="prior checkpoint directory or 'default' (updated in place)")
    parser.add_argument("--slices", type=int, default=8, help="validation subjects")
    parser.add_argument("--accels", default="4,8", help="accelerations (uniform 1-D masks)")
    parser.add_argument("--samples", default="2,4", help="posterior sample counts K to fit")
    parser.add_argument("--coverage", type=float, default=0.92, help="±2σ coverage the factors are fitted for")
    parser.add_argument("--seed", type=int, default=100, help="first validation subject seed")
    parser.add_argument("--matrix", type=int, default=128, help="validation matrix (the evaluation's: 128)")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu|cuda|auto (the same seeded noise draws; a GPU is faster)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--dry-run", action="store_true", help="print the fit, do not write the manifest")


def run(args):
    import json

    from recon_core.device import set_threads
    from recon_core.errors import InputError
    from recon_core.io_utils import write_json_atomic
    from recon_core.prior.cache import get_prior
    from recon_core.prior.manifest import MANIFEST, resolve_model_path
    from training.calibrate import calibrate_uncertainty

    try:
        accels = tuple(float(v) for v in args.accels.split(",") if v.strip())
        samples = tuple(int(v) for v in args.samples.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--accels/--samples: comma-separated numbers, got {args.accels!r} / {args.samples!r}") from None
    set_threads(args.threads)
    directory = resolve_model_path(args.model)
    from recon_core.device import resolve_device

    device = str(resolve_device(args.device))
    prior = get_prior(args.model, device)
    cmd = (f"contextmri calibrate-uncertainty --model {args.model} --slices {args.slices} --accels {args.accels} "
           f"--samples {args.samples} --coverage {args.coverage} --seed {args.seed}")
    em = calibrate_uncertainty(prior, args.slices, accels, samples, args.seed, args.coverage, command=cmd,
                               matrix=args.matrix, coils=args.coils, device=device)
    print(json.dumps(em.to_json(), indent=1))
    if not args.dry_run:
        path = directory / MANIFEST
        manifest = json.loads(path.read_text())
        if (manifest.get("uncertainty") or {}).get("holdout_sbar"):
            # s̄(R) was measured against the old factors' error estimate: it no longer holds for the new ones
            print("the hold-out rescaling's s̄(R) was fitted against the previous factors and is dropped (off) until "
                  "refitted: results/calibration/holdout_scale.py OUT.jsonl, then --rules")
        manifest["uncertainty"] = em.to_json()
        write_json_atomic(path, manifest)
        print(f"wrote the calibration into {path}")
    return 0
