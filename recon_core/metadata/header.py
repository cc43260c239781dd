"""ISMRMRD header (or fastMRI `.h5`) → `MetadataRecord`.

Rules (unknown values are missing, never guessed; overrides always win):
- tr, te, ti, flip_angle: first entry of `sequenceParameters.{TR, TE, TI, flipAngle_deg}` (ms, ms, ms, deg);
  sequence: `sequenceParameters.sequence_type` as given (e.g. "TurboSpinEcho"). Absent → missing.
- contrast: by rules (`contrast_from_protocol`) from the fastMRI `acquisition` attribute if given, else from
  `measurementInformation.protocolName` (AXFLAIR → FLAIR, AXT1POST → T1POST, AXT1PRE → T1PRE, AXT1 → T1,
  AXT2 → T2, CORPD_FBK → PD, CORPDFS_FBK → PDFS, "t2_tse_tra" → T2, ...). No rule matches → missing.
- anatomy: `studyInformation.bodyPartExamined` (lower case; HEAD/BRAIN → "brain"), else a body-part word in
  the protocol name ("knee", "brain", "head"), else the fastMRI acquisition table (CORPD*_FBK → knee,
  AX* → brain; a fact of that data set), else missing.
- field_strength: `acquisitionSystemInformation.systemFieldStrength_T` (T).
- age: whole years from `subjectInformation.patientBirthdate` to `studyInformation.studyDate`
  (else `measurementInformation.seriesDate`); sex: `subjectInformation.patientGender` (M/F/O).
- pathology: never from the header; only from `overrides` (gadget configuration, CLI flag, JSON parameter).
- slice: the `slice_index` argument.
Bad input (malformed XML, non-numeric or negative numbers, birth date after the study) → InputError
naming the field. Unknown XML elements (newer schema versions) are tolerated with a warning logged once.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import warnings
from collections.abc import Mapping
from typing import Any

import h5py
import ismrmrd.xsd
from xsdata.exceptions import ConverterWarning, ParserError
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig

from recon_core.errors import InputError
from recon_core.metadata.record import MetadataRecord, coerce_number, parse_pathology

log = logging.getLogger(__name__)
_LOGGED: set[str] = set()


def _log_once(key: str, msg: str, level=logging.INFO):
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.log(level, msg)


# ---------------------------------------------------------------------------------------- parsing
def parse_header(xml) -> "ismrmrd.xsd.ismrmrdHeader":  # noqa: F821
    """XML text (str or bytes, a trailing NUL tolerated) → `ismrmrd.xsd.ismrmrdHeader`; malformed → InputError."""
    if isinstance(xml, (bytes, bytearray, memoryview)):
        xml = bytes(xml)
        try:
            xml = xml.decode("utf-8")
        except UnicodeDecodeError:
            xml = xml.decode("latin-1")
    if not isinstance(xml, str):
        raise InputError(f"ISMRMRD header: expected XML text or bytes, got {type(xml).__name__}")
    text = xml.strip().rstrip("\x00").strip()
    if not text:
        raise InputError("ISMRMRD header: empty XML document")
    # the xsdata parser reads the encoding from the declaration; a str with "encoding=" is fine for from_string
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConverterWarning)  # non-numeric values are reported below by field name
        try:
            return ismrmrd.xsd.CreateFromDocument(text)
        except ParserError as exc:
            if "Unknown property" not in str(exc):
                raise InputError(f"malformed ISMRMRD XML header: {exc}") from None
            _log_once("unknown-property", f"ISMRMRD header has elements outside the schema ({exc}); ignoring them",
                      logging.WARNING)
        except Exception as exc:  # expat and friends
            raise InputError(f"malformed ISMRMRD XML header: {exc}") from None

        try:
            return XmlParser(config=ParserConfig(fail_on_unknown_properties=False)).from_string(
                text, ismrmrd.xsd.ismrmrdHeader)
        except Exception as exc:
            raise InputError(f"malformed ISMRMRD XML header: {exc}") from None


# ---------------------------------------------------------------------------------------- rules
#: fastMRI `acquisition` attribute → (anatomy, contrast). A fact of the fastMRI data set.
FASTMRI_ACQUISITIONS = {
    "CORPD_FBK": ("knee", "PD"),
    "CORPDFS_FBK": ("knee", "PDFS"),
    "AXFLAIR": ("brain", "FLAIR"),
    "AXT1": ("brain", "T1"),
    "AXT1PRE": ("brain", "T1PRE"),
    "AXT1POST": ("brain", "T1POST"),
    "AXT2": ("brain", "T2"),
}

_ORIENT = re.compile(r"^(AXIAL|AXI|AX|CORONAL|COR|SAGITTAL|SAG|TRANSVERSAL|TRANS|TRA)(?=(T1|T2|PD|FLAIR|DIR|STIR))")
_BODY_PARTS = {"HEAD": "brain", "BRAIN": "brain", "NEURO": "brain", "KNEE": "knee"}


def _tokens(name: str) -> list[str]:
    """Upper-case alphanumeric tokens with a glued orientation prefix removed ("CORPDFS" → "PDFS")."""
    toks = [t for t in re.split(r"[^A-Z0-9*+]+", name.upper()) if t]
    return [_ORIENT.sub("", t) or t for t in toks]


def contrast_from_protocol(name: str | None) -> str | None:
    """Contrast label from a protocol name / fastMRI acquisition, or None when no rule matches.

    Rules, first match wins (on upper-case tokens, orientation prefixes AX/COR/SAG/TRA removed):
    FLAIR → FLAIR; T1 with POST/GAD/CE/+C → T1POST; T1 with PRE → T1PRE; T1 or MPRAGE → T1;
    T2* / T2STAR → None (not a T2 contrast); T2 → T2; PD with FS/FATSAT/SPAIR/SPIR → PDFS; PD/PDW → PD.
    """
    if not name or not name.strip():
        return None
    key = re.sub(r"[^A-Z0-9_]", "", name.upper())
    if key in FASTMRI_ACQUISITIONS:
        return FASTMRI_ACQUISITIONS[key][1]
    s = " " + " ".join(_tokens(name)) + " "
    if "FLAIR" in s:
        return "FLAIR"
    if re.search(r"(?<![A-Z0-9])T1", s):
        if re.search(r"POST|GAD|(?<![A-Z])CE(?![A-Z])|\+C|C\+", s):
            return "T1POST"
        if re.search(r"PRE", s):
            return "T1PRE"
        return "T1"
    if re.search(r"MPRAGE|MP2RAGE", s):
        return "T1"
    if re.search(r"T2\*|T2STAR", s):
        return None
    if re.search(r"(?<![A-Z0-9])T2(?![0-9])", s):
        return "T2"
    if re.search(r"(?<![A-Z0-9])PDW?(?![A-Z0-9])|(?<![A-Z0-9])PD(?=FS|FATSAT|SPAIR|SPIR)", s):
        if re.search(r"(?<![A-Z0-9])PD(FS|FATSAT|SPAIR|SPIR)|(?<![A-Z])(FS|FATSAT|SPAIR|SPIR)(?![A-Z])", s):
            return "PDFS"
        return "PD"
    return None


def anatomy_from_body_part(part: str | None) -> str | None:
    """DICOM-style BodyPartExamined → lower-case anatomy ("HEAD"/"BRAIN" → "brain", "KNEE" → "knee")."""
    if not part or not part.strip():
        return None
    key = part.strip().upper()
    return _BODY_PARTS.get(key, key.lower())


def anatomy_from_protocol(name: str | None) -> str | None:
    """Anatomy only when the protocol name says it ("t2_tse_knee" → "knee", "BRAIN_T1" → "brain")."""
    if not name:
        return None
    for word in re.split(r"[^A-Z]+", name.upper()):
        if word in _BODY_PARTS:
            return _BODY_PARTS[word]
    return None


# ---------------------------------------------------------------------------------------- overrides
_OVERRIDE_ALIASES = {
    "anatomy": "anatomy", "bodypart": "anatomy", "bodypartexamined": "anatomy",
    "slice": "slice", "sliceindex": "slice",
    "contrast": "contrast",
    "sequence": "sequence", "sequencetype": "sequence",
    "tr": "tr", "te": "te", "ti": "ti",
    "flipangle": "flip_angle", "flipangledeg": "flip_angle", "fa": "flip_angle",
    "fieldstrength": "field_strength", "fieldstrengtht": "field_strength", "b0": "field_strength",
    "age": "age", "sex": "sex", "gender": "sex", "patientgender": "sex",
    "pathology": "pathology", "pathologies": "pathology",
}


def normalize_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Override mapping (keys case/underscore-insensitive, e.g. "TR", "flip_angle", "gender") → record fields.

    Values None or "" mean "not set" and are dropped. Pathology may be a list or a comma string
    ("none" → [] = explicitly no pathology). Unknown keys → InputError.
    """
    if not overrides:
        return {}
    if not isinstance(overrides, Mapping):
        raise InputError(f"metadata overrides: expected a mapping, got {type(overrides).__name__}")
    out: dict[str, Any] = {}
    for k, v in overrides.items():
        key = re.sub(r"[^a-z0-9]", "", str(k).lower())
        if key not in _OVERRIDE_ALIASES:
            raise InputError(f"metadata override {k!r}: unknown field; expected one of "
                             f"{sorted(set(_OVERRIDE_ALIASES.values()))}")
        name = _OVERRIDE_ALIASES[key]
        if v is None or (isinstance(v, str) and not v.strip()):
            continue
        if name == "pathology" and isinstance(v, str):
            v = parse_pathology(v)
        out[name] = v
    return out


