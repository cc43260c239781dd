"""The arguments and checks `contextmri train` and `contextmri train-vae` share (config, output, resume,
data, step/time limits, device, threads, progress)."""


def add_run_arguments(parser, what: str = "training") -> None:
    parser.add_argument("--config", help=f"{what} config YAML (default: the resumed run's config.yaml)")
    parser.add_argument("--out", help="output directory (model/, train_state/, log.csv, loss.png); "
                                      "default: the --resume directory")
    parser.add_argument("--resume", help="output directory (or its train_state/) of an earlier run to continue")
    parser.add_argument("--data", help="training data path (overrides data.path)")
    parser.add_argument("--max-steps", type=int, help="total optimiser steps (overrides train.max_steps)")
    parser.add_argument("--max-minutes", type=float, help="wall-time limit of this run; stops with a checkpoint")
    parser.add_argument("--device", help="auto|cpu|cuda (overrides train.device)")
    parser.add_argument("--threads", type=int, help="torch threads (overrides train.threads)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_config(args, command: str) -> str:
    """The config to run (--config, or the resumed run's config.yaml); InputError for missing or bad arguments."""
    import os

    from recon_core.errors import InputError

    config = args.config
    if config is None:
        if not args.resume or not os.path.isfile(os.path.join(args.resume, "config.yaml")):
            raise InputError(f"{command}: give --config YAML (or --resume DIR of a run that has config.yaml)")
        config = os.path.join(args.resume, "config.yaml")
    if args.out is None and args.resume is None:
        raise InputError(f"{command}: give --out DIR (or --resume DIR)")
    if args.max_steps is not None and args.max_steps < 1:
        raise InputError(f"--max-steps must be >= 1, got {args.max_steps}")
    return config
