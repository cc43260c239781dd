"""`contextmri export-model`: copy a prior checkpoint (e.g. a training run's OUT/model) for shipping,
optionally with float16 weights on disk (half the size; loaded back as float32)."""

NAME = "export-model"
HELP = "copy a prior checkpoint directory for shipping (--half: float16 weights on disk)"


def add_arguments(parser):
    parser.add_argument("model", help="checkpoint directory (or 'default')")
    parser.add_argument("--out", required=True, help="destination directory (replaced atomically)")
    parser.add_argument("--half", action="store_true", help="store float32 weights as float16")


def run(args):
    from recon_core.prior.checkpoint import export_prior

    out = export_prior(args.model, args.out, half=args.half)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MB)")
    return 0
