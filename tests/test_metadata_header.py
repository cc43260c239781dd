"""Header → MetadataRecord → prompt, on headers written with ismrmrd and on a fastMRI-style .h5."""

import json
import subprocess
import sys

import h5py
import ismrmrd
import ismrmrd.xsd as x
import numpy as np
import pytest
from xsdata.models.datatype import XmlDate

from recon_core.errors import InputError
from recon_core.metadata import MetadataRecord, record_from_fastmri_h5, record_from_header
from recon_core.metadata.header import contrast_from_protocol, parse_header
from recon_core.metadata.prompt import build_prompt
from recon_core.metadata.record import format_number

KNEE_PROMPT = "knee, Slice 20, PDFS, Sequence: TurboSpinEcho, TR: 3120, TE: 33, TI: 100, Flip angle: 140"


def make_header(seq=True, subject=True, protocol="CORPDFS_FBK", body_part="KNEE", tr=3120.0, te=33.0):
    h = x.ismrmrdHeader(experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=123251815))
    space = x.encodingSpaceType(matrixSize=x.matrixSizeType(x=64, y=64, z=1),
                                fieldOfView_mm=x.fieldOfViewMm(x=140.0, y=140.0, z=3.0))
    lim = x.encodingLimitsType(slice=x.limitType(minimum=0, maximum=2, center=1))
    h.encoding = [x.encodingType(trajectory=x.trajectoryType.CARTESIAN, encodedSpace=space, reconSpace=space,
                                 encodingLimits=lim)]
    h.measurementInformation = x.measurementInformationType(patientPosition=x.patientPositionType.HFS,
                                                            protocolName=protocol)
    h.acquisitionSystemInformation = x.acquisitionSystemInformationType(systemVendor="SIEMENS",
                                                                        systemFieldStrength_T=2.89362)
    if body_part is not None or subject:
        h.studyInformation = x.studyInformationType(bodyPartExamined=body_part,
                                                    studyDate=XmlDate(2018, 5, 2) if subject else None)
    if seq:
        h.sequenceParameters = x.sequenceParametersType(TR=[tr], TE=[te], TI=[100.0], flipAngle_deg=[140.0],
                                                        sequence_type="TurboSpinEcho")
    if subject:
        h.subjectInformation = x.subjectInformationType(patientBirthdate=XmlDate(1970, 5, 3), patientGender="F")
    return h


def write_ismrmrd(path, header):
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    ds.write_xml_header(x.ToXML(header))
    for s in range(3):
        acq = ismrmrd.Acquisition.from_array(np.zeros((2, 16), np.complex64))
        acq.idx.slice = s
        ds.append_acquisition(acq)
    ds.close()


def test_full_header_record_and_prompt(tmp_path):
    path = tmp_path / "raw.h5"
    write_ismrmrd(path, make_header())
    ds = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    xml = ds.read_xml_header()
    ds.close()
    rec = record_from_header(xml, slice_index=20)
    assert rec == MetadataRecord(anatomy="knee", slice=20, contrast="PDFS", sequence="TurboSpinEcho", tr=3120.0,
                                 te=33.0, ti=100.0, flip_angle=140.0, field_strength=2.89362, age=47, sex="F")
    assert build_prompt(rec) == KNEE_PROMPT
    # the parsed header object takes the same path
    assert record_from_header(x.CreateFromDocument(xml), slice_index=20) == rec
    # pathology only from overrides, and overrides win
    rec2 = record_from_header(xml, 20, {"pathology": "Meniscus Tear, Joint Effusion", "TR": "2800", "Contrast": "PD"})
    assert rec2.pathology == ["Meniscus Tear", "Joint Effusion"]
    assert build_prompt(rec2) == ("knee, Slice 20, PD, Pathology: Meniscus Tear, Joint Effusion, Sequence: TurboSpinEcho, "
                                  "TR: 2800, TE: 33, TI: 100, Flip angle: 140")
    assert record_from_header(xml, 20, {"pathology": "none"}).pathology == []
    assert build_prompt(record_from_header(xml, 20, {"pathology": "none"})) == KNEE_PROMPT


def test_header_without_sequence_parameters_or_subject():
    h = make_header(seq=False, subject=False, protocol="AX FLAIR", body_part="HEAD")
    rec = record_from_header(x.ToXML(h), slice_index=3)
    assert rec.to_dict() == {"anatomy": "brain", "slice": 3, "contrast": "FLAIR", "sequence": None, "tr": None,
                             "te": None, "ti": None, "flip_angle": None, "field_strength": 2.89362, "age": None,
                             "sex": None, "pathology": None}
    assert build_prompt(rec) == "brain, Slice 3, FLAIR"
    # nothing known about anatomy: missing, never guessed
    rec = record_from_header(make_header(seq=False, subject=False, protocol="AXT1POST", body_part=None), 0)
    assert rec.anatomy is None and rec.contrast == "T1POST"
    assert build_prompt(rec) == "Slice 0, T1POST"
    # anatomy from the protocol name when it says so
    assert record_from_header(make_header(protocol="t2_tse_knee_sag", body_part=None), 0).anatomy == "knee"


