"""Real raw data for the real-data evaluation (`contextmri evaluate-real`), as ISMRMRD files.

    python results/real/prepare.py /work/realdata /work/realdata/ismrmrd

Sources (fetched with the session tool `fetch` from public GitHub repositories; see README.md here):
- pulseq/MR-Physics-with-Pulseq @446ac401ff5b2e1ab4ca5a6d36fc7434a83afd99 (MIT),
  tutorials/04_hardware_and_imprefections/data/2024-02-06-164128.dat: in-vivo brain, Siemens Cima.X 2.89 T,
  16-channel head/neck coil, PyPulseq 2D FLASH 128², TR 48 ms, TE 12.4 ms, flip 8°, 3 mm, FOV 256 mm, fully
  sampled, no noise scan. The twix protocol holds the host sequence's placeholders (TR 100, TE 10, FA 15,
  64² image, centre line 0): the header is corrected from the tutorial notebook (2D_FLASH_B1_minus_fieldmap).
  Also committed as tests/data/real/pulseq_invivo_flash.h5 (MIT; provenance in tests/data/real/README.md).
- marcsous/parallel @7ef50e0c1fe54d1831c130da601858a54c111e20 (no licence file: not committed),
  head.mat: in-vivo brain, 8 channels, 256², complex coil images (scanner/sequence not stated).
"""

from __future__ import annotations

import os
import sys

import numpy as np


def kspace_to_acquisitions(ksp: np.ndarray, center_line: int) -> list:
    """(C, ny, nx) fully sampled k-space → one ismrmrd.Acquisition per line (slice 0, first/last flags)."""
    import ismrmrd

    C, ny, nx = ksp.shape
    out = []
    for ky in range(ny):
        a = ismrmrd.Acquisition.from_array(np.ascontiguousarray(ksp[:, ky, :]).astype(np.complex64))
        a.idx.kspace_encode_step_1 = ky
        a.center_sample = nx // 2
        a.read_dir[:] = (1.0, 0.0, 0.0)
        a.phase_dir[:] = (0.0, 1.0, 0.0)
        a.slice_dir[:] = (0.0, 0.0, 1.0)
        if ky == 0:
            a.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
        if ky == ny - 1:
            a.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
            a.set_flag(ismrmrd.ACQ_LAST_IN_MEASUREMENT)
        out.append(a)
    return out


def header_xml(ny: int, nx: int, coils: int, fov_mm: tuple, thickness_mm: float, field_t: float | None,
               vendor: str | None, model: str | None, seq: dict | None, body_part: str = "HEAD") -> str:
    import ismrmrd.xsd as X

    cond = X.experimentalConditionsType(H1resonanceFrequency_Hz=int(42.577e6 * (field_t or 3)))
    h = X.ismrmrdHeader(experimentalConditions=cond)
    h.studyInformation = X.studyInformationType(bodyPartExamined=body_part)
    h.measurementInformation = X.measurementInformationType(patientPosition=X.patientPositionType.HFS,
                                                             protocolName=(seq or {}).get("protocol", "unknown"))
    sysinfo = X.acquisitionSystemInformationType(receiverChannels=coils)
    if field_t:
        sysinfo.systemFieldStrength_T = float(field_t)
    if vendor:
        sysinfo.systemVendor = vendor
    if model:
        sysinfo.systemModel = model
    h.acquisitionSystemInformation = sysinfo
    space = X.encodingSpaceType(matrixSize=X.matrixSizeType(x=nx, y=ny, z=1),
                                fieldOfView_mm=X.fieldOfViewMm(x=fov_mm[0], y=fov_mm[1], z=thickness_mm))
    lim = X.encodingLimitsType(kspace_encoding_step_1=X.limitType(minimum=0, maximum=ny - 1, center=ny // 2),
                               kspace_encoding_step_0=X.limitType(minimum=0, maximum=nx - 1, center=nx // 2),
                               slice=X.limitType(minimum=0, maximum=0, center=0))
    enc = X.encodingType(encodedSpace=space, reconSpace=space, encodingLimits=lim,
                         trajectory=X.trajectoryType.CARTESIAN)
    h.encoding.append(enc)
    if seq:
        h.sequenceParameters = X.sequenceParametersType(TR=[seq["TR"]], TE=[seq["TE"]],
                                                        flipAngle_deg=[seq["flip"]], sequence_type=seq["type"])
    return X.ToXML(h)



def load_twix_lines(path: str) -> np.ndarray:
    """(C, ny, nx) k-space of a single-slice Cartesian twix file, lines placed by the MDH line counter."""
    import twixtools

    meas = twixtools.read_twix(path, verbose=False)[-1]
    mdb = [m for m in meas["mdb"] if m.is_image_scan()]
    ny = max(m.cLin for m in mdb) + 1
    C, nx = mdb[0].data.shape
    k = np.zeros((C, ny, nx), np.complex64)
    for m in mdb:
        k[:, m.cLin, :] = m.data
    return k


def main(src: str, out: str) -> None:
    from recon_core.raw.writer import write_raw

    os.makedirs(out, exist_ok=True)
    twix = os.path.join(src, "pulseq+MR-Physics-with-Pulseq/tutorials/04_hardware_and_imprefections/data/"
                             "2024-02-06-164128.dat")
    if os.path.exists(twix):
        k = load_twix_lines(twix)
        peak = int(np.argmax((np.abs(k) ** 2).sum(axis=(0, 2))))
        print(f"pulseq in vivo: {k.shape}, k-space peak at line {peak}")
        xml = header_xml(k.shape[1], k.shape[2], k.shape[0], (256.0, 256.0), 3.0, 2.89362, "Siemens",
                         "MAGNETOM Cima.X", {"TR": 48.0, "TE": 12.4, "flip": 8.0, "type": "Flash",
                                             "protocol": "pulseq_2D_FLASH"})
        write_raw(os.path.join(out, "pulseq_invivo_flash.h5"), xml, kspace_to_acquisitions(k, k.shape[1] // 2), {},
                  what="output")
    mat = os.path.join(src, "marcsous+parallel/head.mat")
    if os.path.exists(mat):
        import scipy.io as sio

        from recon_core.fft import fft2c_np

        img = np.moveaxis(sio.loadmat(mat)["data"], -1, 0).astype(np.complex64)   # (8, 256, 256) coil images
        k = fft2c_np(img).astype(np.complex64)
        print(f"marcsous head: {k.shape}")
        xml = header_xml(k.shape[1], k.shape[2], k.shape[0], (240.0, 240.0), 5.0, None, None, None, None)
        write_raw(os.path.join(out, "marcsous_head.h5"), xml, kspace_to_acquisitions(k, k.shape[1] // 2), {},
                  what="output")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
