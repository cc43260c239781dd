"""`contextmri gadgetron-listen`: serve a Gadgetron `<external><connect port=…/>` chain (debugging)."""

NAME = "gadgetron-listen"
HELP = "wait for Gadgetron on a port (chain with <connect port=.../>) and run the contextmri gadget"


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, loopback only; other addresses print a warning)")
    parser.add_argument("--port", type=int, default=18000, help="port named in the chain's <connect port=…/>")
    parser.add_argument("--target", choices=("buffers", "acquisitions"), default="buffers",
                        help="buffers: ReconData after BucketToBuffer (default); acquisitions: raw acquisitions")
    parser.add_argument("--once", action="store_true", help="serve one connection, then exit")


def run(args):
    import logging

    from gadgetron.external.connection import Connection

    from gadget import gadgetron_gadget
    from gadget.netutil import listen_once, warn_if_exposed
    from recon_core.errors import InputError

    if not 0 < args.port <= 65535:
        raise InputError(f"--port must be 1..65535, got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = gadgetron_gadget.recon_buffers if args.target == "buffers" else gadgetron_gadget.recon_acquisitions
    warn_if_exposed(args.host, "contextmri gadgetron-listen")
    while True:
        print(f"contextmri gadgetron-listen: waiting for Gadgetron on {args.host}:{args.port} ({handler.__name__})",
              flush=True)
        try:
            sock = listen_once(args.host, args.port)
        except OSError as exc:
            raise InputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        with Connection(sock) as conn:
            handler(conn)
        if args.once:
            return 0
