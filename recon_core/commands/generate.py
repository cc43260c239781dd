"""`contextmri generate`: sample images from the prior alone (conditional synthesis, ContextMRI §2.1)."""

from recon_core.settings import DTYPE_PRECISIONS

NAME = "generate"
HELP = "sample images from a prior given metadata (JSON) or a prompt (CLIP models); write a PNG grid of magnitudes"


def add_arguments(parser):
    parser.add_argument("--model", default="default", help="checkpoint directory or 'default'")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--metadata", help="MetadataRecord as a JSON file or an inline JSON object "
                                        "(a list gives one row per record); omit for unconditional samples")
    src.add_argument("--prompt", help="text prompt (models with a CLIP text encoder only)")
    parser.add_argument("--cfg", type=float, default=5.0, help="classifier-free guidance scale (1 = conditional only)")
    parser.add_argument("--n", type=int, default=4, help="samples per condition")
    parser.add_argument("--nfe", type=int, default=50, help="DDIM steps")
    parser.add_argument("--eta", type=float, default=None, help="DDIM eta (default: the sampler's, 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    parser.add_argument("--precision", default="fp32", choices=list(DTYPE_PRECISIONS))
    parser.add_argument("--out", required=True, help="output PNG (grid: one row per condition, --n columns)")
    parser.add_argument("--npy", help="optional .npy output of the complex samples (N, H, W) complex64 (normalised)")


def _records(spec):
    import json
    import os

    from recon_core.errors import InputError
    from recon_core.metadata import MetadataRecord

    text = spec
    if not spec.lstrip().startswith(("{", "[")):
        if not os.path.isfile(spec):
            raise InputError(f"--metadata: {spec!r} is neither a JSON file nor an inline JSON object")
        with open(spec) as fh:
            text = fh.read()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--metadata: not valid JSON ({exc})") from None
    objs = obj if isinstance(obj, list) else [obj]
    if not objs or not all(isinstance(o, dict) for o in objs):
        raise InputError("--metadata: expected a JSON object (MetadataRecord fields) or a list of them")
    return [MetadataRecord.from_dict(o) for o in objs]


def save_grid(path, images, ncols: int):
    """Magnitude grid PNG of complex images (N, H, W), each scaled to its 99.5th percentile; atomic write."""
    import numpy as np
    from PIL import Image

    mag = np.abs(np.asarray(images))
    n, h, w = mag.shape
    nrows = int(np.ceil(n / ncols))
    grid = np.zeros((nrows * h + (nrows - 1) * 2, ncols * w + (ncols - 1) * 2), np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        v = mag[i] / max(float(np.percentile(mag[i], 99.5)), 1e-8)
        grid[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = np.clip(v, 0, 1)
    from recon_core.io_utils import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray((grid * 255).round().astype(np.uint8)).save(tmp, format="PNG")


def run(args):
    import os

    import numpy as np

    from recon_core.device import resolve_device
    from recon_core.errors import InputError
    from recon_core.prior import load_prior, sample_prior

    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    if not args.out.lower().endswith(".png"):
        raise InputError(f"--out must be a .png file, got {args.out!r}")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise InputError(f"--out: directory {out_dir} does not exist")
    dev = resolve_device(args.device)
    prior = load_prior(args.model, device=dev)
    tokens, records, desc = None, None, "unconditional"
    if args.prompt is not None:
        enc = prior.encoder
        if not hasattr(enc, "encode_text"):
            raise InputError(f"--prompt needs a model with a CLIP text encoder; this model's encoder is "
                             f"{getattr(enc, 'kind', '?')!r}: use --metadata JSON")
        import torch

        with torch.no_grad():
            tokens = enc.encode_text([args.prompt]).to(dev)
        desc = repr(args.prompt)
    elif args.metadata is not None:
        records = _records(args.metadata)
        desc = f"{len(records)} metadata record(s)"
    x = sample_prior(prior, records=records, tokens=tokens, n=args.n, cfg=args.cfg, nfe=args.nfe, eta=args.eta,
                     seed=args.seed, precision=args.precision, progress=True)
    cplx = (x[:, 0] + 1j * x[:, 1]).numpy().astype(np.complex64)
    save_grid(args.out, cplx, ncols=args.n)
    if args.npy:
        from recon_core.io_utils import atomic_path

        with atomic_path(args.npy, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, cplx)
    print(f"wrote {args.out}: {cplx.shape[0]} samples ({desc}, cfg {args.cfg}, {args.nfe} DDIM steps, "
          f"{prior.resolution}x{prior.resolution})")
    return 0
