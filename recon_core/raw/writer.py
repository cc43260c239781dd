"""The one writer of ISMRMRD raw files (simulator, twix conversion, the MRD server's saved sessions): XML
header + acquisitions (+ waveforms, image groups) streamed into a temporary sibling of the target and
moved into place atomically (`recon_core.io_utils.atomic_path`) only when complete."""

from __future__ import annotations

import os
import tempfile

import ismrmrd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from ..errors import InputError
from ..io_utils import atomic_path
from .reader import DATASET_GROUP


class RawFileWriter:
    """An ISMRMRD raw file (group `dataset`) written as its parts arrive, into a temporary file (owner-only
    until committed) in `directory`; `commit(path)` moves it to `path` in that directory atomically with
    file mode `mode` (default: what `open()` gives; 0o600 for private data), `abort()` removes it. As a
    context manager it aborts unless committed. InputError naming `what` when the directory does not
    exist."""

    def __init__(self, directory, mode: int | None = None, what: str = "output"):
        d = os.path.abspath(os.fspath(directory))
        if not os.path.isdir(d):
            raise InputError(f"{what} directory does not exist: {d}")
        fd, self.tmp = tempfile.mkstemp(prefix=".raw.", suffix=".h5.tmp", dir=d)
        os.close(fd)
        self.mode, self.n = mode, 0
        self.ds = ismrmrd.Dataset(self.tmp, DATASET_GROUP, mode="w")

    def header(self, header_xml) -> None:
        """The XML header (str or bytes)."""
        self.ds.write_xml_header(header_xml.encode("utf-8") if isinstance(header_xml, str) else header_xml)

    def acquisition(self, acq) -> None:
        self.ds.append_acquisition(acq)
        self.n += 1

    def acquisitions(self, acqs) -> None:
        """Many acquisitions: one bulk write with ismrmrd's own compound dtype (the layout
        `append_acquisition` writes) when none was written yet, else appended one by one."""
        if self.n:
            for a in acqs:
                self.acquisition(a)
            return
        arr = np.empty((len(acqs),), dtype=acquisition_dtype)
        hd = arr.dtype["head"]
        for i, a in enumerate(acqs):
            arr[i]["head"] = np.frombuffer(a.getHead(), dtype=hd)
            arr[i]["data"] = a.data.view(np.float32).reshape(-1)
            arr[i]["traj"] = a.traj.view(np.float32).reshape(-1)
        self.ds._file.require_group(DATASET_GROUP)
        self.ds._dataset.create_dataset("data", data=arr, maxshape=(None,), chunks=True)
        self.n += len(acqs)

    def waveform(self, wav) -> None:
        self.ds.append_waveform(wav)

    def images(self, group: str, images) -> None:
        for img in images:
            self.ds.append_image(group, img)

    def commit(self, path) -> str:
        """Close the file and move it to `path` (same directory as the temporary), atomically. Returns `path`."""
        self.ds.close()
        try:
            with atomic_path(path, suffix=".h5", mode=self.mode) as tmp:
                os.replace(self.tmp, tmp)
        except BaseException:
            self.abort()
            raise
        return os.fspath(path)

    def abort(self) -> None:
        """Close and remove the temporary file (nothing is left behind)."""
        self.ds.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if os.path.exists(self.tmp):
            self.abort()


def write_raw(path, header_xml, acquisitions, images: dict | None = None, what: str = "output") -> str:
    """Write `path` (group `dataset`) with `RawFileWriter`: the XML header (str or bytes), the acquisitions
    in one bulk write, then `images` {group: [ismrmrd.Image]}; no partial file on error. InputError naming
    `what` when the directory does not exist. Returns `path`."""
    path = os.fspath(path)
    with RawFileWriter(os.path.dirname(os.path.abspath(path)), what=what) as w:
        w.header(header_xml)
        w.acquisitions(acquisitions)
        for group, imgs in (images or {}).items():
            w.images(group, imgs)
        return w.commit(path)