# ---------------------------------------------------------------------------------------- header → record
def _first_number(values, label: str) -> float | None:
    if values is None:
        return None
    if not isinstance(values, (list, tuple)):
        values = [values]
    if not values:
        return None
    return coerce_number(label, values[0])


def _age_years(birth, study) -> int:
    b = _dt.date(birth.year, birth.month, birth.day)
    s = _dt.date(study.year, study.month, study.day)
    if b > s:
        raise InputError(f"subjectInformation.patientBirthdate {b} is after the study date {s}")
    return s.year - b.year - ((s.month, s.day) < (b.month, b.day))


def record_from_header(header, slice_index: int | None = None, overrides: Mapping[str, Any] | None = None,
                       acquisition: str | None = None) -> MetadataRecord:
    """`ismrmrd.xsd.ismrmrdHeader` (or its XML text/bytes) + slice index → `MetadataRecord`.

    `acquisition`: the fastMRI `acquisition` attribute when the header comes from a fastMRI `.h5`.
    `overrides` (see `normalize_overrides`) win over the header. Rules: see the module docstring.
    """
    if not isinstance(header, ismrmrd.xsd.ismrmrdHeader):
        header = parse_header(header)
    rec: dict[str, Any] = {}

    seq = header.sequenceParameters
    if seq is not None:
        rec["tr"] = _first_number(seq.TR, "sequenceParameters.TR")
        rec["te"] = _first_number(seq.TE, "sequenceParameters.TE")
        rec["ti"] = _first_number(seq.TI, "sequenceParameters.TI")
        rec["flip_angle"] = _first_number(seq.flipAngle_deg, "sequenceParameters.flipAngle_deg")
        if seq.sequence_type and str(seq.sequence_type).strip():
            rec["sequence"] = str(seq.sequence_type).strip()
    else:
        _log_once("no-seq", "ISMRMRD header has no sequenceParameters: TR/TE/TI/flip angle/sequence missing")

    meas = header.measurementInformation
    protocol = meas.protocolName if meas is not None else None
    study = header.studyInformation

    contrast = contrast_from_protocol(acquisition) if acquisition else None
    if contrast is None:
        contrast = contrast_from_protocol(protocol)
    rec["contrast"] = contrast
    if contrast is None and (protocol or acquisition):
        _log_once(f"contrast:{acquisition}:{protocol}",
                  f"no contrast rule matches protocol {protocol!r} / acquisition {acquisition!r}: contrast missing")

    anatomy = anatomy_from_body_part(study.bodyPartExamined) if study is not None else None
    if anatomy is None:
        anatomy = anatomy_from_protocol(protocol)
    if anatomy is None and acquisition:
        key = re.sub(r"[^A-Z0-9_]", "", acquisition.upper())
        anatomy = FASTMRI_ACQUISITIONS.get(key, (None, None))[0]
    rec["anatomy"] = anatomy

    sysinfo = header.acquisitionSystemInformation
    if sysinfo is not None and sysinfo.systemFieldStrength_T is not None:
        rec["field_strength"] = coerce_number("acquisitionSystemInformation.systemFieldStrength_T",
                                              sysinfo.systemFieldStrength_T)

    subj = header.subjectInformation
    if subj is not None:
        if subj.patientGender is not None and str(subj.patientGender).strip():
            g = str(subj.patientGender).strip().upper()
            if g in ("M", "F", "O"):
                rec["sex"] = g
            else:
                _log_once(f"gender:{g}", f"subjectInformation.patientGender {g!r} is not M/F/O: sex missing")
        study_date = (study.studyDate if study is not None else None) or (meas.seriesDate if meas is not None else None)
        if subj.patientBirthdate is not None and study_date is not None:
            rec["age"] = _age_years(subj.patientBirthdate, study_date)

    if slice_index is not None:
        rec["slice"] = coerce_number("slice_index", slice_index, integer=True)

    rec.update(normalize_overrides(overrides))
    return MetadataRecord(**rec)


