"""`contextmri replay RAW.h5 --out IMAGES.h5`: offline replay of raw ISMRMRD data through the stream processor."""

NAME = "replay"
HELP = "reconstruct a raw ISMRMRD .h5 file through the stream processor (ISMRMRD images, PNG, DICOM)"


def add_arguments(parser):
    from gadget.params import METHODS

    parser.add_argument("raw", metavar="RAW.h5", help="raw ISMRMRD file (any writer; the dataset group is found)")
    parser.add_argument("--out", required=True, metavar="IMAGES.h5",
                        help="output ISMRMRD images file (/dataset/images)")
    parser.add_argument("--model", default="default", help="'default' (shipped model) or a saved prior directory")
    parser.add_argument("--method", default="dds", choices=list(METHODS))
    from recon_core.samplers import SamplerConfig

    SamplerConfig.add_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda")
    parser.add_argument("--anatomy", default=None, help="override the anatomy in the prompt")
    parser.add_argument("--contrast", default=None, help="override the contrast in the prompt")
    parser.add_argument("--pathology", default=None, help="comma-separated pathology labels ('none' = none)")
    parser.add_argument("--phase", action="store_true", help="also write a phase series (index 2)")
    parser.add_argument("--zerofilled", action="store_true", help="also write a zero-filled series (index 4)")
    parser.add_argument("--no-std", action="store_true", help="do not write the std series when --samples > 1")
    parser.add_argument("--max-matrix", type=int, default=512, help="refuse matrices larger than this")
    parser.add_argument("--png", default=None, metavar="PNG", help="also write a PNG mosaic of the magnitude images")
    parser.add_argument("--dicom", default=None, metavar="DIR", help="also write a DICOM series into DIR (new/empty)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")


def params_from_args(args):
    """argparse namespace → ReconParams (sampler flags from SamplerConfig.add_arguments)."""
    from gadget.params import ReconParams

    samples = ReconParams.from_args(args).samples
    return ReconParams.from_args(args, model=args.model, method=args.method, device=args.device,
                                 anatomy=args.anatomy, contrast=args.contrast,
                                 pathology=ReconParams.from_mapping({"pathology": args.pathology}).pathology,
                                 send_phase=args.phase, send_zerofilled=args.zerofilled,
                                 send_std=samples > 1 and not args.no_std, max_matrix=args.max_matrix)


def run(args):
    import time

    from gadget.replay import replay
    from recon_core.device import set_threads

    set_threads(args.threads)
    params = params_from_args(args)
    t0 = time.perf_counter()
    res = replay(args.raw, args.out, params, png=args.png, dicom=args.dicom, progress=not args.quiet)
    n_slices = len(res.results)
    dt = time.perf_counter() - t0
    print(f"replay: {n_slices} slice(s), {len(res.images)} image(s), method {params.method} → {args.out} "
          f"({dt:.1f} s)")
    if res.results:
        print(f"prompt (slice {res.results[0].key.slice}): {res.results[0].prompt!r}")
    for extra in (args.png, args.dicom):
        if extra:
            print(f"wrote {extra}")
    return 0
