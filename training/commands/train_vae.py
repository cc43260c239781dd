"""`contextmri train-vae`: train / resume the MR-VAE of the latent prior from a YAML config
(training/configs/vae.yaml; schema and loss in training/vae.py)."""

NAME = "train-vae"
HELP = "train the MR-VAE (latent prior's autoencoder) from a YAML config; --resume DIR continues exactly"


def add_arguments(parser):
    from training.commands.run_args import add_run_arguments

    add_run_arguments(parser, "VAE training")
    parser.add_argument("--eval-split", default="val", help="export split the final PSNR/SSIM is measured on")


def run(args):
    from recon_core.prior.vae import load_vae
    from training.commands.run_args import run_config
    from training.datasets import build_dataset
    from training.vae import load_vae_train_config, train_vae, vae_metrics

    config = run_config(args, "train-vae")
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
