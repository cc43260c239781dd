"""xml_chains/: every chain parses, its external module/target resolves to a real callable, and the
properties it sets are exactly the ones the gadget reads (ReconParams fields), each with its default."""

from __future__ import annotations

import importlib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gadget import gadgetron_gadget as gg
from gadget.params import ReconParams

CHAINS = sorted((Path(__file__).resolve().parents[1] / "xml_chains").glob("*.xml"))


def test_there_are_three_chains():
    names = {p.name for p in CHAINS}
    assert {"contextmri_cartesian.xml", "contextmri_acquisitions.xml", "contextmri_connect.xml"} <= names


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: p.name)
def test_chain_external_and_properties(path):
    root = ET.parse(path).getroot()
    assert root.tag == "configuration"
    externals = root.findall("./stream/external")
    assert len(externals) == 1, "one contextmri external stage per chain"
    ext = externals[0]
    execute, connect = ext.find("execute"), ext.find("connect")
    assert (execute is None) != (connect is None)
    if execute is not None:
        assert execute.get("type") == "python"
        target = getattr(importlib.import_module(execute.get("name")), execute.get("target"))
        assert callable(target) and target in (gg.recon_acquisitions, gg.recon_buffers)
    else:
        assert 0 < int(connect.get("port")) < 65536
    config = ext.find("configuration")
    props = {p.get("name"): p.get("value") for p in config.findall("property")}
    assert sorted(props) == sorted(gg.PROPERTY_NAMES)
    assert set(gg.PROPERTY_NAMES) == {f for f in ReconParams().to_dict()}
    assert props == gg.property_defaults()
    # what the gadget parses from this configuration is exactly the default parameter set
    assert gg.params_from_config(config).to_dict() == ReconParams().to_dict()
    assert gg.params_from_config(ET.tostring(config)).to_dict() == ReconParams().to_dict()


@pytest.mark.parametrize("path", CHAINS, ids=lambda p: p.name)
def test_chain_stage_order(path):
    root = ET.parse(path).getroot()
    stages = [el.findtext("classname") if el.tag == "gadget" else "external" for el in root.find("stream")]
    ext = root.find("./stream/external")
    target = ext.find("execute").get("target") if ext.find("execute") is not None else "recon_buffers"
    if target == "recon_buffers":
        assert stages == ["NoiseAdjustGadget", "RemoveROOversamplingGadget", "AcquisitionAccumulateTriggerGadget",
                          "BucketToBufferGadget", "external"]
    else:
        assert stages == ["external"]
    writers = [w.findtext("classname") for w in root.findall("./writers/writer")]
    assert writers == ["ImageWriter"]


def test_property_overrides_are_read():
    cfg = ET.fromstring('<configuration><property name="method" value="sense"/>'
                        '<property name="cfg" value="3.5"/><property name="pathology" value="none"/>'
                        '<property name="anatomy" value=""/></configuration>')
    p = gg.params_from_config(cfg)
    assert (p.method, p.cfg, p.pathology, p.anatomy) == ("sense", 3.5, [], None)
    with pytest.raises(ValueError, match="cfg"):
        gg.params_from_config('<configuration><property name="cfg" value="lots"/></configuration>')
