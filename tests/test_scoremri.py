"""Score-MRI predictor-corrector sampler on the ε-prior (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon_core.errors import InputError
from recon_core.samplers.scoremri import corrector_step, pc_grid, predictor_step, score_from_eps, scoremri_reconstruct
from tests.test_dds import make_data, records, tiny_prior

pytestmark = pytest.mark.usefixtures("one_thread")


class GaussianPrior:
    """The exact ε-predictor of Gaussian data x0 ~ N(μ, s² I): a known score to check the conversion and the
    sampler. For x_t = √ᾱ x0 + √(1−ᾱ) ε, E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ)."""

    def __init__(self, mu=0.5, s=0.2, res=8):
        from diffusers import DDPMScheduler

        self.scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
        self.mu, self.s, self.resolution = mu, s, res
        self.unet = torch.nn.Linear(1, 1)
        self.manifest = {"name": "gaussian"}

    def to(self, device):
        return self

    def predict_eps(self, x, t, tokens):
        a = self.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1).to(x.dtype)
        return torch.sqrt(1 - a) * (x - torch.sqrt(a) * self.mu) / (a * self.s ** 2 + 1 - a)

    def condition(self, recs):
        return torch.zeros(len(recs), 1, 4)

    def uncondition(self, n):
        return torch.zeros(n, 1, 4)


def test_score_from_eps_is_the_gaussian_score():
    p = GaussianPrior()
    t = 400
    a = float(p.scheduler.alphas_cumprod[t])
    x = torch.randn(3, 2, 8, 8)
    exact = -(x - np.sqrt(a) * p.mu) / (a * p.s ** 2 + 1 - a)                  # ∇ log N(√ᾱμ, ᾱs² + 1 − ᾱ)
    got = score_from_eps(p.predict_eps(x, torch.full((3,), t), None), a)
    torch.testing.assert_close(got, exact, rtol=1e-5, atol=1e-5)


def test_pc_sampling_of_the_gaussian_prior_reaches_its_distribution():
    """Unconditional PC sampling (no data: an empty mask) of the Gaussian prior: samples have its mean and
    standard deviation."""
    p = GaussianPrior(mu=0.5, s=0.2, res=16)
    x = torch.randn(64, 2, 16, 16)
    ts = pc_grid(1000, 400, 1)
    acp = p.scheduler.alphas_cumprod.double()
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(ts):
        a_t = float(acp[t])
        a_n = float(acp[ts[i + 1]]) if i + 1 < len(ts) else 1.0
        beta = 1 - a_t / a_n
        s = score_from_eps(p.predict_eps(x, torch.full((64,), t), None), a_t)
        x = predictor_step(x, s, beta, torch.randn(x.shape, generator=g) if i + 1 < len(ts) else None)
        if i + 1 < len(ts):
            s = score_from_eps(p.predict_eps(x, torch.full((64,), ts[i + 1]), None), a_n)
            x = corrector_step(x, s, torch.randn(x.shape, generator=g), 0.16, 1 - beta)
    assert abs(float(x.mean()) - 0.5) < 0.03 and abs(float(x.std()) - 0.2) < 0.03, (float(x.mean()), float(x.std()))


def test_fully_sampled_case_approaches_the_data():
    """With every k-space sample measured, data consistency dominates: the result is the object."""
    x, ksp, maps, _ = make_data(B=1, accel=1)
    full = np.ones(ksp.shape[-2:], bool)
    r = scoremri_reconstruct(tiny_prior(), ksp, maps, full, records(1), device="cpu", scoremri_nfe=20, cfg=1.0,
                             gamma=1e4, cg_iters=10, seed=0)
    err = np.linalg.norm(r.image - x) / np.linalg.norm(x)
    assert err < 0.05, err
    assert len(r.timesteps) == 10 and r.nfe == 19 and r.timesteps[0] == 999   # no corrector after the last step


@pytest.mark.parametrize("variant", ["ssos", "hybrid"])
def test_per_coil_variants_on_a_tiny_multicoil_problem(variant):
    """SSOS and hybrid: fully sampled → the root-sum-of-squares of the coil images is |object| (unit-norm
    maps); undersampled ×2 → finite, closer to the object than the zero-filled image."""
    x, ksp, maps, mask = make_data(B=1, accel=2)
    pr = tiny_prior()
    full = np.ones(ksp.shape[-2:], bool)
    r = scoremri_reconstruct(pr, ksp, maps, full, None, device="cpu", scoremri_nfe=6, scoremri_variant=variant)
    assert np.allclose(np.abs(r.image), np.abs(x), rtol=0, atol=1e-3 * np.abs(x).max())
    r2 = scoremri_reconstruct(pr, ksp, maps, mask, None, device="cpu", scoremri_nfe=6, scoremri_variant=variant,
                              hybrid_every=2)
    assert np.isfinite(r2.image).all() and r2.image.shape == x.shape


def test_deterministic_per_seed_and_k_samples():
    x, ksp, maps, mask = make_data(B=1, accel=4)
    pr = tiny_prior()
    kw = dict(device="cpu", scoremri_nfe=6, cfg=2.0)
    a = scoremri_reconstruct(pr, ksp, maps, mask, records(1), seed=3, **kw)
    b = scoremri_reconstruct(pr, ksp, maps, mask, records(1), seed=3, **kw)
    c = scoremri_reconstruct(pr, ksp, maps, mask, records(1), seed=4, **kw)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    k = scoremri_reconstruct(pr, ksp, maps, mask, records(1), samples=3, seed=3, **kw)
    assert k.samples.shape == (3, 1) + x.shape[1:] and k.std.shape == (1,) + x.shape[1:]
    np.testing.assert_allclose(k.samples[0], a.image, rtol=1e-3, atol=1e-4 * np.abs(a.image).max())  # seed 3


@pytest.mark.parametrize("bad, msg", [({"scoremri_nfe": 0}, "scoremri_nfe"), ({"pc_snr": 0}, "pc_snr"),
                                      ({"pc_snr": -1}, "pc_snr"), ({"scoremri_variant": "magic"}, "scoremri_variant")])
def test_bad_settings_are_refused(bad, msg):
    x, ksp, maps, mask = make_data(B=1)
    with pytest.raises(InputError, match=msg):
        scoremri_reconstruct(tiny_prior(), ksp, maps, mask, None, device="cpu", **bad)


def test_scoremri_through_replay_and_the_server_policy(tmp_path):
    """--method scoremri is a front-door method (replay here; the MRD policy caps its cost)."""
    from gadget.client_policy import ClientPolicy
    from gadget.params import ReconParams
    from gadget.replay import replay
    from recon_core.sim import simulate_scan, write_scan

    f = write_scan(str(tmp_path / "s.h5"), simulate_scan("T1", matrix=32, coils=4, accel=2, seed=0))
    params = ReconParams(method="scoremri", device="cpu", scoremri_nfe=4, cfg=0.0)
    res = replay(f, None, params, prior=tiny_prior(), progress=False)
    m = res.images[0].meta
    assert m["method"] == "scoremri" and m["NFE"] == "4" and np.isfinite(res.results[0].image).all()
    with pytest.raises(InputError, match="scoremri_nfe"):
        ClientPolicy().merge({}, {"method": "scoremri", "scoremri_nfe": "100000"})
