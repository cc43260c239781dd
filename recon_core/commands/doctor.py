"""`contextmri doctor`: versions of the stack and the device `--device auto` picks."""

NAME = "doctor"
HELP = "print versions of python, torch, sigpy, ismrmrd, gadgetron, diffusers, transformers, the network engines and the device"


def add_arguments(parser):
    parser.add_argument("--device", default="auto", help="device to resolve (auto|cpu|cuda)")


def _version(module_name):
    import importlib
    import importlib.metadata as md

    try:
        importlib.import_module(module_name)
    except Exception as exc:  # report, do not crash: this is a diagnostic command
        return f"NOT IMPORTABLE ({type(exc).__name__}: {exc})"
    dist = {"sigpy": "sigpy", "gadgetron": "gadgetron", "ismrmrd": "ismrmrd"}.get(module_name, module_name)
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        mod = importlib.import_module(module_name)
        return getattr(mod, "__version__", "unknown")


def run(args):
    import platform
    import sys

    import torch

    from recon_core import __version__
    from recon_core.device import resolve_device
    from recon_core.prior.engine import engines_for

    print(f"contextmri   {__version__}")
    print(f"python       {sys.version.split()[0]} ({platform.platform()})")
    for name in ("torch", "numpy", "sigpy", "ismrmrd", "gadgetron", "diffusers", "transformers", "onnxruntime",
                 "openvino"):
        print(f"{name:<12} {_version(name)}")
    print(f"cuda         {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    print(f"threads      {torch.get_num_threads()}")
    print(f"device       {resolve_device(args.device)} (--device {args.device})")
    print(f"engines      {', '.join(engines_for(resolve_device(args.device)))} (engine auto times them; "
          f"recon_core.prior.engine)")
    return 0