# ---------------------------------------------------------------------------------------- fastMRI h5
def read_fastmri_h5(path) -> tuple[bytes, str | None, int | None]:
    """fastMRI `.h5` → (header XML bytes, `acquisition` attribute or None, number of slices or None)."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        if "ismrmrd_header" not in f:
            raise InputError(f"{path}: expected a fastMRI file with an 'ismrmrd_header' dataset; "
                             f"found {sorted(f.keys())}")
        xml = f["ismrmrd_header"][()]
        if hasattr(xml, "tobytes") and not isinstance(xml, (bytes, str)):
            xml = xml.tobytes()
        if isinstance(xml, str):
            xml = xml.encode("utf-8")
        acq = f.attrs.get("acquisition")
        if isinstance(acq, bytes):
            acq = acq.decode("utf-8", "replace")
        acq = str(acq) if acq is not None else None
        n = int(f["kspace"].shape[0]) if "kspace" in f else None
    return bytes(xml), acq, n


def record_from_fastmri_h5(path, slice_index: int | None = None,
                           overrides: Mapping[str, Any] | None = None) -> MetadataRecord:
    """fastMRI `.h5` (`ismrmrd_header` dataset + `acquisition` attribute) → `MetadataRecord` (same rules)."""
    xml, acq, n = read_fastmri_h5(path)
    if slice_index is not None and n is not None and not 0 <= int(slice_index) < n:
        raise InputError(f"{path}: slice index {slice_index} out of range [0, {n})")
    return record_from_header(xml, slice_index=slice_index, overrides=overrides, acquisition=acq)
