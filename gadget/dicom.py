"""ismrmrd.Image → DICOM MR images (pydicom), with the slice geometry and the prompt in the header.

Geometry: ISMRMRD `position` is the centre of the slice in the patient coordinate system (LPS, mm, as
DICOM); DICOM ImagePositionPatient is the centre of the first (top-left) pixel:
    IPP = position − (nx/2 − ½)·dx·read_dir − (ny/2 − ½)·dy·phase_dir,  dx = FOVx/nx, dy = FOVy/ny.
ImageOrientationPatient = read_dir (row direction) + phase_dir (column direction);
PixelSpacing = [dy, dx] (row spacing, column spacing); SliceThickness = FOVz.
Pixels: uint16 with RescaleSlope/RescaleIntercept mapping back to the float values.
"""

from __future__ import annotations

import datetime as _dt
import os

import numpy as np

from gadget.images import to_float

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_SERIES_NAMES = {1: "magnitude", 2: "phase", 3: "uncertainty (std)", 4: "zero-filled"}


def _geometry(im):
    nx, ny = int(im.matrix_size[0]), int(im.matrix_size[1])
    fov = np.asarray(im.field_of_view, dtype=np.float64)
    dx, dy = fov[0] / nx, fov[1] / ny
    read = np.asarray(im.read_dir, dtype=np.float64)
    phase = np.asarray(im.phase_dir, dtype=np.float64)
    if not np.any(read):
        read = np.array([1.0, 0.0, 0.0])
    if not np.any(phase):
        phase = np.array([0.0, 1.0, 0.0])
    pos = np.asarray(im.position, dtype=np.float64)
    ipp = pos - (nx / 2 - 0.5) * dx * read - (ny / 2 - 0.5) * dy * phase
    return ipp, read, phase, (dy, dx), fov[2]


def _header_tags(ds, header) -> None:
    """Patient name/ID, field strength, TR/TE/TI (ms) and flip angle from the ISMRMRD header, where given."""
    subj = getattr(header, "subjectInformation", None)
    if subj is not None:
        if getattr(subj, "patientName", None):
            ds.PatientName = str(subj.patientName)
        if getattr(subj, "patientID", None):
            ds.PatientID = str(subj.patientID)
    sys_info = getattr(header, "acquisitionSystemInformation", None)
    if sys_info is not None and getattr(sys_info, "systemFieldStrength_T", None):
        ds.MagneticFieldStrength = float(sys_info.systemFieldStrength_T)
    seq = getattr(header, "sequenceParameters", None)
    if seq is not None:
        for name, tag in (("TR", "RepetitionTime"), ("TE", "EchoTime"), ("TI", "InversionTime"),
                          ("flipAngle_deg", "FlipAngle")):
            if getattr(seq, name, None):
                setattr(ds, tag, float(getattr(seq, name)[0]))


def _geometry_tags(ds, im) -> None:
    """Image position/orientation, pixel spacing, thickness and slice location from the ISMRMRD image."""
    ipp, read, phase, spacing, thick = _geometry(im)
    ds.ImagePositionPatient = [float(f"{v:.6g}") for v in ipp]
    ds.ImageOrientationPatient = [float(f"{v:.6g}") for v in np.concatenate([read, phase])]
    ds.PixelSpacing = [float(f"{v:.6g}") for v in spacing]
    ds.SliceThickness = float(f"{thick:.6g}")
    normal = np.cross(read, phase)
    ds.SliceLocation = float(f"{float(np.dot(np.asarray(im.position, np.float64), normal)):.6g}")


def _pixel_tags(ds, im) -> None:
    """16-bit unsigned pixels spanning the image's range, with the rescale slope/intercept back to floats."""
    a = np.asarray(to_float(im), dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    pix = np.clip(np.round((a - lo) / slope), 0, 65535).astype(np.uint16)
    ds.Rows, ds.Columns = pix.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = float(f"{lo:.10g}")
    ds.RescaleSlope = float(f"{slope:.10g}")
    ds.RescaleType = "US"
    ds.PixelData = pix.tobytes()


def image_to_dicom(im, header=None, series_uids: dict | None = None, study_uid: str | None = None,
                   instance_number: int = 1):
    """One ismrmrd.Image (float32, 1 channel, 2-D) → pydicom FileDataset (MR Image Storage)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series = int(im.image_series_index)
    series_uids = series_uids if series_uids is not None else {}
    if series not in series_uids:
        series_uids[series] = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uids[series]
    ds.FrameOfReferenceUID = series_uids.setdefault("frame", generate_uid())
    ds.Modality = "MR"
    ds.Manufacturer = "contextmri"
    now = _dt.datetime.now()
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.PatientName = "Anonymous"
    ds.PatientID = "contextmri"
    if header is not None:
        _header_tags(ds, header)
    m = im.meta
    ds.SeriesNumber = series
    ds.InstanceNumber = int(instance_number)
    ds.SeriesDescription = f"contextmri {m.get('method', '')} {_SERIES_NAMES.get(series, '')}".strip()[:64]
    ds.ImageComments = (f"prompt: {m.get('prompt', '') or ''}; model: {m.get('model', '')}; NFE: {m.get('NFE', '')}; "
                        f"CFG: {m.get('CFG', '')}; seed: {m.get('seed', '')}")[:10240]
    ds.ImageType = ["DERIVED", "PRIMARY", "P" if series == 2 else "M"]
    _geometry_tags(ds, im)
    _pixel_tags(ds, im)
    return ds


def write_dicom_files(directory: str, images: list, header=None) -> list[str]:
    """Write every image as `<series>_<image_index>.dcm` into an existing directory → file paths."""
    from pydicom.uid import generate_uid

    series_uids: dict = {}
    study = generate_uid()
    paths = []
    for n, im in enumerate(images, start=1):
        ds = image_to_dicom(im, header, series_uids, study, instance_number=int(im.image_index) or n)
        p = os.path.join(directory, f"s{int(im.image_series_index):02d}_{int(im.image_index):04d}.dcm")
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
