"""`contextmri convert RAW.dat --out RAW.h5`: Siemens twix → ISMRMRD (`recon_core.raw.twix`), so that
`prompt` and `replay` work on it like on a scanner stream."""

NAME = "convert"
HELP = "convert a Siemens raw file (twix .dat, VB/VD/VE) to ISMRMRD .h5 with the protocol in the header"


def add_arguments(parser):
    parser.add_argument("raw", help="Siemens twix .dat file")
    parser.add_argument("--out", required=True, help="ISMRMRD .h5 to write (replaced atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args):
    import os

    from recon_core.errors import InputError
    from recon_core.raw.twix import convert

    if os.path.abspath(args.out) == os.path.abspath(args.raw):
        raise InputError("--out must differ from the input file (the input is never modified)")
    if os.path.exists(args.out) and not args.overwrite:
        raise InputError(f"--out {args.out!r} exists; pass --overwrite to replace it")
    info = convert(args.raw, args.out)
    print(f"wrote {args.out}: {info['acquisitions']} acquisitions ({info['noise']} noise), "
          f"{info['channels']} channels, matrix {info['matrix'][0]}×{info['matrix'][1]}")
    return 0
