"""`contextmri prompt RAW.h5`: print, per slice, the metadata record (JSON) and the prompt built from the header."""

NAME = "prompt"
HELP = "print per slice the metadata record (JSON) and the ContextMRI prompt built from a raw file's header"


def add_arguments(parser):
    parser.add_argument("raw", help="ISMRMRD .h5 (group with an 'xml' header) or fastMRI .h5 (ismrmrd_header)")
    parser.add_argument("--slice", type=int, default=None, help="only this slice index (default: every slice)")
    parser.add_argument("--anatomy", help="override the anatomy (e.g. brain, knee)")
    parser.add_argument("--contrast", help="override the contrast (e.g. T1, T1POST, T2, FLAIR, PD, PDFS)")
    parser.add_argument("--sequence", help="override the sequence type (e.g. TurboSpinEcho)")
    parser.add_argument("--pathology", help="comma-separated pathology labels, or 'none' for no pathology")
    parser.add_argument("--tr", help="override TR (ms)")
    parser.add_argument("--te", help="override TE (ms)")
    parser.add_argument("--ti", help="override TI (ms)")
    parser.add_argument("--flip-angle", dest="flip_angle", help="override the flip angle (degrees)")
    parser.add_argument("--age", help="override the age (years)")
    parser.add_argument("--sex", help="override the sex (M/F/O)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="any other override, repeatable (e.g. --set field_strength=3)")
    parser.add_argument("--variant", default="contextmri", choices=("contextmri", "skmtea"), help="prompt format")
    parser.add_argument("--jsonl", action="store_true",
                        help="one JSON object per slice: {slice_index, record, prompt}")


def _overrides(args):
    from recon_core.errors import InputError

    ov = {k: getattr(args, k) for k in ("anatomy", "contrast", "sequence", "pathology", "tr", "te", "ti",
                                         "flip_angle", "age", "sex") if getattr(args, k) is not None}
    for item in args.set:
        if "=" not in item:
            raise InputError(f"--set: expected FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        ov[k.strip()] = v.strip()
    return ov


def read_raw_header(path):
    """(header XML bytes, fastMRI acquisition or None, number of slices) from an ISMRMRD or fastMRI .h5."""
    from pathlib import Path

    import h5py
    import numpy as np

    from recon_core.errors import InputError
    from recon_core.metadata.header import read_fastmri_h5

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise InputError(f"{p}: not a readable HDF5 file ({exc})") from None
    with f:
        is_fastmri = "ismrmrd_header" in f
        group = next((k for k in f if isinstance(f[k], h5py.Group) and "xml" in f[k]), None)
        if not is_fastmri and group is None:
            raise InputError(f"{p}: expected an ISMRMRD file (a group with an 'xml' dataset) or a fastMRI file "
                             f"('ismrmrd_header'); found {sorted(f.keys())}")
        if not is_fastmri:
            xml = f[group]["xml"][()]
            if isinstance(xml, np.ndarray):
                xml = xml.tobytes() if xml.dtype.kind in "SUV" and xml.ndim == 0 else xml.ravel()[0]
            if isinstance(xml, str):
                xml = xml.encode("utf-8")
            slices = None
            if "data" in f[group]:
                head = f[group]["data"]["head"]
                flags = head["flags"]
                noise = (flags & np.uint64(1 << 18)) != 0  # ACQ_IS_NOISE_MEASUREMENT = bit 19
                sl = head["idx"]["slice"][~noise]
                slices = sorted(int(s) for s in np.unique(sl)) if sl.size else None
            return bytes(xml), None, slices
    xml, acq, n = read_fastmri_h5(p)
    return xml, acq, list(range(n)) if n is not None else None


def run(args):
    import json

    from recon_core.errors import InputError
    from recon_core.metadata.header import parse_header, record_from_header
    from recon_core.metadata.prompt import build_prompt

    xml, acq, slices = read_raw_header(args.raw)
    header = parse_header(xml)
    if slices is None:
        enc = header.encoding[0] if header.encoding else None
        lim = enc.encodingLimits.slice if enc is not None and enc.encodingLimits is not None else None
        slices = list(range(int(lim.maximum) + 1)) if lim is not None else [0]
    if args.slice is not None:
        if args.slice not in slices:
            raise InputError(f"--slice {args.slice}: not in the file's slices {slices[0]}..{slices[-1]}")
        slices = [args.slice]
    overrides = _overrides(args)
    for s in slices:
        rec = record_from_header(header, slice_index=s, overrides=overrides, acquisition=acq)
        prompt = build_prompt(rec, args.variant)
        if args.jsonl:
            print(json.dumps({"slice_index": s, "record": rec.to_dict(), "prompt": prompt}))
        else:
            print(f"slice {s}")
            print(f"  record: {json.dumps(rec.to_dict())}")
            print(f"  prompt: {prompt}")
    return 0
