"""`contextmri train-vae`: train / resume the MR-VAE of the latent prior from a YAML config
(training/configs/vae.yaml; schema and loss in training/vae.py)."""

NAME = "train-vae"
HELP = "train the MR-VAE (latent prior's autoencoder) from a YAML config; --resume DIR continues exactly"


def add_arguments(parser):
    parser.add_argument("--config", help="VAE training config YAML (default: the resumed run's config.yaml)")
    parser.add_argument("--out", help="output directory (model/, train_state/, log.csv, loss.png)")
    parser.add_argument("--resume", help="output directory of an earlier run to continue")
    parser.add_argument("--data", help="training data path (overrides data.path)")
    parser.add_argument("--max-steps", type=int, help="total optimiser steps (overrides train.max_steps)")
    parser.add_argument("--max-minutes", type=float, help="wall-time limit of this run; stops with a checkpoint")
    parser.add_argument("--device", help="auto|cpu|cuda")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument("--eval-split", default="val", help="export split the final PSNR/SSIM is measured on")
    parser.add_argument("--no-progress", action="store_true")


def run(args):
    import os

    from recon_core.errors import InputError
    from recon_core.latent import load_vae
    from training.datasets import build_dataset
    from training.vae import load_vae_train_config, train_vae, vae_metrics

    config = args.config
    if config is None:
        if not args.resume or not os.path.isfile(os.path.join(args.resume, "config.yaml")):
            raise InputError("train-vae: give --config YAML (or --resume DIR of a run that has config.yaml)")
        config = os.path.join(args.resume, "config.yaml")
    if args.max_steps is not None and args.max_steps < 1:
        raise InputError(f"--max-steps must be >= 1, got {args.max_steps}")
    step, reason, out = train_vae(config, out=args.out, resume=args.resume, max_steps=args.max_steps,
                                  max_minutes=args.max_minutes, device=args.device, progress=not args.no_progress,
                                  overrides={"train.threads": args.threads, "data.path": args.data})
    cfg = load_vae_train_config(config, {"data.path": args.data})
    vae = load_vae(out / "model")
    msg = ""
    if cfg["data"]["kind"] == "export" and args.eval_split:
        ds = build_dataset({**cfg["data"], "split": args.eval_split, "limit": None}, vae.resolution, False)
        m = vae_metrics(vae, ds, limit=32)
        msg = f"; {args.eval_split} reconstruction PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f} ({m['n']} images)"
    print(f"stopped at step {step} ({reason}); model: {out / 'model'}{msg}; resume with --resume {out}")
    return 0
