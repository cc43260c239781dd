"""The one writer of ISMRMRD raw files: XML header + acquisitions (+ optional image groups), atomic."""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError


def write_raw(path, header_xml, acquisitions, images: dict | None = None, what: str = "output") -> str:
    """Write `path` (group `dataset`): the XML header (str or bytes), the acquisitions in one bulk write
    with ismrmrd's own compound dtype (the layout `append_acquisition` writes), then `images`
    {group: [ismrmrd.Image]}. Written to a temporary file beside `path` and renamed (no partial file on
    error). InputError naming `what` when the directory does not exist. Returns `path`."""
    import ismrmrd
    from ismrmrd.hdf5 import acquisition_dtype

    from ..io_utils import atomic_path

    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise InputError(f"{what} directory does not exist: {d}")
    xml = header_xml.encode("utf-8") if isinstance(header_xml, str) else header_xml
    with atomic_path(path, suffix=".h5") as tmp:
        with ismrmrd.Dataset(tmp, "dataset", mode="w") as ds:
            ds.write_xml_header(xml)
            arr = np.empty((len(acquisitions),), dtype=acquisition_dtype)
            hd = arr.dtype["head"]
            for i, a in enumerate(acquisitions):
                arr[i]["head"] = np.frombuffer(a.getHead(), dtype=hd)
                arr[i]["data"] = a.data.view(np.float32).reshape(-1)
                arr[i]["traj"] = a.traj.view(np.float32).reshape(-1)
            ds._file.require_group("dataset")
            ds._dataset.create_dataset("data", data=arr, maxshape=(None,), chunks=True)
            for group, imgs in (images or {}).items():
                for img in imgs:
                    ds.append_image(group, img)
    return path
