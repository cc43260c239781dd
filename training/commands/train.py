"""`contextmri train`: train / resume / LoRA-fine-tune the prior from a YAML config (runs unchanged
under `torchrun` and `accelerate launch`)."""

NAME = "train"
HELP = "train the diffusion prior from a YAML config (training/configs/*.yaml); --resume DIR continues exactly"


def add_arguments(parser):
    from training.commands.run_args import add_run_arguments

    add_run_arguments(parser, "training")
    parser.add_argument("--stop-at", type=int, help="end this run at this step with a checkpoint; the LR schedule keeps "
                                                     "its horizon (max_steps), so a resume continues it exactly")
    parser.add_argument("--vae", help="MR-VAE directory (train-vae's OUT/model): train a latent prior (overrides latent_vae)")


def run(args):
    from recon_core.errors import InputError
    from training.commands.run_args import run_config
    from training.loop import train

    config = run_config(args, "train")
    if args.stop_at is not None and args.stop_at < 1:
        raise InputError(f"--stop-at must be >= 1, got {args.stop_at}")
    res = train(config, out=args.out, resume=args.resume, max_steps=args.max_steps, device=args.device,
                max_minutes=args.max_minutes, progress=not args.no_progress,
                overrides={"train.threads": args.threads, "data.path": args.data, "latent_vae": args.vae},
                stop_at=args.stop_at)
    if res.rank == 0:
        last = f"{res.losses[-1]:.4f}" if res.losses else "n/a"
        print(f"stopped at step {res.step} ({res.reason}); last loss {last}; "
              f"{res.seconds_per_step:.3f} s/step; model: {res.out / 'model'}; resume with --resume {res.out}")
    return 0