def test_skmtea_prompt_and_number_formatting():
    h = make_header(tr=20.36, te=6.428, protocol="qDESS", body_part="KNEE")
    h.sequenceParameters.sequence_type = "qDESS"
    h.sequenceParameters.flipAngle_deg = [20.0]
    rec = record_from_header(x.ToXML(h), slice_index=46, overrides={"age": 48})
    assert build_prompt(rec, "skmtea") == "Qdess, Knee, Slice 46, Age: 48, Sex: F, TR: 20.36, TE: 6.428, Flip Angle: 20"
    assert [format_number(v) for v in (3120.0, 20.36, 6.428, 0.5, 140, 2.89362)] == \
        ["3120", "20.36", "6.428", "0.5", "140", "2.89362"]


@pytest.mark.parametrize("name,expected", [
    ("AXFLAIR", "FLAIR"), ("AXT1POST", "T1POST"), ("AXT1PRE", "T1PRE"), ("AXT1", "T1"), ("AXT2", "T2"),
    ("CORPD_FBK", "PD"), ("CORPDFS_FBK", "PDFS"), ("AXPD", "PD"), ("t2_tse_tra", "T2"), ("t1_mprage_sag", "T1"),
    ("pd_tse_fs_cor", "PDFS"), ("t2_flair_tra", "FLAIR"), ("T2* GRE", None), ("localizer", None), ("", None)])
def test_contrast_rules(name, expected):
    assert contrast_from_protocol(name) == expected


FASTMRI_XML = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
  <version>1</version>
  <studyInformation>
    <studyTime>16:11:03</studyTime>
    <bodyPartExamined>KNEE</bodyPartExamined>
  </studyInformation>
  <measurementInformation>
    <measurementID>45328_49436101_49436106_457</measurementID>
    <patientPosition>FFS</patientPosition>
    <protocolName>COR PD FS_FBK</protocolName>
    <frameOfReferenceUID>1.3.12.2.1107.5.2.19.45328.1.20170524161102793.0.0.5011</frameOfReferenceUID>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor>
    <systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T>
    <relativeReceiverNoiseBandwidth>0.793</relativeReceiverNoiseBandwidth>
    <receiverChannels>15</receiverChannels>
    <coilLabel><coilNumber>0</coilNumber><coilName>Knee_15:1:K01</coilName></coilLabel>
    <coilLabel><coilNumber>1</coilNumber><coilName>Knee_15:1:K02</coilName></coilLabel>
    <institutionName>NYU</institutionName>
  </acquisitionSystemInformation>
  <experimentalConditions>
    <H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>640</x><y>368</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>320</x><y>320</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>366</maximum><center>184</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>34</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
    <parallelImaging>
      <accelerationFactor><kspace_encoding_step_1>1</kspace_encoding_step_1><kspace_encoding_step_2>1</kspace_encoding_step_2></accelerationFactor>
      <calibrationMode>other</calibrationMode>
    </parallelImaging>
  </encoding>
  <sequenceParameters>
    <TR>2870</TR>
    <TE>33</TE>
    <TI>100</TI>
    <flipAngle_deg>140</flipAngle_deg>
    <sequence_type>TurboSpinEcho</sequence_type>
    <echo_spacing>11.12</echo_spacing>
  </sequenceParameters>
  <userParameters>
    <userParameterLong><name>EmbeddedRefLinesE1</name><value>0</value></userParameterLong>
    <userParameterDouble><name>MaxwellCoefficient_0</name><value>0</value></userParameterDouble>
  </userParameters>
