"""Read a raw ISMRMRD .h5 file: the one place that opens one and chooses its dataset group (replay, the
simulator's reader, training, the real-data evaluation), and `read_slices` into assembled slices
(`recon_core.raw.assembly`) with the one header parser every front door uses
(`recon_core.metadata.header.parse_header`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import h5py
import ismrmrd

from ..errors import InputError
from ..metadata.header import parse_header
from .assembly import Assembler, SliceData
from .geometry import EncodingGeometry

DATASET_GROUP = "dataset"


@dataclass
class RawFile:
    """header: ismrmrd.xsd.ismrmrdHeader; slices: SliceData in completion order; geometry; counts."""
    header: object
    slices: list
    geometry: EncodingGeometry
    n_acquisitions: int
    n_noise: int


def _is_acq_table(obj) -> bool:
    return (isinstance(obj, h5py.Dataset) and obj.dtype.names is not None
            and "head" in obj.dtype.names and "data" in obj.dtype.names)


def find_dataset_group(f: h5py.File) -> str:
    """Name of the group holding ISMRMRD acquisitions (`<group>/data` + `<group>/xml`) in an open h5py.File.

    "dataset" (the ISMRMRD default) when its `data` is an acquisition table; otherwise the one group
    (searched depth-first) whose `data` is an acquisition table, those with an `xml` header first.
    InputError naming the file and the groups found when there is none, or several to choose from.
    """
    g = f.get(DATASET_GROUP)
    if isinstance(g, h5py.Group) and _is_acq_table(g.get("data")):
        return DATASET_GROUP
    found = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Group)
                 and _is_acq_table(obj.get("data")) else None)
    candidates = [g for g in found if "xml" in f[g]] or found
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise InputError(f"{f.filename!r}: ambiguous, several ISMRMRD acquisition groups {sorted(candidates)} "
                         f"and none named /{DATASET_GROUP}")
    groups = sorted(f.keys())
    raise InputError(f"no ISMRMRD acquisitions found in {f.filename!r}: expected a group with an acquisition "
                     f"table 'data' (e.g. /dataset/data); top-level entries: {groups or 'none'}")


def open_raw(path) -> tuple[h5py.File, str]:
    """(h5py.File opened read-only, dataset group) of the raw file `path` (`find_dataset_group`; the group
    has an XML header and at least one acquisition). InputError naming the file otherwise. The caller
    closes the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"raw file {path!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path!r} is not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    try:
        group = find_dataset_group(f)
        if "xml" not in f[group]:
            raise InputError(f"{path!r}: group /{group} has acquisitions but no ISMRMRD XML header ('xml' dataset)")
        if f[group]["data"].shape[0] == 0:
            raise InputError(f"{path!r}: the acquisition table /{group}/data is empty (no acquisitions)")
    except BaseException:
        f.close()
        raise
    return f, group


def open_dataset(path) -> ismrmrd.Dataset:
    """ismrmrd.Dataset of the raw file `path`, read-only, on the group `open_raw` chooses; InputError otherwise."""
    f, group = open_raw(path)
    f.close()
    return ismrmrd.Dataset(os.fspath(path), group, create_if_needed=False, mode="r")


def image_group(ds: ismrmrd.Dataset, name: str) -> list:
    """Every ismrmrd.Image of the image group `name` of an open Dataset, in index order ([] when it has none)."""
    if name not in ds.list():
        return []
    return [ds.read_image(name, i) for i in range(ds.number_of_images(name))]


def read_slices(path, max_matrix: int = 512) -> RawFile:
    """All acquisitions of `path` through one Assembler → RawFile (prewhitened, oversampling removed)."""
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
