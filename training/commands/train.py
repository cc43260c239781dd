"""`contextmri train`: train / resume / LoRA-fine-tune the prior from a YAML config (runs unchanged
under `torchrun` and `accelerate launch`)."""

NAME = "train"
HELP = "train the diffusion prior from a YAML config (training/configs/*.yaml); --resume DIR continues exactly"


def add_arguments(parser):
    parser.add_argument("--config", help="training config YAML (default: the resumed run's config.yaml)")
    parser.add_argument("--out", help="output directory (model/, train_state/, log.csv, loss.png); "
                                      "default: the --resume directory")
    parser.add_argument("--resume", help="output directory (or its train_state/) of an earlier run to continue")
    parser.add_argument("--data", help="training data path (overrides data.path)")
    parser.add_argument("--vae", help="MR-VAE directory (train-vae's OUT/model): train a latent prior (overrides latent_vae)")
    parser.add_argument("--max-steps", type=int, help="total optimiser steps (overrides train.max_steps)")
    parser.add_argument("--max-minutes", type=float, help="wall-time limit of this run; stops with a checkpoint")
    parser.add_argument("--device", help="auto|cpu|cuda (overrides train.device)")
    parser.add_argument("--threads", type=int, help="torch threads (overrides train.threads)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    import os

    from recon_core.errors import InputError
    from training.loop import train

    config = args.config
    if config is None:
        if not args.resume or not os.path.isfile(os.path.join(args.resume, "config.yaml")):
            raise InputError("train: give --config YAML (or --resume DIR of a run that has config.yaml)")
        config = os.path.join(args.resume, "config.yaml")
    if args.out is None and args.resume is None:
        raise InputError("train: give --out DIR (or --resume DIR)")
    if args.max_steps is not None and args.max_steps < 1:
        raise InputError(f"--max-steps must be >= 1, got {args.max_steps}")
    res = train(config, out=args.out, resume=args.resume, max_steps=args.max_steps, device=args.device,
                max_minutes=args.max_minutes, progress=not args.no_progress,
                overrides={"train.threads": args.threads, "data.path": args.data, "latent_vae": args.vae})
    if res.rank == 0:
        last = f"{res.losses[-1]:.4f}" if res.losses else "n/a"
        print(f"stopped at step {res.step} ({res.reason}); last loss {last}; "
              f"{res.seconds_per_step:.3f} s/step; model: {res.out / 'model'}; resume with --resume {res.out}")
    return 0
