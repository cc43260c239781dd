"""Siemens raw data (twix .dat, VB and VD/VE) → ISMRMRD, read with Siemens' own reader `twixtools`.

What `siemens_to_ismrmrd` does, for the 2-D Cartesian scans this project reconstructs:
- Header from the protocol (MeasYaps / Dicom sections): TR, TE (one per contrast), TI, flip angle
  (TR/TE/TI in ms: the protocol stores µs), sequence type (scanning sequence GR → Flash, SE + ETL > 1 →
  TurboSpinEcho, IR → InversionRecovery), protocol and sequence names, body part (→ anatomy), field
  strength, Larmor frequency, vendor/model, patient position and sex; encoded space = the samples of
  a readout (oversampling included) × phase-encode lines, FOV × the oversampling factor; recon space =
  base resolution × lines at the protocol FOV; encoding limits (lines, partitions, slices, contrasts,
  repetitions, sets, averages, phases) with the k-space centre line; acceleration and reference-scan mode.
- Acquisitions from every measurement data block: data (channels, samples) complex64; counters (line,
  partition, slice, echo → contrast, repetition, set, average, phase, segment); flags NOISEADJSCAN →
  noise measurement, PATREFSCAN → parallel calibration, PATREFANDIMASCAN → calibration and imaging,
  REFLECT → reverse, first/last in slice and last in measurement; centre sample, discard pre/post; slice
  position and the read/phase/slice directions from the block's quaternion (checked against the
  protocol's slice normal). Noise-adjust scans of an earlier measurement in a multi-RAID file come first.
Blocks that are not imaging data (SYNCDATA, ACQEND, phase correction, navigators) are skipped.
"""

from __future__ import annotations

import contextlib
import io
import os

import ismrmrd
import ismrmrd.xsd as X
import numpy as np

from ..errors import InputError
from .writer import write_raw

FLAG_MAP = (("NOISEADJSCAN", "ACQ_IS_NOISE_MEASUREMENT"), ("PATREFSCAN", "ACQ_IS_PARALLEL_CALIBRATION"),
            ("PATREFANDIMASCAN", "ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING"), ("REFLECT", "ACQ_IS_REVERSE"),
            ("FIRSTSCANINSLICE", "ACQ_FIRST_IN_SLICE"), ("LASTSCANINSLICE", "ACQ_LAST_IN_SLICE"),
            ("LASTSCANINMEAS", "ACQ_LAST_IN_MEASUREMENT"))
SKIP_FLAGS = ("SYNCDATA", "ACQEND", "PHASCOR", "RTFEEDBACK", "HPFEEDBACK", "REFPHASESTABSCAN", "PHASESTABSCAN")
SEX = {1: "F", 2: "M", 3: "O"}


