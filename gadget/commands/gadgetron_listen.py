"""`contextmri gadgetron-listen`: serve a Gadgetron `<external><connect port=…/>` chain (debugging)."""

NAME = "gadgetron-listen"
HELP = "wait for Gadgetron on a port (chain with <connect port=.../>) and run the contextmri gadget"


def add_arguments(parser):
    parser.add_argument("--port", type=int, default=18000, help="port named in the chain's <connect port=…/>")
    parser.add_argument("--target", choices=("buffers", "acquisitions"), default="buffers",
                        help="buffers: ReconData after BucketToBuffer (default); acquisitions: raw acquisitions")
    parser.add_argument("--once", action="store_true", help="serve one connection, then exit")


def run(args):
    import logging

    from gadgetron.external import listen

    from gadget import gadgetron_gadget
    from recon_core.errors import InputError

    if not 0 < args.port <= 65535:
        raise InputError(f"--port must be 1..65535, got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = gadgetron_gadget.recon_buffers if args.target == "buffers" else gadgetron_gadget.recon_acquisitions
    while True:
        print(f"contextmri gadgetron-listen: waiting for Gadgetron on port {args.port} ({handler.__name__})",
              flush=True)
        listen(args.port, handler)
        if args.once:
            return 0
