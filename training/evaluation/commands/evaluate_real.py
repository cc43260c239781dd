"""`contextmri evaluate-real`: DDS vs every classical method (each at its best setting) on fully sampled real
raw files, retrospectively undersampled; reference = root-sum-of-squares of the full data (noise bias removed
unless `--reference rss`; `truth` for simulated files), scored inside the object (training/evaluation/real.py).
Writes OUT/results.json and OUT/results.md."""

NAME = "evaluate-real"
HELP = "evaluate on fully sampled real raw files (retrospective undersampling, RSS reference, object region)"


def add_arguments(parser):
    parser.add_argument("files", nargs="+", help="fully sampled ISMRMRD raw files (.h5); a missing or unreadable "
                                                 "file is skipped with a note")
    parser.add_argument("--model", default="default", help="prior checkpoint directory or 'default'")
    parser.add_argument("--out", required=True, help="output directory (results.json, results.md)")
    parser.add_argument("--masks", default="regular1d:2:24,regular1d:3:24,uniform1d:4:0.08,uniform1d:6:0.08",
                        help="comma list of KIND:ACCEL[:ACS] (ACS: lines, or a fraction < 1)")
    parser.add_argument("--methods", default="zerofilled,sense,grappa,l1wavelet,l1wavelet-shift,bart-w,bart-tv",
                        help="classical methods (each at its best λ on the slice; BART also with its own maps)")
    from recon_core.raw.retrospective import REFERENCES

    parser.add_argument("--reference", default="unbiased", choices=REFERENCES,
                        help="unbiased: the RSS of the full data with its noise bias removed, √max(RSS² − P, 0) "
                             "(default); rss: the plain RSS (sessions 8–17); truth: the noiseless image a simulated "
                             "file carries (a file without one is skipped with a note)")
    parser.add_argument("--diffusion", default="dds", help="comma list of prior methods (dds; '' for none)")
    from recon_core.samplers import SamplerConfig

    SamplerConfig.add_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="auto|cpu|cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _list(text):
    return tuple(m.strip() for m in text.split(",") if m.strip())


def run(args):
    import os

    from recon_core.device import set_threads
    from recon_core.errors import InputError
    from recon_core.io_utils import write_json_atomic, write_text_atomic
    from recon_core.samplers import SamplerConfig
    from training.evaluation.real import CLASSICAL, evaluate_real, format_markdown

    set_threads(args.threads)
    methods, diff = _list(args.methods), _list(args.diffusion)
    bad = [m for m in methods if m not in CLASSICAL]
    if bad:
        raise InputError(f"--methods: unknown {bad}; expected some of {', '.join(CLASSICAL)}")
    prior = None
    if diff:
        from recon_core.prior.cache import get_prior

        prior = get_prior(args.model, args.device)
    cfg = SamplerConfig.from_args(args)
    res = evaluate_real(args.files, masks=_list(args.masks), prior=prior, config=cfg, seed=cfg.seed,
                        progress=not args.quiet, methods=methods, diffusion_methods=diff,
                        reference=args.reference)
    res["model"] = args.model
    os.makedirs(args.out, exist_ok=True)
    write_json_atomic(os.path.join(args.out, "results.json"), res, indent=1, default=float)
    md = format_markdown(res, main=diff[0] if diff else None)
    write_text_atomic(os.path.join(args.out, "results.md"), md)
    curves = {f"{name} {spec} {what}": c[diff[0]][key]["reliability"] for name, r in res["results"].items()
              for spec, c in r["cells"].items() for key, what in (("calibration", "std"), ("error_estimate", "est."))
              if diff and (c.get(diff[0]) or {}).get(key)}
    if curves:   # posterior samples: the reliability diagram
        from training.evaluation.figures import reliability_figure

        reliability_figure(curves, os.path.join(args.out, "reliability.png"),
                           f"{diff[0]}: posterior std and error estimate ({cfg.samples} samples) vs error in the head")
    for note in res["skipped"]:
        print(note)
    print(md)
    return 0