def quaternion_directions(q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read, phase, slice) unit vectors from a twix slice quaternion (stored as (d, a, b, c))."""
    d, a, b, c = (float(v) for v in q)
    phase = np.array([1 - 2 * (b * b + c * c), 2 * (a * b + c * d), 2 * (a * c - b * d)])
    read = np.array([2 * (a * b - c * d), 1 - 2 * (a * a + c * c), 2 * (b * c + a * d)])
    slc = np.array([2 * (a * c + b * d), 2 * (b * c - a * d), 1 - 2 * (a * a + b * b)])
    return read, phase, slc


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _sequence_type(dicom: dict, etl: int) -> str:
    scan = str(dicom.get("tScanningSequence", "") or "").upper()
    if "IR" in scan:
        return "InversionRecovery"
    if "SE" in scan:
        return "TurboSpinEcho" if etl > 1 else "SpinEcho"
    if "GR" in scan:
        return "Flash"
    return scan or "Unknown"


def _limit(n: int, centre: int = 0):

    return X.limitType(minimum=0, maximum=max(int(n) - 1, 0), center=int(centre))


def build_header(hdr: dict, mdbs: list, channels: int):
    """ismrmrd.xsd.ismrmrdHeader from the twix protocol and the imaging blocks (for limits and sizes)."""
    yaps, dicom, meas = hdr.get("MeasYaps", {}), hdr.get("Dicom", {}), hdr.get("Meas", {})
    ks = yaps.get("sKSpace", {})
    base = int(ks.get("lBaseResolution") or 0)
    lines = int(ks.get("lPhaseEncodingLines") or 0)
    imaging = [m for m in mdbs if not m.is_flag_set("NOISEADJSCAN")]
    if not imaging or not base or not lines:
        raise InputError("twix: no imaging data or no k-space size in the protocol (sKSpace)")
    samples = int(imaging[0].mdh.SamplesInScan)
    os_factor = float(meas.get("flReadoutOSFactor") or dicom.get("flReadoutOSFactor") or samples / base)
    sl = _get(yaps, "sSliceArray", "asSlice", default=[{}])[0]
    fov_r, fov_p, thick = (float(sl.get(k) or 0.0) for k in ("dReadoutFOV", "dPhaseFOV", "dThickness"))
    n_lines = max(lines, 1 + max(int(m.cLin) for m in imaging))
    centre_line = int(imaging[0].mdh.CenterLin)

    def count(attr):
        return 1 + max(int(getattr(m, attr)) for m in imaging)

    enc = X.encodingType(
        encodedSpace=X.encodingSpaceType(matrixSize=X.matrixSizeType(x=samples, y=n_lines, z=count("cPar")),
                                         fieldOfView_mm=X.fieldOfViewMm(x=fov_r * os_factor, y=fov_p, z=thick)),
        reconSpace=X.encodingSpaceType(matrixSize=X.matrixSizeType(x=base, y=lines, z=1),
                                       fieldOfView_mm=X.fieldOfViewMm(x=fov_r, y=fov_p, z=thick)),
        encodingLimits=X.encodingLimitsType(
            kspace_encoding_step_0=_limit(samples, samples // 2), kspace_encoding_step_1=_limit(n_lines, centre_line),
            kspace_encoding_step_2=_limit(count("cPar")), average=_limit(count("cAve")), slice=_limit(count("cSlc")),
            contrast=_limit(count("cEco")), phase=_limit(count("cPhs")), repetition=_limit(count("cRep")),
            set=_limit(count("cSet")), segment=_limit(count("cSeg"))),
        trajectory=X.trajectoryType.CARTESIAN,
        parallelImaging=X.parallelImagingType(
            accelerationFactor=X.accelerationFactorType(
                kspace_encoding_step_1=int(_get(yaps, "sPat", "lAccelFactPE", default=1) or 1),
                kspace_encoding_step_2=int(_get(yaps, "sPat", "lAccelFact3D", default=1) or 1)),
            calibrationMode=X.calibrationModeType.EMBEDDED if any(m.is_flag_set("PATREFANDIMASCAN") for m in mdbs)
            else (X.calibrationModeType.SEPARATE if any(m.is_flag_set("PATREFSCAN") for m in mdbs)
                  else X.calibrationModeType.OTHER)),
        echoTrainLength=int(float(dicom.get("EchoTrainLength") or 1)))
    if not yaps.get("alTR") or not yaps.get("alTE"):
        raise InputError("twix protocol has no TR/TE (MeasYaps alTR/alTE): not an imaging protocol this "
                         "converter supports")
    ms = 1e-3  # protocol times are µs
    n_echo = count("cEco")
    etl = int(float(dicom.get("EchoTrainLength") or 1))
    seq = X.sequenceParametersType(
        TR=[float(v) * ms for v in (yaps.get("alTR") or [])[:1]],
        TE=[float(v) * ms for v in (yaps.get("alTE") or [])[:n_echo]],
        TI=[float(v) * ms for v in (yaps.get("alTI") or [])[:1]] if "IR" in str(dicom.get("tScanningSequence", "")) else [],
        flipAngle_deg=[float(v) for v in (yaps.get("adFlipAngleDegree") or [])[:1]],
        sequence_type=_sequence_type(dicom, etl))
    field = float(dicom.get("flMagneticFieldStrength") or 0.0) or None
    pos = str(dicom.get("tPatientPosition") or "HFS")
    meas_info = X.measurementInformationType(
        measurementID=str(imaging[0].mdh.MeasUID),
        patientPosition=getattr(X.patientPositionType, pos, X.patientPositionType.HFS),
        protocolName=str(dicom.get("tProtocolName") or yaps.get("tProtocolName") or ""),
        sequenceName=os.path.basename(str(yaps.get("tSequenceFileName") or "").replace("\\", "/")))
    system = X.acquisitionSystemInformationType(
        systemVendor=str(dicom.get("Manufacturer") or "SIEMENS"), systemModel=str(dicom.get("ManufacturersModelName") or ""),
        systemFieldStrength_T=field, receiverChannels=int(channels),
        institutionName=str(dicom.get("InstitutionName") or "") or None)
    subj = X.subjectInformationType(patientGender=SEX.get(int(dicom.get("lPatientSex") or 0)))
    study = X.studyInformationType(bodyPartExamined=str(dicom.get("tBodyPartExamined") or "") or None)
    freq = dicom.get("lFrequency") or meas.get("lFrequency")
    return X.ismrmrdHeader(
        version=1, subjectInformation=subj, studyInformation=study, measurementInformation=meas_info,
        acquisitionSystemInformation=system,
        experimentalConditions=X.experimentalConditionsType(H1resonanceFrequency_Hz=int(freq or 0)),
        encoding=[enc], sequenceParameters=seq)


def to_acquisition(mdb, scan_counter: int):
    """One twix measurement data block → ismrmrd.Acquisition."""
    data = np.ascontiguousarray(np.asarray(mdb.data, dtype=np.complex64))
    if data.ndim != 2:
        raise InputError(f"twix: block {scan_counter} has data of shape {data.shape}, expected (channels, samples)")
    a = ismrmrd.Acquisition.from_array(data)
    h = mdb.mdh
    a.version = 1
    a.measurement_uid = int(h.MeasUID)
    a.scan_counter = int(scan_counter)
    a.acquisition_time_stamp = int(h.TimeStamp) & 0xFFFFFFFF
    a.available_channels = data.shape[0]
    a.center_sample = int(h.CenterCol)
    a.discard_pre, a.discard_post = int(h.CutOff.Pre), int(h.CutOff.Post)
    for i, n in zip(range(data.shape[0] // 64 + 1), range(data.shape[0], 0, -64)):
        a.channel_mask[i] = (1 << min(n, 64)) - 1 & 0xFFFFFFFFFFFFFFFF
    idx = a.idx
    idx.kspace_encode_step_1, idx.kspace_encode_step_2 = int(mdb.cLin), int(mdb.cPar)
    idx.slice, idx.contrast, idx.repetition, idx.set = int(mdb.cSlc), int(mdb.cEco), int(mdb.cRep), int(mdb.cSet)
    idx.average, idx.phase, idx.segment = int(mdb.cAve), int(mdb.cPhs), int(mdb.cSeg)
    for twix_flag, flag in FLAG_MAP:
        if mdb.is_flag_set(twix_flag):
            a.set_flag(getattr(ismrmrd, flag))
    sd = h.SliceData
    read, phase, slc = quaternion_directions(sd.Quaternion)
    a.position[:] = (float(sd.SlicePos.Sag), float(sd.SlicePos.Cor), float(sd.SlicePos.Tra))
    a.read_dir[:] = tuple(read)
    a.phase_dir[:] = tuple(phase)
    a.slice_dir[:] = tuple(slc)
    return a


def read_twix(path) -> tuple:
    """(ismrmrd.xsd.ismrmrdHeader, [ismrmrd.Acquisition]) from a twix file (the last measurement; noise
    adjust scans of earlier measurements first). InputError naming the file on anything unreadable."""
    import twixtools

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")

    chatter = io.StringIO()
    try:   # twixtools prints its warnings; they become part of our one-line errors instead
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            meas = twixtools.read_twix(path, verbose=False)
    except Exception as exc:  # twixtools raises bare errors on foreign files
        raise InputError(f"{path}: not a readable Siemens twix file ({type(exc).__name__}: {exc})") from None
    if not meas or "mdb" not in meas[-1] or "hdr" not in meas[-1]:
        raise InputError(f"{path}: not a Siemens twix file (no measurement found)")
    last = meas[-1]
    if not any(m.is_flag_set("ACQEND") or m.is_flag_set("LASTSCANINMEAS") for m in last["mdb"]):
        said = " ".join(chatter.getvalue().split())[:200]
        raise InputError(f"{path}: truncated twix file: the measurement stops after {len(last['mdb'])} data blocks "
                         f"without its end-of-measurement flag" + (f" ({said})" if said else ""))
    noise = [m for prev in meas[:-1] for m in prev.get("mdb", []) if m.is_flag_set("NOISEADJSCAN")]
    blocks = noise + [m for m in last["mdb"] if not any(m.is_flag_set(f) for f in SKIP_FLAGS)]
    blocks = [m for m in blocks if np.asarray(m.data).size]
    if not blocks:
        raise InputError(f"{path}: the twix file holds no imaging data")
    channels = int(np.asarray(blocks[-1].data).shape[0])
    header = build_header(last["hdr"], blocks, channels)
    return header, [to_acquisition(m, i) for i, m in enumerate(blocks)]


def convert(path_in, path_out) -> dict:
    """Write the ISMRMRD file `path_out` (group `dataset`) from the twix file `path_in` (atomic: no partial
    file on error; the input is only read). Returns a summary {acquisitions, noise, channels, matrix}."""

    header, acqs = read_twix(path_in)
    write_raw(path_out, X.ToXML(header), acqs, what=f"--out {os.fspath(path_out)!r}:")
    enc = header.encoding[0]
    return {"acquisitions": len(acqs), "noise": sum(a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT) for a in acqs),
            "channels": int(header.acquisitionSystemInformation.receiverChannels),
            "matrix": [int(enc.reconSpace.matrixSize.x), int(enc.reconSpace.matrixSize.y)]}
