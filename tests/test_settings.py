"""SamplerConfig (the one declaration of the sampler's settings) and ReconParams built on it: parsing from
strings, range/finiteness checks with one clear line, CLI flags, and the same settings in every front door."""

from __future__ import annotations

import argparse

import pytest

from gadget.params import ReconParams
from recon_core.errors import InputError
from recon_core.samplers import SamplerConfig


def test_defaults_and_meta_roundtrip():
    c = SamplerConfig()
    # the defaults chosen on the validation split (results/sampler, README "Sampler defaults")
    assert (c.nfe, c.cfg, c.eta, c.gamma, c.cg_iters, c.samples, c.warm_start) == (50, 2.0, 1.0, 20.0, 5, 1, 0.3)
    # sparse data consistency (session 12 sweep, training/RUNS.md "Sparse data consistency")
    assert (c.wavelet_lambda, c.prior_weight, c.admm_iters, c.admm_cg_iters) == (1e-3, 1.0, 3, 3)
    assert SamplerConfig.from_mapping(c.to_meta()) == c
    assert set(c.to_meta()) == set(SamplerConfig.sampler_fields())
    with pytest.raises(Exception):
        c.nfe = 3  # frozen


@pytest.mark.parametrize("key,value,msg", [
    ("seed", "inf", "seed must be an integer"), ("nfe", "1e400", "nfe must be an integer"),
    ("nfe", "0", "nfe must be >= 1"), ("cfg", "nan", "cfg must be finite"), ("cfg", "-1", "cfg must be >= 0"),
    ("warm_start", "0", "warm_start must be > 0"), ("warm_start", "1.5", "warm_start must be <= 1"),
    ("precision", "fp8", "precision must be one of"), ("samples", "2.5", "samples must be an integer"),
    ("eta", "lots", "eta must be a number"), ("scale", "magic", "scale must be one of"),
    ("gamma", "inf", "gamma must be finite")])
def test_bad_values_one_clear_line(key, value, msg):
    with pytest.raises(InputError, match=msg):
        SamplerConfig.from_mapping({key: value})
    with pytest.raises(InputError, match=msg):
        ReconParams.from_mapping({key: value})


def test_strings_parse_like_typed_values():
    c = SamplerConfig.from_mapping({"NFE": "20", "cfg": "1.5", "warm-start": "0.3", "clip_x0": "none",
                                "precision": "BF16", "final_cg_iters": "10"})
    assert (c.nfe, c.cfg, c.warm_start, c.clip_x0, c.precision, c.final_cg_iters) == (20, 1.5, 0.3, None, "bf16", 10)
    assert SamplerConfig.from_mapping({"nfe": "", "cfg": None}) == SamplerConfig()
    with pytest.raises(InputError, match="unknown parameter"):
        SamplerConfig.from_mapping({"nfee": 3})
    assert SamplerConfig.from_mapping({"nfee": 3}, strict=False) == SamplerConfig()


def test_recon_params_is_a_dds_config():
    p = ReconParams.from_mapping({"method": "SENSE", "nfe": "7", "pathology": "none", "foo": "1"})
    assert isinstance(p, SamplerConfig) and p.method == "sense" and p.pathology == [] and p.extra == {"foo": "1"}
    # the front doors self-validate by default; the sampler library (and the evaluations) run DDS alone
    assert p.sampler() == SamplerConfig(nfe=7, self_validate=True) and not SamplerConfig().self_validate
    assert set(SamplerConfig.sampler_fields()) < set(ReconParams.field_names())
    with pytest.raises(InputError, match="method must be one of"):
        ReconParams(method="magic")


def test_cli_flags_from_the_config():
    parser = argparse.ArgumentParser()
    SamplerConfig.add_arguments(parser, defaults={"samples": 2})
    args = parser.parse_args(["--nfe", "12", "--warm-start", "0.4", "--cfg", "0"])
    c = SamplerConfig.from_args(args)
    assert (c.nfe, c.warm_start, c.cfg, c.samples) == (12, 0.4, 0.0, 2)
    with pytest.raises(InputError, match="warm_start"):
        SamplerConfig.from_args(parser.parse_args(["--warm-start", "2"]))
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings}
    assert {"--" + f.replace("_", "-") for f in SamplerConfig.sampler_fields()} <= flags


def test_replay_cli_non_finite_seed_is_exit_2(tmp_path, capsys):
    from gadget.cli import main

    rc = main(["replay", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "o.h5"), "--seed", "inf"])
    err = capsys.readouterr().err
    assert rc == 2 and "seed" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_front_doors_offer_every_classical_method_of_the_library():
    from gadget.params import CLASSICAL_METHODS
    from recon_core.baselines import METHODS

    assert set(CLASSICAL_METHODS) == set(METHODS)
