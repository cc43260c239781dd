"""Offline replay: an ISMRMRD raw `.h5` → the stream processor → ISMRMRD images `.h5` (+ PNG, DICOM).

Output layout: the input's XML header at `/dataset/xml` and all images at `/dataset/images`
(`ismrmrd.Dataset(out, "dataset").read_image("images", i)`), series told apart by
image_series_index (1 magnitude, 2 phase, 3 std, 4 zero-filled). Outputs are written to temporary
files next to their targets and renamed only when everything succeeded; the input is opened
read-only and never modified. The stream is validated (coil counts, NaN/Inf, ACS, matrix cap) in a
cheap first pass before any reconstruction starts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field

import ismrmrd
import numpy as np
from tqdm.auto import tqdm

from recon_core.errors import InputError
from recon_core.io_utils import atomic_path
from recon_core.io_utils import default_mode as _default_mode
from recon_core.raw.reader import DATASET_GROUP, open_raw

from .dicom import write_dicom_files
from .params import ReconParams, is_diffusion
from .processor import StreamProcessor

IMAGES_PATH = "images"
_CHUNK = 256


# ---------------------------------------------------------------- reading
class RawFile:
    """Read-only ISMRMRD raw file: `.header_xml` (str), `.n_acquisitions`, `.acquisitions()` iterator. The
    file is opened and its dataset group chosen by the raw layer's one reader (`recon_core.raw.reader.open_raw`)."""

    def __init__(self, path):
        self.path = str(path)
        self._f, self.group = open_raw(self.path)
        try:
            try:
                raw = self._f[self.group]["xml"][0]
            except Exception as exc:  # h5py raises OSError/KeyError/ValueError on corrupt data
                raise InputError(f"{self.path!r}: cannot read the XML header ({exc})") from None
            self.header_xml = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            self._data = self._f[self.group]["data"]
            self.n_acquisitions = int(self._data.shape[0])
        except BaseException:
            self._f.close()
            raise

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def acquisitions(self):
        """Yield ismrmrd.Acquisition in file order (read in chunks)."""
        for start in range(0, self.n_acquisitions, _CHUNK):
            try:
                rows = self._data[start:start + _CHUNK]
            except Exception as exc:
                raise InputError(f"{self.path!r}: cannot read acquisitions {start}..{start + _CHUNK - 1} "
                                 f"(truncated or corrupt file?): {exc}") from None
            for i, row in enumerate(rows):
                n = start + i
                try:
                    acq = ismrmrd.Acquisition(row["head"].tobytes())
                except Exception as exc:
                    raise InputError(f"{self.path!r}: acquisition {n} has an unreadable header ({exc})") from None
                C, N = int(acq.active_channels), int(acq.number_of_samples)
                flat = np.asarray(row["data"], dtype=np.float32)
                if flat.size != 2 * C * N:
                    raise InputError(f"{self.path!r}: acquisition {n} holds {flat.size // 2} complex samples but its "
                                     f"header says {C} coils × {N} samples (inconsistent coil count or truncated)")
                acq.data[:] = flat.view(np.complex64).reshape(C, N)
                D = int(acq.trajectory_dimensions)
                if D:
                    traj = np.asarray(row["traj"], dtype=np.float32)
                    if traj.size == N * D:
                        acq.traj[:] = traj.reshape(N, D)
                yield acq


# ---------------------------------------------------------------- writing
@dataclass
class ReplayResult:
    """What a replay produced: images (list of ismrmrd.Image), slice results, output paths."""

    images: list
    results: list
    out: str | None
    png: str | None = None
    dicom: str | None = None
    header_xml: str = ""
    timings: dict = field(default_factory=dict)


def _tmp_path(target: str, suffix: str) -> str:
    d = os.path.dirname(os.path.abspath(target)) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=suffix, dir=d)
    os.close(fd)
    os.chmod(tmp, _default_mode(0o666))  # mkstemp makes 0600; outputs get the usual umask permissions
    return tmp


def _atomic(path: str, suffix: str, writer) -> None:
    """writer(tmp_path) then atomically into `path` (recon_core.io_utils); nothing left on failure."""
    with atomic_path(path, suffix=suffix) as tmp:
        writer(tmp)


def _write_images_h5(path: str, header_xml: str, groups: dict) -> None:

    if os.path.exists(path):
        os.remove(path)
    ds = ismrmrd.Dataset(path, DATASET_GROUP, create_if_needed=True)
    try:
        ds.write_xml_header(header_xml)
        for name, imgs in groups.items():
            for im in imgs:
                ds.append_image(name, im)
    finally:
        ds.close()


def write_images_h5(path: str, header_xml: str, groups: dict) -> None:
    """Write ISMRMRD images: groups {image_path: [Image]} under /dataset, plus the XML header; atomic."""
    _atomic(path, ".h5", lambda tmp: _write_images_h5(tmp, header_xml, groups))


