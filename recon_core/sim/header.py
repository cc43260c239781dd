"""The ISMRMRD XML header of a simulated scan, filled as a scanner (Siemens-to-ISMRMRD style) writes it.

- subjectInformation: patientID, birth date, sex (M/F), weight/height.
- studyInformation: studyDate/Time, studyID, studyDescription, bodyPartExamined "BRAIN".
- measurementInformation: measurementID, seriesDate/Time, patientPosition HFS, protocolName (AXT1,
  AXT1POST, AXT2, AXFLAIR, AXPD), sequenceName, seriesDescription.
- acquisitionSystemInformation: vendor/model "contextmri simulator", systemFieldStrength_T,
  relativeReceiverNoiseBandwidth 0.793, receiverChannels, coilLabel per channel, institutionName.
- experimentalConditions: H1 resonance frequency (42.577 MHz/T · B0).
- encoding[0]: encodedSpace (readout oversampled: matrix 2·nx × ny × 1, FOV 2·FOV × FOV × thickness),
  reconSpace (nx × ny × 1, FOV × FOV × thickness), encodingLimits (kspace_encoding_step_0/1/2, slice,
  average, contrast, phase, repetition, set, segment with centres), trajectory cartesian,
  parallelImaging (accelerationFactor step1 = round(R) (≥ 1), step2 = 1; calibrationMode embedded /
  separate), echoTrainLength.
- sequenceParameters: TR, TE, TI (inversion recovery only), flipAngle_deg, sequence_type, echo_spacing.
- userParameters: pathology labels (string, "" = none) and the simulation seed, for traceability.
"""

from __future__ import annotations

import ismrmrd.xsd as X
from xsdata.models.datatype import XmlDate, XmlTime

GAMMA_MHZ_PER_T = 42.577478


def _limit(lo: int, hi: int, centre: int) -> X.limitType:
    return X.limitType(minimum=int(lo), maximum=int(hi), center=int(centre))


def build_header(*, protocol, subject, matrix: int, n_slices: int, n_coils: int, fov_mm: float,
                 thickness_mm: float, accel: float, calibration_mode: str, oversampling: int = 2,
                 pathology_labels=(), seed: int = 0, acs_lines: int = 0) -> X.ismrmrdHeader:
    """Build the header (see the module docstring). Returns an `ismrmrd.xsd.ismrmrdHeader`."""
    M = int(matrix)
    y, mo, d = subject.study_date
    by, bm, bd = subject.birth_date
    hh, mm = 8 + seed % 10, (seed // 10) % 60
    subj = X.subjectInformationType(
        patientName="SIMULATED^SUBJECT", patientID=f"SIM{subject.seed:08d}",
        patientWeight_kg=float(round(60 + (subject.seed % 40) + (8 if subject.sex == "M" else 0), 1)),
        patientHeight_m=float(round(1.60 + 0.01 * (subject.seed % 25) + (0.08 if subject.sex == "M" else 0), 2)),
        patientBirthdate=XmlDate(by, bm, bd), patientGender=subject.sex)
    study = X.studyInformationType(studyDate=XmlDate(y, mo, d), studyTime=XmlTime(hh, mm, 0),
                                   studyID=f"{subject.seed}", studyDescription="contextmri simulated brain",
                                   bodyPartExamined="BRAIN")
    meas = X.measurementInformationType(
        measurementID=f"SIM_{subject.seed}_{seed}", seriesDate=XmlDate(y, mo, d), seriesTime=XmlTime(hh, mm, 30),
        patientPosition=X.patientPositionType.HFS, initialSeriesNumber=1, protocolName=protocol.protocol_name,
        sequenceName={"Flash": "fl2d1", "TurboSpinEcho": "tse2d1"}[protocol.sequence] if protocol.ti is None
        else "tir2d1", seriesDescription=protocol.protocol_name)
    system = X.acquisitionSystemInformationType(
        systemVendor="contextmri", systemModel="simulator", systemFieldStrength_T=float(protocol.field),
        relativeReceiverNoiseBandwidth=0.793, receiverChannels=int(n_coils),
        coilLabel=[X.coilLabelType(coilNumber=c, coilName=f"Head_{n_coils}:1:H{c + 1}") for c in range(n_coils)],
        institutionName="contextmri", stationName="sim")
    cond = X.experimentalConditionsType(H1resonanceFrequency_Hz=int(round(GAMMA_MHZ_PER_T * protocol.field * 1e6)))
    enc_space = X.encodingSpaceType(matrixSize=X.matrixSizeType(x=oversampling * M, y=M, z=1),
                                    fieldOfView_mm=X.fieldOfViewMm(x=oversampling * fov_mm, y=fov_mm, z=thickness_mm))
    rec_space = X.encodingSpaceType(matrixSize=X.matrixSizeType(x=M, y=M, z=1),
                                    fieldOfView_mm=X.fieldOfViewMm(x=fov_mm, y=fov_mm, z=thickness_mm))
    z = _limit(0, 0, 0)
    limits = X.encodingLimitsType(
        kspace_encoding_step_0=_limit(0, oversampling * M - 1, oversampling * M // 2),
        kspace_encoding_step_1=_limit(0, M - 1, M // 2), kspace_encoding_step_2=z,
        average=z, slice=_limit(0, n_slices - 1, 0), contrast=z, phase=z, repetition=z, set=z, segment=z)
    pi = X.parallelImagingType(
        accelerationFactor=X.accelerationFactorType(kspace_encoding_step_1=max(int(round(accel)), 1),
                                                    kspace_encoding_step_2=1),
        calibrationMode=X.calibrationModeType.EMBEDDED if calibration_mode == "embedded"
        else X.calibrationModeType.SEPARATE)
    enc = X.encodingType(encodedSpace=enc_space, reconSpace=rec_space, encodingLimits=limits,
                         trajectory=X.trajectoryType.CARTESIAN, parallelImaging=pi,
                         echoTrainLength=int(protocol.etl))
    seq = X.sequenceParametersType(
        TR=[float(protocol.tr)], TE=[float(protocol.te)], TI=[float(protocol.ti)] if protocol.ti is not None else [],
        flipAngle_deg=[float(protocol.flip)], sequence_type=protocol.sequence,
        echo_spacing=[float(protocol.echo_spacing)] if protocol.echo_spacing is not None else [])
    user = X.userParametersType(
        userParameterLong=[X.userParameterLongType(name="sim_seed", value=int(seed)),
                           X.userParameterLongType(name="sim_subject_seed", value=int(subject.seed)),
                           X.userParameterLongType(name="acs_lines", value=int(acs_lines))],
        userParameterString=[X.userParameterStringType(name="pathology", value=",".join(pathology_labels))])
    return X.ismrmrdHeader(version=1, subjectInformation=subj, studyInformation=study, measurementInformation=meas,
                           acquisitionSystemInformation=system, experimentalConditions=cond, encoding=[enc],
                           sequenceParameters=seq, userParameters=user)


def header_xml(header: X.ismrmrdHeader) -> str:
    """Serialise to XML text (round-trips through `ismrmrd.xsd.CreateFromDocument`)."""
    return X.ToXML(header)
