"""The `contextmri` command.

Subcommands are the entry points of group `contextmri.commands` (declared in pyproject.toml, so this
module imports no other package's commands by name): each is a module defining NAME, HELP,
add_arguments(parser) and run(args) -> int (see DESIGN.md).
Bad input (`ValueError`, including `recon_core.errors.InputError`, and missing files) prints one
line to stderr and exits 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "contextmri.commands"


def _discover():
    """{command name: module} from the installed entry points (`pip install -e .` registers them)."""
    commands = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        mod = importlib.import_module(ep.value)
        commands[getattr(mod, "NAME", ep.name)] = mod
    if not commands:
        raise SystemExit("contextmri: no commands registered (entry points of group "
                         f"{ENTRY_POINT_GROUP!r}); install the package: pip install -e .")
    return commands


def build_parser():
    parser = argparse.ArgumentParser(
        prog="contextmri",
        description="MRI reconstruction with a metadata-conditioned diffusion prior (DDS).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = _discover()
    for name in sorted(commands):
        mod = commands[name]
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show full tracebacks on errors")
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _sigterm_as_interrupt():
    """SIGTERM → KeyboardInterrupt (main thread only), so every command cleans its temporary outputs
    and exits 130; commands that need their own handling (serve, train) install theirs in `run`."""
    if threading.current_thread() is threading.main_thread():
        def _raise(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, _raise)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    _sigterm_as_interrupt()
    try:
        rc = args._run(args)
    except KeyboardInterrupt:
        print("contextmri: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if getattr(args, "debug", False):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"contextmri {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
