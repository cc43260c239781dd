"""`contextmri evaluate`: DDS (CFG sweep, metadata ablations, pathology, twin) vs classical baselines on a
held-out simulator split; writes OUTDIR/results.json, results.md and PNG figures (resumable)."""

NAME = "evaluate"
HELP = "evaluate DDS vs baselines on a simulator test split (ContextMRI Table-1 layout, ablations, figures)"


def _floats(text):
    from recon_core.errors import InputError

    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected a comma-separated list of numbers, got {text!r}") from None


def add_arguments(parser):
    parser.add_argument("--model", default="default", help="prior checkpoint directory or 'default'")
    parser.add_argument("--data", required=True, help="simulate-dataset directory (with test/ and val/ splits)")
    parser.add_argument("--out", required=True, help="output directory (results.json, results.md, figures, .cache/)")
    parser.add_argument("--masks", default="uniform1d:4,uniform1d:8,poisson2d:8,poisson2d:15",
                        help="comma list of KIND:ACCEL cells")
    parser.add_argument("--cfg", default="0,1,2,3", help="comma list of CFG weights (0 = unconditional)")
    from recon_core.samplers import SamplerConfig

    # the sampler's own flags (--nfe, --gamma, --warm-start, --precision, ...); --cfg is the sweep above,
    # --seed seeds masks and sampling, --samples is the uncertainty panel's sample count
    SamplerConfig.add_arguments(parser, exclude=("cfg", "samples", "seed"))
    parser.add_argument("--seed", type=int, default=0, help="mask and sampling seed")
    parser.add_argument("--limit", type=int, default=None, help="use K test slices spread over the split")
    parser.add_argument("--samples", type=int, default=4, help="posterior samples for the uncertainty panel")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    parser.add_argument("--batch", type=int, default=8, help="slices per DDS batch (and per cached chunk)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--val-split", default="val", help="split for λ tuning of the CS baselines")
    parser.add_argument("--tune-limit", type=int, default=4, help="validation slices used for λ tuning")
    parser.add_argument("--baselines", default=None,
                        help="comma list among zerofilled,sense,l1wavelet,l1wavelet-shift,tv,bart-w,bart-tv (default: all; BART's are "
                             "skipped with a note when the bart binary is missing, an error when named here)")
    parser.add_argument("--oracle-maps", action="store_true",
                        help="also DDS (best w) with the export's fully sampled ESPIRiT maps: where the maps limit")
    parser.add_argument("--no-ablations", action="store_true", help="skip the metadata ablations")
    parser.add_argument("--no-pathology", action="store_true", help="skip correct-vs-wrong pathology")
    parser.add_argument("--ablation-cfg", type=float, default=None,
                        help="CFG weight for ablations/pathology (default: each cell's best w > 0)")
    parser.add_argument("--ablation-masks", default=None,
                        help="comma list of cells (among --masks) for ablations/pathology (default: all cells)")
    parser.add_argument("--twin", default=None, help="unconditional twin checkpoint to compare against")
    parser.add_argument("--methods", default=None,
                        help="other prior samplers beside DDS, comma list among scoremri,ldpm (on --methods-limit "
                             "slices spread over the selection, paired with DDS on the same slices)")
    parser.add_argument("--calibration", default="", help="comma list of posterior sample counts K (e.g. 2,4,8): "
                        "per cell, DDS with K samples, its std scored against its actual error inside the head")
    parser.add_argument("--methods-limit", type=int, default=4, help="slices for --methods (they are slow)")
    parser.add_argument("--latent-model", default="default-latent", help="latent prior for ldpm")
    parser.add_argument("--convention", default="fastmri", choices=["fastmri", "contextmri"],
                        help="metric convention (see recon_core.metrics)")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _command(args):
    """The canonical command line of this run (all options explicit)."""
    import shlex

    skip = {"_run", "command", "debug", "quiet", "_dds_defaults"}
    parts = ["contextmri", "evaluate"]
    for k, v in sorted(vars(args).items()):
        if k in skip or v is None or v is False:
            continue
        flag = "--" + (k[4:] if k.startswith("dds_") else k).replace("_", "-")
        parts += [flag] if v is True else [flag, shlex.quote(str(v))]
    return " ".join(parts)


def run(args):
    from recon_core.device import set_threads
    from recon_core.samplers import SamplerConfig
    from training.evaluation import EvalConfig, run_evaluation

    set_threads(args.threads)

    cfg = EvalConfig(
        model=args.model, data=args.data, out=args.out,
        masks=tuple(m.strip() for m in args.masks.split(",") if m.strip()), cfg=_floats(args.cfg),
        sampler=SamplerConfig.from_args(args), samples=args.samples,
        limit=args.limit, seed=args.seed, device=args.device, batch=args.batch,
        split=args.split, val_split=args.val_split, tune_limit=args.tune_limit,
        baselines=tuple(b.strip() for b in args.baselines.split(",") if b.strip()) if args.baselines else None,
        oracle_maps=args.oracle_maps,
        ablations=not args.no_ablations, ablation_cfg=args.ablation_cfg,
        ablation_masks=tuple(m.strip() for m in args.ablation_masks.split(",") if m.strip()) if args.ablation_masks else None,
        pathology=not args.no_pathology,
        twin=args.twin, convention=args.convention, figures=not args.no_figures,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else (),
        methods_limit=args.methods_limit, latent_model=args.latent_model,
        calibration=tuple(int(k) for k in args.calibration.split(",") if k.strip()),
        command=_command(args))
    res = run_evaluation(cfg, progress=not args.quiet)
    for s in res["summary"]:
        line = [s["mask"]]
        if "cond_best_minus_uncond_psnr" in s:
            line.append(f"cond(w={s['best_cfg']:g})-uncond {s['cond_best_minus_uncond_psnr']['mean']:+.2f} dB")
        if "dds_minus_best_cs_psnr" in s:
            line.append(f"DDS-best classical ({s['best_cs']}) {s['dds_minus_best_cs_psnr']['mean']:+.2f} dB")
        print("  ".join(line))
    print(f"wrote {args.out}/results.md, results.json")
    return 0
