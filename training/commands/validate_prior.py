"""`contextmri validate-prior`: the fixed validation of training A/B runs (ε-MSE per timestep bin and DDS
PSNR on validation slices; training/validation.py), as JSON."""

NAME = "validate-prior"
HELP = "fixed validation of a prior (ε-MSE per timestep bin, DDS PSNR on validation slices) for training A/B runs"


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="prior checkpoint directory (or 'default')")
    parser.add_argument("--data", required=True, help="simulator export directory (with a val split)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--n-images", type=int, default=32, help="images for the ε-MSE bins")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--dds-slices", type=int, default=8, help="slices for DDS PSNR (0: skip)")
    parser.add_argument("--mask", default="uniform1d:4")
    parser.add_argument("--nfe", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--gamma", type=float, default=5.0)
    parser.add_argument("--eta", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", help="write the result here (atomically)")


def run(args):

    import numpy as np

    from recon_core.device import set_threads
    from recon_core.errors import InputError
    from recon_core.prior import load_prior
    from recon_core.sim.export import load_split
    from training.validation import dds_validation, eps_mse_by_bin

    if args.n_images < 1 or args.bins < 1 or args.dds_slices < 0:
        raise InputError("--n-images and --bins must be >= 1, --dds-slices >= 0")
    set_threads(args.threads)
    prior = load_prior(args.model, device="cpu")
    prior.eval()
    sd = load_split(args.data, args.split)
    n = min(args.n_images, len(sd))
    res = {"model": args.model, "split": args.split,
           "eps_mse": eps_mse_by_bin(prior, np.asarray(sd.mvue[:n]), sd.records[:n], n_bins=args.bins, seed=args.seed),
           "steps": prior.manifest.get("training", {}).get("steps")}
    if args.dds_slices:
        res["dds"] = dds_validation(prior, args.data, args.split, n_slices=args.dds_slices, mask=args.mask,
                                    seed=args.seed, nfe=args.nfe, cfg=args.cfg, gamma=args.gamma, eta=args.eta)
        res["dds"]["settings"] = {"nfe": args.nfe, "cfg": args.cfg, "gamma": args.gamma, "eta": args.eta}
    e = res["eps_mse"]
    print("ε-MSE per t bin: " + " ".join(f"{t}:{m:.4f}" for t, m in zip(e["t"], e["mse"])) + f" | mean {e['mean']:.4f}")
    if "dds" in res:
        print(f"DDS {args.mask} on {res['dds']['n']} slices: PSNR {res['dds']['psnr_mean']:.2f} dB, "
              f"SSIM {res['dds']['ssim_mean']:.3f}, {res['dds']['seconds_per_slice']:.2f} s/slice")
    if args.json:
        from recon_core.io_utils import write_json_atomic

        write_json_atomic(args.json, res)
    return 0