</ismrmrdHeader>
"""


def write_fastmri(path, xml, acquisition="CORPDFS_FBK", n_slices=35):
    with h5py.File(path, "w") as f:
        f.create_dataset("ismrmrd_header", data=np.bytes_(xml.encode("utf-8") + b"\x00"))
        f.create_dataset("kspace", data=np.zeros((n_slices, 2, 4, 4), np.complex64))
        f.attrs["acquisition"] = acquisition
        f.attrs["patient_id"] = "abc"


def test_fastmri_h5_same_record_as_ismrmrd_path(tmp_path):
    path = tmp_path / "file1000001.h5"
    write_fastmri(path, FASTMRI_XML)
    before = path.read_bytes()
    rec = record_from_fastmri_h5(path, slice_index=20)
    assert rec == record_from_header(FASTMRI_XML, slice_index=20)
    assert rec == MetadataRecord(anatomy="knee", slice=20, contrast="PDFS", sequence="TurboSpinEcho", tr=2870.0,
                                 te=33.0, ti=100.0, flip_angle=140.0, field_strength=2.89362)
    assert build_prompt(rec) == "knee, Slice 20, PDFS, Sequence: TurboSpinEcho, TR: 2870, TE: 33, TI: 100, Flip angle: 140"
    assert path.read_bytes() == before  # input not modified
    # without bodyPartExamined and with an uninformative protocol, the fastMRI acquisition attribute decides
    xml2 = FASTMRI_XML.replace("<bodyPartExamined>KNEE</bodyPartExamined>", "").replace("COR PD FS_FBK", "x")
    write_fastmri(tmp_path / "b.h5", xml2, acquisition="AXT1POST")
    r2 = record_from_fastmri_h5(tmp_path / "b.h5", 3)
    assert (r2.anatomy, r2.contrast) == ("brain", "T1POST")
    assert record_from_header(xml2, 3, acquisition="AXT1POST") == r2
    with pytest.raises(InputError, match="out of range"):
        record_from_fastmri_h5(path, slice_index=35)


@pytest.mark.parametrize("mutate,field", [
    (lambda s: s.replace("<TR>2870</TR>", "<TR>fast</TR>"), "TR"),
    (lambda s: s.replace("<TE>33</TE>", "<TE>-33</TE>"), "TE"),
    (lambda s: s.replace("<systemFieldStrength_T>2.89362", "<systemFieldStrength_T>-3"), "systemFieldStrength_T"),
    (lambda s: s.replace("</ismrmrdHeader>", ""), "malformed"),
    (lambda s: "not xml at all", "malformed"),
])
def test_bad_headers_name_the_field(mutate, field):
    with pytest.raises(InputError, match=field):
        record_from_header(mutate(FASTMRI_XML), 0)


def test_bad_subject_and_overrides():
    h = make_header()
    h.subjectInformation.patientBirthdate = XmlDate(2019, 1, 1)
    with pytest.raises(InputError, match="patientBirthdate"):
        record_from_header(h, 0)
    with pytest.raises(InputError, match="colour"):
        record_from_header(make_header(), 0, {"colour": "red"})
    with pytest.raises(InputError, match="'tr'"):
        record_from_header(make_header(), 0, {"tr": "abc"})
    with pytest.raises(InputError, match="'sex'"):
        record_from_header(make_header(), 0, {"sex": "X"})
    with pytest.raises(InputError, match="slice"):
        record_from_header(make_header(), -1)


def test_trailing_nul_and_unknown_elements_tolerated():
    assert parse_header(FASTMRI_XML + "\x00").sequenceParameters.TR == [2870.0]
    odd = FASTMRI_XML.replace("<version>1</version>", "<version>1</version><vendorThing>3</vendorThing>")
    assert record_from_header(odd.encode(), 1).tr == 2870.0


def test_record_roundtrip_and_replace():
    rec = MetadataRecord(anatomy="Knee", slice=3, tr="3120", pathology=["Meniscus Tear", "none"], sex="female")
    assert (rec.anatomy, rec.tr, rec.pathology, rec.sex) == ("knee", 3120.0, ["Meniscus Tear"], "F")
    d = json.loads(json.dumps(rec.to_dict()))
    assert MetadataRecord.from_dict(d) == rec
    assert rec.replace(tr=None).tr is None and rec.tr == 3120.0
    assert MetadataRecord().is_empty() and build_prompt(MetadataRecord()) == ""
    with pytest.raises(InputError, match="unknown field"):
        MetadataRecord.from_dict({"TR": 3})


def test_cli_prompt(tmp_path):
    raw = tmp_path / "raw.h5"
    write_ismrmrd(raw, make_header())
    from gadget.cli import main

    out = subprocess.run([sys.executable, "-m", "gadget.cli", "prompt", str(raw), "--jsonl", "--pathology",
                          "Meniscus Tear"], capture_output=True, text=True, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["slice_index"] for d in lines] == [0, 1, 2]
    assert lines[1]["prompt"] == ("knee, Slice 1, PDFS, Pathology: Meniscus Tear, Sequence: TurboSpinEcho, TR: 3120, "
                                  "TE: 33, TI: 100, Flip angle: 140")
    assert MetadataRecord.from_dict(lines[1]["record"]).pathology == ["Meniscus Tear"]
    fm = tmp_path / "fm.h5"
    write_fastmri(fm, FASTMRI_XML, n_slices=4)
    assert main(["prompt", str(fm), "--slice", "2"]) == 0
    assert main(["prompt", str(fm), "--tr", "abc"]) == 2
    assert main(["prompt", str(tmp_path / "missing.h5")]) == 2
