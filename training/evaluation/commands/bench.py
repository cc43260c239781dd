"""`contextmri bench`: time per slice (I/O, ESPIRiT, network, CG) vs the network floor, sigpy L1-wavelet and
BART, peak memory, and PSNR at NFE 10/20/50 with fp32 and bf16."""

import statistics

from recon_core.settings import DTYPE_PRECISIONS, ENGINE_CHOICES, PRECISIONS

NAME = "bench"
HELP = "benchmark one DDS slice: time split, network floor ratio, memory, vs sigpy L1-wavelet and bart"


def add_arguments(parser):
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--model", default="default", help="prior checkpoint directory or 'default'")
    src.add_argument("--preset", default=None, help="time an untrained prior preset instead (e.g. cpu-128; PSNR meaningless)")
    parser.add_argument("--matrix", type=int, default=None, help="matrix size (default: the model's resolution)")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--compress-coils-above", type=int, default=16,
                        help="SVD coil compression (99 %% energy) above this many coils, as the product does")
    parser.add_argument("--nfe", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--mask", default="uniform1d:4", help="KIND:ACCEL")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    parser.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                        help="network precision of the main run (auto: timed trial; the choice is in the JSON)")
    parser.add_argument("--engine", default="auto", choices=list(ENGINE_CHOICES),
                        help="network runtime of the main run (auto: timed trial of every installed engine)")
    parser.add_argument("--levers", action="store_true",
                        help="also time every (engine, precision) separately: forward, DDS slice, PSNR change")
    parser.add_argument("--series", type=int, default=0, metavar="N",
                        help="instead: the wall time of an N-slice series through the scanner's reader and per-slice "
                             "path with the product settings (target ≤ 3 s per slice)")
    parser.add_argument("--slice-batch", type=int, default=1, metavar="N",
                        help="--series: N slices per sampler call (the stream processor's slice_batch)")
    parser.add_argument("--no-self-validate", action="store_true",
                        help="--series: without the front doors' per-series self-validation (DDS alone)")
    parser.add_argument("--memory", action="store_true",
                        help="--series: also replay the file through the product (contextmri replay, a child process) "
                             "and report its peak memory (issue 23: 20 slices × 32 coils ≤ 1 GB)")
    parser.add_argument("--reference", default=None, metavar="MATRIX:COILS",
                        help="also time a reference slice in the same run (e.g. 128:8) and report slice / reference "
                             "(issue 23: a 256² 32-coil slice ≤ 4× a 128² 8-coil one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", default="10,20,50", help="NFE values for the PSNR/time sweep ('' to skip)")
    parser.add_argument("--sweep-precisions", default="fp32,bf16")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repeats for the ESPIRiT, forward and DDS-slice timings (median)")
    parser.add_argument("--no-bart", action="store_true", help="skip bart even if installed")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    parser.add_argument("--json", default=None, help="write the results as JSON here")
    parser.add_argument("--quiet", action="store_true")


def run(args):
    from recon_core.errors import InputError
    from training.evaluation.bench import format_report, run_bench

    try:
        sweep = tuple(int(v) for v in args.sweep.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--sweep: expected comma-separated integers, got {args.sweep!r}") from None
    precs = tuple(p.strip() for p in args.sweep_precisions.split(",") if p.strip())
    bad = [p for p in precs if p not in DTYPE_PRECISIONS]
    if bad:
        raise InputError(f"--sweep-precisions: unknown {bad}, expected fp32, bf16, fp16")
    from recon_core.device import set_threads

    set_threads(args.threads)
    if args.repeat < 1:
        raise InputError(f"--repeat must be ≥ 1, got {args.repeat}")
    if args.series:
        from training.evaluation.bench_series import format_series_report, run_series_bench

        res = run_series_bench(args.series, model=None if args.preset else args.model, preset=args.preset,
                               matrix=args.matrix or 128, coils=args.coils, mask=args.mask, device=args.device,
                               precision=args.precision, engine=args.engine, seed=args.seed,
                               use_bart=not args.no_bart, progress=not args.quiet,
                               log=(lambda *a: None) if args.quiet else print, slice_batch=args.slice_batch,
                               self_validate=not args.no_self_validate, memory=args.memory)
        return _report(format_series_report(res), res, args.json)
    ref = None
    if args.reference:
        try:
            ref = tuple(int(v) for v in args.reference.split(":"))
            assert len(ref) == 2 and min(ref) > 0
        except (ValueError, AssertionError):
            raise InputError(f"--reference: expected MATRIX:COILS (e.g. 128:8), got {args.reference!r}") from None
    common = dict(model=None if args.preset else args.model, preset=args.preset, nfe=args.nfe, cfg=args.cfg,
                  mask=args.mask, device=args.device, precision=args.precision, engine=args.engine, seed=args.seed,
                  repeat=args.repeat, progress=not args.quiet, log=(lambda *a: None) if args.quiet else print,
                  compress_coils_above=args.compress_coils_above)
    ta, tb = {}, {}
    res = run_bench(matrix=args.matrix, coils=args.coils, levers=args.levers, sweep=sweep, sweep_precisions=precs,
                    use_bart=not args.no_bart, timers=ta, **common)
    text = format_report(res)
    if ref:   # the same process, settings and machine state: the ratio the issue asks for
        r = run_bench(matrix=ref[0], coils=ref[1], levers=False, sweep=(), use_bart=False, timers=tb, **common)
        a, b = res["time_s"], r["time_s"]
        # then `repeat` interleaved pairs (this slice, reference, this slice, …): a drift of the machine's speed
        # hits both sides of a pair alike, so the median of the pair ratios is the steadier figure
        pairs = [(ta["slice"](), tb["slice"]()) for _ in range(args.repeat)]
        ratios = [x / y for x, y in pairs]
        res["reference"] = {"matrix": ref[0], "coils": ref[1], "time_s": b,
                            "slice_ratio": a["slice_total"] / b["slice_total"],
                            "network_ratio": a["network"] / b["network"],
                            "paired": {"slice_s": [x for x, _ in pairs], "reference_s": [y for _, y in pairs],
                                       "ratios": ratios, "median_ratio": statistics.median(ratios)}}
        text += (f"\nreference {ref[0]}² {ref[1]} coils: slice {b['slice_total']:.3f} s (network {b['network']:.3f}); "
                 f"this slice / reference = {res['reference']['slice_ratio']:.2f}× (network alone "
                 f"{res['reference']['network_ratio']:.2f}×); {len(pairs)} interleaved pairs: median "
                 f"{statistics.median(ratios):.2f}× (" + ", ".join(f"{v:.2f}" for v in ratios) + ")")
    return _report(text, res, args.json)


def _report(text: str, res: dict, json_path) -> int:
    import json

    print(text)
    if json_path:
        from recon_core.io_utils import write_text_atomic

        write_text_atomic(json_path, json.dumps(res, indent=1))
        print(f"wrote {json_path}")
    return 0
