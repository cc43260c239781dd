"""The sampler and baseline registries: a new method is one module + one registry entry, and every front door
(parameters, MRD client policy, stream processor) and the evaluation offer it without naming it
(tests/toy_sampler.py, tests/toy_baseline.py)."""

import numpy as np
import pytest

import toy_baseline
import toy_sampler
from gadget.client_policy import ClientPolicy
from gadget.images import to_float
from gadget.params import ReconParams
from gadget.processor import StreamProcessor
from recon_core import baselines, samplers
from recon_core.errors import InputError
from test_dds import make_data, tiny_prior
from test_processor_helpers import build_stream, line_mask, make_header, phantom_scan, psnr
from training.evaluation.config import EvalConfig


@pytest.fixture
def toy_sampler_registered():
    samplers.register(toy_sampler.SPEC)
    yield toy_sampler.SPEC
    samplers.SAMPLERS.pop(toy_sampler.SPEC.name)


@pytest.fixture
def toy_baseline_registered():
    spec = baselines.register(toy_baseline.SPECS[0])
    yield spec
    baselines.BASELINES.pop(spec.name)


def _stream(S=2, ny=48, nx=48, C=6):
    objs, maps = phantom_scan(n_slices=S, ny=ny, nx=nx, n_coils=C)
    rows = line_mask(ny, accel=3, acs=12)
    return objs, build_stream(objs, maps, rows), make_header(nx, ny, S, n_coils=C)


def test_unregistered_names_are_refused_everywhere():
    with pytest.raises(InputError, match="method must be one of"):
        ReconParams(method="one-step")
    with pytest.raises(InputError, match="unknown diffusion method"):
        samplers.diffusion_sampler("one-step")
    with pytest.raises(InputError, match="unknown method"):
        baselines.reconstruct("tikhonov", np.zeros((1, 2, 8, 8), np.complex64), np.ones((1, 2, 8, 8), np.complex64),
                              np.ones((8, 8)))


def test_a_toy_sampler_runs_through_the_registry(toy_sampler_registered):
    ref, ksp, maps, mask = make_data(B=1)
    res = samplers.diffusion_sampler("one-step")(tiny_prior(), ksp, maps, mask, config=samplers.SamplerConfig(),
                                                 device="cpu")
    assert res.image.shape == ref.shape and np.isfinite(res.image).all() and res.nfe == 1
    # front doors: a parameter value, an MRD client's choice, an evaluation method
    assert ReconParams.from_mapping({"method": "One-Step"}).method == "one-step"
    ClientPolicy().merge({}, {"method": "one-step"})
    EvalConfig(model="m", data="d", out="o", methods=("one-step",)).check()


def test_a_toy_sampler_in_the_stream_processor(toy_sampler_registered):
    objs, acqs, header = _stream()
    proc = StreamProcessor(header, ReconParams(method="one-step", device="cpu", cfg=0.0), prior=tiny_prior())
    imgs = [im for im in proc.process(acqs) if im.image_series_index == 1]
    assert len(imgs) == 2 and all(np.isfinite(to_float(im)).all() for im in imgs)
    assert '"NFE"' in imgs[0].attribute_string or "NFE" in imgs[0].attribute_string


def test_a_toy_baseline_reconstructs_everywhere(toy_baseline_registered):
    objs, acqs, header = _stream()
    out = {}
    for method in ("tikhonov", "zerofilled"):
        proc = StreamProcessor(header, ReconParams(method=method, device="cpu"))
        out[method] = {im.slice: to_float(im) for im in proc.process(acqs) if im.image_series_index == 1}
    for s in range(2):   # a real reconstruction: well above zero-filling
        assert psnr(objs[s], out["tikhonov"][s]) > psnr(objs[s], out["zerofilled"][s]) + 3
    ClientPolicy().merge({}, {"method": "tikhonov"})
    EvalConfig(model="m", data="d", out="o", baselines=("tikhonov",)).check()
    assert baselines.get_spec("tikhonov").lamda == 0.05


def test_a_sampler_setting_is_declared_once():
    """The flat config the front doors use is composed from the samplers' own declarations: a Score-MRI field
    comes from ScoreMRIOptions, the client ceilings from the field metadata."""
    import dataclasses

    from recon_core.samplers.scoremri import ScoreMRIOptions

    flat = {f.name for f in dataclasses.fields(samplers.SamplerConfig)}
    assert {f.name for f in dataclasses.fields(ScoreMRIOptions)} <= flat
    assert samplers.client_settings()["scoremri_nfe"] == 4000
    assert "self_validate" not in samplers.client_settings()
