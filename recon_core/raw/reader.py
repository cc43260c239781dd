"""Read a raw ISMRMRD .h5 file into assembled slices (`recon_core.raw.assembly`), with the one header
parser every front door uses (`recon_core.metadata.header.parse_header`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InputError
from .assembly import Assembler, SliceData
from .geometry import EncodingGeometry


@dataclass
class RawFile:
    """header: ismrmrd.xsd.ismrmrdHeader; slices: SliceData in completion order; geometry; counts."""
    header: object
    slices: list
    geometry: EncodingGeometry
    n_acquisitions: int
    n_noise: int


def open_dataset(path):
    """ismrmrd.Dataset of `path` (the group holding `data`/`xml` is found), read-only; InputError otherwise."""
    import h5py
    import ismrmrd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"raw file not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            groups = [k for k in h5.keys() if isinstance(h5[k], h5py.Group) and "xml" in h5[k]]
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 file ({exc})") from None
    if not groups:
        raise InputError(f"{path}: no ISMRMRD dataset group (a group with an 'xml' header)")
    group = "dataset" if "dataset" in groups else groups[0]
    return ismrmrd.Dataset(path, group, create_if_needed=False)


def read_slices(path, max_matrix: int = 512) -> RawFile:
    """All acquisitions of `path` through one Assembler → RawFile (prewhitened, oversampling removed)."""
    from ..metadata.header import parse_header

    ds = open_dataset(path)
    try:
        header = parse_header(ds.read_xml_header())
        geom = EncodingGeometry.from_header(header, max_matrix)
        asm = Assembler(geom)
        slices: list[SliceData] = []
        for i in range(ds.number_of_acquisitions()):
            slices += asm.add(ds.read_acquisition(i))
        slices += asm.flush()
    finally:
        ds.close()
    return RawFile(header, slices, geom, asm.n_acquisitions, asm.n_noise)
