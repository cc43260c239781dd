"""`contextmri serve`: the MRD streaming server (OpenRecon/FIRE-style clients)."""

NAME = "serve"
HELP = "run the MRD streaming server: raw ISMRMRD acquisitions in, reconstructed images out"


def add_arguments(parser):
    from gadget.params import METHODS

    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1, loopback only; 0.0.0.0 for all interfaces, with a warning: "
                             "no authentication)")
    parser.add_argument("--port", type=int, default=9002, help="TCP port (default 9002)")
    parser.add_argument("--model", default=None, help="prior: 'default' or a saved model directory")
    parser.add_argument("--method", default=None, help=f"{'|'.join(METHODS)} (default dds)")
    parser.add_argument("--device", default=None, help="auto|cpu|cuda (default auto)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="any reconstruction parameter (repeatable): the operator's value; clients may override only the "
                             "client parameters, and cost parameters (nfe, samples, ...) never above this value")
    parser.add_argument("--allow-model", dest="allow_models", action="append", default=[], metavar="NAME",
                        help="a model a client may select (repeatable); by default clients get the operator's model")
    parser.add_argument("--workers", type=int, default=1, help="connections reconstructed at once (default 1)")
    parser.add_argument("--save-raw", default=None, metavar="DIR",
                        help="write every connection's header and acquisitions to DIR/*.h5 before reconstruction")
    parser.add_argument("--save-raw-quota", type=float, default=10240.0, metavar="MB",
                        help="total size of --save-raw files kept; the oldest are deleted beyond it (default 10240)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds of client silence (per read) before the session ends with an MRD error "
                             "message and the worker is freed (default 60)")
    parser.add_argument("--max-session-mb", type=float, default=8192.0, metavar="MB",
                        help="most bytes one connection may send; beyond it the session ends with an MRD error "
                             "message (default 8192)")


def defaults_from_args(args) -> dict:
    """Parameter defaults (strings) from --model/--method/--device/--set; validated via ReconParams."""
    from gadget.params import ReconParams
    from recon_core.errors import InputError

    out = {}
    for key in ("model", "method", "device"):
        if getattr(args, key, None) is not None:
            out[key] = getattr(args, key)
    for item in args.settings or []:
        if "=" not in item:
            raise InputError(f"--set expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    ReconParams.from_mapping(out, strict=True)  # fail at start-up, not per connection
    return out


def run(args):
    import logging
    import math
    import signal

    from gadget.mrd_server import MRDServer, ServerConfig
    from recon_core.errors import InputError

    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise InputError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if not (math.isfinite(args.save_raw_quota) and args.save_raw_quota > 0):
        raise InputError(f"--save-raw-quota must be a positive number of MB, got {args.save_raw_quota}")
    if not (math.isfinite(args.max_session_mb) and args.max_session_mb > 0):
        raise InputError(f"--max-session-mb must be a positive number of MB, got {args.max_session_mb}")
    if args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0..65535, got {args.port}")
    from gadget.netutil import warn_if_exposed

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warn_if_exposed(args.host, "contextmri serve")
    from gadget.client_policy import ClientPolicy
    from gadget.mrd_protocol import Limits

    config = ServerConfig(host=args.host, port=args.port, workers=args.workers,
                          defaults=defaults_from_args(args), save_raw=args.save_raw, timeout=args.timeout,
                          save_raw_quota_mb=args.save_raw_quota,
                          limits=Limits(max_session_bytes=int(args.max_session_mb * 1024 * 1024)),
                          policy=ClientPolicy(models=tuple(args.allow_models)))
    server = MRDServer(config).start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    host, port = server.address
    print(f"contextmri serve: listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0