def read_images_h5(path: str, image_path: str = IMAGES_PATH) -> list:
    """All ismrmrd.Image of `/dataset/<image_path>` of a file written by `write_images_h5`."""
    ds = ismrmrd.Dataset(str(path), DATASET_GROUP, create_if_needed=False, mode="r")
    try:
        return [ds.read_image(image_path, i) for i in range(ds.number_of_images(image_path))]
    finally:
        ds.close()


def write_png_mosaic(path: str, images: list, title: str | None = None) -> None:
    """Grid of magnitude images (series 1, else all) as one PNG, atomic; grey, each slice scaled to its 99.5 %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = [im for im in images if im.image_series_index == 1] or list(images)
    if not imgs:
        raise InputError("no images to draw in the PNG mosaic")
    n = len(imgs)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + (0.4 if title else 0)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im in zip(axes.ravel(), imgs):
        a = np.asarray(im.data[0, 0], dtype=np.float32)
        vmax = float(np.percentile(a, 99.5)) or 1.0
        ax.imshow(a, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(f"slice {im.slice}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    try:
        _atomic(path, ".png", lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        plt.close(fig)


def _check_writable(label: str, target: str, parent: str) -> None:
    """Before any reconstruction: a temporary file can be created beside `target` (the error names the
    user's path, not the hidden temporary)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{os.path.basename(target) or 'out'}.probe.", dir=parent)
    except OSError as exc:
        raise InputError(f"{label} {target!r}: cannot write in {parent!r} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    if os.path.exists(target) and not os.path.isdir(target) and not os.access(target, os.W_OK):
        raise InputError(f"{label} {target!r} exists and is not writable")


def _check_output_targets(raw: str, out: str | None, png: str | None, dicom: str | None):
    src = os.path.realpath(raw)
    for label, p in (("--out", out), ("--png", png), ("--dicom", dicom)):
        if p is None:
            continue
        if os.path.realpath(p) == src:
            raise InputError(f"{label} {p!r} is the input file; refusing to overwrite the raw data")
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise InputError(f"{label} {p!r}: directory {parent!r} does not exist")
        _check_writable(label, p, parent)
    if dicom is not None and os.path.exists(dicom) and (not os.path.isdir(dicom) or os.listdir(dicom)):
        raise InputError(f"--dicom {dicom!r} exists and is not an empty directory")
    if out is not None and os.path.isdir(out):
        raise InputError(f"--out {out!r} is a directory; expected a .h5 file name")


def replay(raw_path, out=None, params: ReconParams | None = None, *, prior=None, png=None, dicom=None,
           progress: bool = True, extra_groups: dict | None = None) -> ReplayResult:
    """Replay RAW through `StreamProcessor`; write images (group `images`), optional PNG and DICOM.

    Validates the whole stream first (nothing is written on bad input). `prior` overrides the model
    named in params; `extra_groups` {image_path: [Image]} are written into the same output file.
    """

    params = (params or ReconParams()).validate()
    raw_path = str(raw_path)
    _check_output_targets(raw_path, out, png, dicom)
    with RawFile(raw_path) as raw:
        proc = StreamProcessor(raw.header_xml, params, prior=prior)
        keys = proc.check(raw.acquisitions())           # pass 1: validate, count slices
        if is_diffusion(params.method):
            _ = proc.prior                              # load (or fail on a missing model) before pass 2
        bar = tqdm(total=len(keys), desc=f"replay {params.method}", unit="slice", disable=not progress,
                   leave=False)
        results = []

        def on_slice(res):
            results.append(res)
            bar.update(1)
            bar.set_postfix_str(f"slice {res.key.slice}")

        proc.on_slice = on_slice
        try:
            images = list(proc.process(raw.acquisitions()))  # pass 2: reconstruct
        finally:
            bar.close()
        header_xml = raw.header_xml
    # stage every output as a temporary next to its target, then rename them together
    staged = []  # (tmp, final)
    try:
        if out is not None:
            tmp = _tmp_path(out, ".h5")
            staged.append((tmp, out))
            _write_images_h5(tmp, header_xml, {IMAGES_PATH: images, **(extra_groups or {})})
        if png is not None:
            tmp = _tmp_path(png, ".png")
            staged.append((tmp, png))
            write_png_mosaic(tmp, images, title=results[0].prompt if results else None)
        if dicom is not None:
            tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.normpath(dicom))}.",
                                   dir=os.path.dirname(os.path.abspath(dicom)))
            os.chmod(tmp, _default_mode(0o777))
            staged.append((tmp, dicom))
            write_dicom_files(tmp, images, proc.header)
        for tmp, final in staged:
            if os.path.isdir(tmp) and os.path.isdir(final):
                os.rmdir(final)  # checked empty above
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.exists(tmp):
                os.remove(tmp)
        raise
    return ReplayResult(images, results, out, png, dicom, header_xml)


def file_sha256(path) -> str:
    """Hex SHA-256 of a file (tests: the input is never modified)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

