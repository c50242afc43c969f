"""The sampler suite: convergence orders on exactly solvable Gaussian data, determinism,
seeded noise, NFE accounting, the name registry, σ-grids and errors on bad input."""
import math

import pytest
import torch

from torchdiffusion.sampling import grids
from torchdiffusion import sampling as S
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.errors import ConfigError, TorchDiffusionError
from torchdiffusion.diffusion.exact import Gaussian, GaussianMixture
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.diffusion.schedules import ScheduleConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread is fastest, and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SIGMA_MIN, SIGMA_MAX = 0.01, 80.0


@pytest.fixture(scope="module")
def gaussian():
    g = torch.Generator().manual_seed(0)
    mean = 0.5 * torch.randn(8, generator=g, dtype=torch.float64)
    std = torch.exp(torch.rand(8, generator=g, dtype=torch.float64) * 2 - 3)  # 0.05 … 0.37
    return Gaussian(mean, std, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)


@pytest.fixture(scope="module")
def start(gaussian):
    return SIGMA_MAX * torch.randn(32, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _ode_error(data, x, sampler, steps, grid="exponential", **kwargs):
    """RMS error at σ_min of ``steps`` steps from σ_max (the exact answer is closed form)."""
    sigmas = grids.get_sigmas(data, grid, steps + 1)[:-1]  # stop at σ_min: no final-step floor
    out = sampler(data, x.clone(), sigmas, **kwargs)
    return float((out - data.ode_solution(x, SIGMA_MAX, SIGMA_MIN)).pow(2).mean().sqrt())


# sampler, kwargs, order of convergence (global error ∝ steps^-order)
DETERMINISTIC = [
    (S.sample_euler, {}, 1),
    (S.sample_ddim, {}, 1),
    (S.sample_heun, {}, 2),
    (S.sample_dpmpp_2m, {}, 2),
    (S.sample_dpmpp_2m, {"solver_type": "phi"}, 2),
    (S.sample_dpmpp_3m, {}, 3),
    (S.sample_unipc, {"order": 2, "variant": "bh1"}, 3),  # UniP-2 + UniC: order 3
    (S.sample_unipc, {"order": 3, "variant": "bh2"}, 3),
    (S.sample_lms, {}, 3),
    (S.sample_plms, {}, 2),  # fixed AB coefficients: 2nd order on a non-uniform grid
    (S.sample_abm, {"order": 2}, 3),  # AB2 predictor + AM3 corrector
    (S.sample_abm, {"order": 3}, 4),
]

# the same ABM on its registered grid (nodes clustered towards both ends of the angle interval)
ON_CLUSTERED_ANGLE = [({"order": 2}, 3), ({"order": 3}, 4), ({"order": 4}, 5)]


@pytest.mark.parametrize("sampler,kwargs,order", DETERMINISTIC,
                         ids=[f"{s.__name__}-{k}" for s, k, _ in DETERMINISTIC])
def test_converges_at_its_order(gaussian, start, sampler, kwargs, order):
    coarse = _ode_error(gaussian, start, sampler, 40, **kwargs)
    fine = _ode_error(gaussian, start, sampler, 80, **kwargs)
    assert fine < 1e-2
    assert math.log2(coarse / fine) > order - 0.3, (coarse, fine)


@pytest.mark.parametrize("kwargs,order", ON_CLUSTERED_ANGLE, ids=[str(k) for k, _ in ON_CLUSTERED_ANGLE])
def test_abm_converges_at_its_order_on_the_clustered_angle_grid(gaussian, start, kwargs, order):
    coarse = _ode_error(gaussian, start, S.sample_abm, 40, grid="angle_clustered", **kwargs)
    fine = _ode_error(gaussian, start, S.sample_abm, 80, grid="angle_clustered", **kwargs)
    assert fine < 1e-3
    assert math.log2(coarse / fine) > order - 0.3, (coarse, fine)


def test_clustered_angle_grid_beats_the_uniform_one_on_a_held_out_mixture():
    """ABM's registered grid against the uniform angle grid, on a mixture that is not the
    benchmark's (other seed, 6 components in 24-D), linear and cosine schedules."""
    from torchdiffusion.diffusion.exact import solve_ode

    for schedule in ("linear", "cosine"):
        sched = ScheduleConfig(schedule, 1000).build()
        data = GaussianMixture.random(6, 24, seed=6).with_range(sched.sigma_min, sched.sigma_max)
        den = Denoiser(data.as_network(sched, "eps"), sched, "eps")
        x = (1 + sched.sigma_max**2) ** 0.5 * torch.randn(128, 24, generator=torch.Generator().manual_seed(6))
        ref = solve_ode(data, x.double(), sched.sigma_max, 0.0, steps=200)
        for steps in (10, 20):
            errs = {}
            for grid in ("angle", "angle_clustered"):
                out = S.sample_abm(den, x.clone(), grids.get_sigmas(den, grid, steps))
                assert torch.equal(out, S.sample_abm(den, x.clone(), grids.get_sigmas(den, grid, steps)))
                errs[grid] = float((out.double() - ref).pow(2).mean(1).sqrt().median())
            assert errs["angle_clustered"] < 0.9 * errs["angle"], (schedule, steps, errs)


def test_3m_is_third_order_where_the_half_weight_variant_is_not(gaussian, start):
    """The full Taylor term h³φ₃D'' makes 3M third order (k-diffusion/diffusers use half of it)."""
    errors = [_ode_error(gaussian, start, S.sample_dpmpp_3m, n) for n in (40, 80)]
    assert math.log2(errors[0] / errors[1]) > 2.7


@pytest.mark.parametrize("name", ["ABM", "DPM++ 2M logSNR", "UniPC", "Heun Karras", "LMS Karras"])
def test_final_step_to_zero_does_not_blur(gaussian, start, name):
    """With the whole grid, ending in 0, the result is close to the exact ODE solution at σ = 0."""
    spec = S.resolve_sampler(name)
    out = spec(gaussian, start.clone(), spec.sigmas(gaussian, 60))
    err = float((out - gaussian.ode_solution(start, SIGMA_MAX, 0.0)).pow(2).mean().sqrt())
    assert err < 0.05 * float(gaussian.stds.min())


STOCHASTIC = [
    (S.sample_ddpm, {}),
    (S.sample_ddim, {"eta": 1.0}),
    (S.sample_euler_ancestral, {}),
    (S.sample_dpmpp_2m_sde, {}),
    (S.sample_dpmpp_3m_sde, {}),
    (S.sample_euler, {"s_churn": 40.0}),
    (S.sample_heun, {"s_churn": 40.0}),
]


def _std_error(sampler, steps, kwargs, n=20000):
    """Worst relative error of the per-dimension std of the samples, for N(0, diag(s²)) data
    started from its exact noisy marginal at σ_max."""
    s = torch.tensor([0.1, 0.3, 1.0], dtype=torch.float64)
    data = Gaussian(torch.zeros(3, dtype=torch.float64), s, sigma_min=0.005, sigma_max=40.0)
    g = torch.Generator().manual_seed(11)
    x = (s**2 + 40.0**2).sqrt() * torch.randn(n, 3, generator=g, dtype=torch.float64)
    out = sampler(data, x, grids.get_sigmas(data, "karras", steps), generator=g, **kwargs)
    return float((out.std(0) / s - 1).abs().max())


@pytest.mark.parametrize("sampler,kwargs", STOCHASTIC, ids=[f"{s.__name__}-{k}" for s, k in STOCHASTIC])
def test_stochastic_samplers_converge_in_distribution(sampler, kwargs):
    """Weak convergence (at least ~first order for the ancestral/SDE samplers): 4× the steps
    shrinks the error of the sample std by more than 2×."""
    coarse, fine = _std_error(sampler, 15, kwargs), _std_error(sampler, 60, kwargs)
    assert fine < 0.15 and coarse / fine > 2.0, (coarse, fine)


@pytest.mark.parametrize("name", ["ABM", "DDIM", "DPM++ 2M Karras", "UniPC", "Heun", "LMS", "PLMS", "DPM++ 3M"])
def test_deterministic_samplers_are_deterministic(name):
    spec = S.resolve_sampler(name)
    data = GaussianMixture.random(3, 6, seed=1)
    x = 80 * torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    sigmas = spec.sigmas(data, 8)
    state = torch.get_rng_state()
    a, b = spec(data, x.clone(), sigmas), spec(data, x.clone(), sigmas)
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())  # no randomness drawn
    assert not spec.stochastic


@pytest.mark.parametrize("name", ["DDPM", "Euler a", "DPM++ 2M SDE", "DPM++ 3M SDE Karras"])
def test_stochastic_samplers_reproduce_with_a_seed_and_are_batch_size_invariant(name):
    spec = S.resolve_sampler(name)
    assert spec.stochastic
    data = GaussianMixture.random(3, 6, seed=2)
    x = 80 * torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    sigmas = spec.sigmas(data, 6)

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    whole = spec(data, x.clone(), sigmas, generator=gens([10, 11, 12, 13]))
    again = spec(data, x.clone(), sigmas, generator=gens([10, 11, 12, 13]))
    halves = torch.cat([spec(data, x[:2].clone(), sigmas, generator=gens([10, 11])),
                        spec(data, x[2:].clone(), sigmas, generator=gens([12, 13]))])
    other = spec(data, x.clone(), sigmas, generator=gens([20, 21, 22, 23]))
    assert torch.equal(whole, again)
    assert torch.allclose(whole, halves, atol=1e-6)
    assert not torch.allclose(whole, other)
    single = spec(data, x.clone(), sigmas, generator=torch.Generator().manual_seed(3))
    assert torch.equal(single, spec(data, x.clone(), sigmas, generator=torch.Generator().manual_seed(3)))


def test_callback_nfe_and_conditioning_for_every_registered_sampler():
    data = GaussianMixture.random(2, 4, seed=0, sigma_min=0.01, sigma_max=50.0)
    seen_cond = []

    def denoiser(x, sigma, label=None):
        seen_cond.append(label)
        return data(x, sigma)

    denoiser.sigma_min, denoiser.sigma_max = data.sigma_min, data.sigma_max
    for name, spec in S.SAMPLER_REGISTRY.items():
        counter = CountingDenoiser(denoiser)
        assert counter.sigma_max == data.sigma_max  # attributes pass through
        infos = []
        x = 50 * torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
        sigmas = spec.sigmas(data, 7)
        out = S.get_sampler(name)(counter, x, sigmas, generator=[torch.Generator().manual_seed(i) for i in range(3)],
                                  callback=infos.append, cond={"label": "cat"})
        assert out.shape == x.shape and torch.isfinite(out).all(), name
        assert counter.nfe == spec.nfe(7, sigmas), name
        assert [i["i"] for i in infos] == list(range(7)), name
        assert set(infos[0]) == {"i", "x", "sigma", "sigma_next", "denoised"}
        assert float(infos[-1]["sigma_next"]) == 0.0
    assert set(seen_cond) == {"cat"}
    heun = S.resolve_sampler("Heun Karras")
    assert heun.nfe(7) == 12 and heun.nfe(20) == 39
    assert heun.nfe(20, grids.karras_sigmas(20, 0.1, 0.5)) == 39


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("name", sorted({spec.name for spec in S.SAMPLER_REGISTRY.values()}))
def test_every_sampler_runs_on_vp_schedules(schedule, name):
    sched = ScheduleConfig(schedule, 1000).build()
    data = GaussianMixture.random(3, 4, seed=3)
    den = Denoiser(data.as_network(sched, "v"), sched, "v")
    spec = S.resolve_sampler(name)
    sigmas = spec.sigmas(den, 12)
    x = float(sigmas[0]) * torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    out = spec(den, x, sigmas, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(out).all()
    assert out.std() < 3 * data.sample(4000, torch.Generator().manual_seed(2)).std()  # no blow-up


@pytest.mark.parametrize("name", sorted({spec.name for spec in S.SAMPLER_REGISTRY.values()}))
def test_every_sampler_runs_on_image_shaped_batches(name):
    """(B, C, H, W) batches, as a U-Net sees them: per-sample reductions (ABM's predictor
    limiter) must work over several trailing dimensions, and give the flattened result."""
    sched = ScheduleConfig("linear", 1000).build()
    data = GaussianMixture.random(2, 12, seed=4)
    den = Denoiser(data.as_network(sched, "eps"), sched, "eps")
    spec = S.resolve_sampler(name)
    sigmas = spec.sigmas(den, 6)
    x = float(sigmas[0]) * torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    out = spec(den, x.clone(), sigmas, generator=gens)
    assert out.shape == x.shape and torch.isfinite(out).all()
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    flat = spec(den, x.reshape(3, 12).clone(), sigmas, generator=gens)
    assert torch.allclose(out.reshape(3, 12), flat, atol=1e-5)


def test_default_sampler_beats_ddim_and_stays_bounded():
    """On a small Gaussian-mixture problem (the benchmark's, smaller): never worse than DDIM."""
    from torchdiffusion.diffusion.exact import solve_ode

    for schedule in ("linear", "cosine"):
        sched = ScheduleConfig(schedule, 1000).build()
        data = GaussianMixture.random(8, 16, seed=0).with_range(sched.sigma_min, sched.sigma_max)
        den = Denoiser(data.as_network(sched, "eps"), sched, "eps")
        x = (1 + sched.sigma_max**2) ** 0.5 * torch.randn(128, 16, generator=torch.Generator().manual_seed(0))
        ref = solve_ode(data, x.double(), sched.sigma_max, 0.0, steps=200)
        for steps in (5, 10, 20):
            errs = {}
            for name in ("ABM", "DDIM"):
                spec = S.resolve_sampler(name)
                out = spec(den, x.clone(), spec.sigmas(den, steps))
                errs[name] = float((out.double() - ref).pow(2).mean(1).sqrt().median())
            assert errs["ABM"] < errs["DDIM"], (schedule, steps, errs)


# -- registry -----------------------------------------------------------------------------


def test_familiar_and_snake_names_resolve_case_insensitively():
    assert S.resolve_sampler("dpm++ 2m karras") is S.SAMPLER_REGISTRY["DPM++ 2M Karras"]
    assert S.resolve_sampler("DPM++_2M-Karras").grid == "karras"
    assert S.resolve_sampler("EULER A").fn is S.sample_euler_ancestral
    assert S.resolve_sampler("dpmpp_2m").fn is S.sample_dpmpp_2m
    assert S.resolve_sampler("euler") is S.resolve_sampler("Euler")
    assert S.resolve_sampler("UniPC bh1").kwargs == {"variant": "bh1"}
    assert S.resolve_sampler("ABM").fn is S.sample_abm
    assert S.resolve_sampler(S.DEFAULT_SAMPLER) is S.resolve_sampler("abm")  # the default every entry point uses
    for name, spec in S.SAMPLER_REGISTRY.items():
        assert spec.grid in grids.GRIDS and callable(spec.fn), name
    assert all(spec.diffusers for name, spec in S.SAMPLER_REGISTRY.items() if name == spec.name and " " in name)


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(ConfigError, match="valid samplers: .*Euler a.*DPM\\+\\+ 2M Karras") as info:
        S.resolve_sampler("magic")
    assert "dpmpp_2m" in str(info.value)
    with pytest.raises(ConfigError):
        S.get_sampler("magic")


# -- σ-grids ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("grid", grids.GRIDS)
@pytest.mark.parametrize("steps", [1, 2, 10, 250])
def test_grids_stay_in_the_trained_range_and_end_in_zero(schedule, grid, steps):
    sched = ScheduleConfig(schedule, 1000).build()
    sigmas = grids.get_sigmas(sched, grid, steps)
    assert sigmas.dtype == torch.float64 and len(sigmas) == steps + 1 and sigmas[-1] == 0
    positive = sigmas[:-1]
    assert bool((positive[1:] < positive[:-1]).all())  # strictly decreasing: no duplicate steps
    assert positive.max() <= sched.sigma_max * (1 + 1e-9) and positive.min() >= sched.sigma_min * (1 - 1e-9)
    if grid != "leading":
        assert positive[0] == pytest.approx(sched.sigma_max, rel=1e-6)
    if grid not in ("leading", "trailing") and steps > 1:
        assert positive[-1] == pytest.approx(sched.sigma_min, rel=1e-6)  # last step σ_min → 0
    grids.check_sigmas(sigmas, Denoiser(torch.nn.Identity(), sched))


def test_grid_formulas():
    k = grids.karras_sigmas(3, 0.01, 10.0, rho=7.0)
    mid = ((10 ** (1 / 7) + 0.01 ** (1 / 7)) / 2) ** 7
    assert torch.allclose(k, torch.tensor([10.0, mid, 0.01, 0.0], dtype=torch.float64))
    assert torch.allclose(grids.logsnr_sigmas(7, 0.01, 10.0), grids.exponential_sigmas(7, 0.01, 10.0))
    e = grids.exponential_sigmas(4, 0.01, 10.0)[:-1]
    assert torch.allclose(e[1:] / e[:-1], torch.full((3,), 0.1, dtype=torch.float64))
    a = grids.angle_sigmas(5, 0.01, 10.0, sigma_data=0.5)[:-1]
    phi = torch.atan(a / 0.5)
    assert torch.allclose(phi[1:] - phi[:-1], (phi[1] - phi[0]).expand(4))
    assert torch.equal(grids.polyexponential_sigmas(6, 0.01, 10.0, rho=1.0), grids.exponential_sigmas(6, 0.01, 10.0))


def test_clustered_angle_grid_formula():
    uniform = grids.angle_sigmas(12, 0.01, 80.0, sigma_data=0.5)
    assert torch.allclose(grids.clustered_angle_sigmas(12, 0.01, 80.0, cluster=0.0), uniform)
    hi, lo = math.atan(80.0 / 0.5), math.atan(0.01 / 0.5)
    cheb = grids.clustered_angle_sigmas(12, 0.01, 80.0, cluster=1.0)[:-1]  # Chebyshev–Gauss–Lobatto in φ
    t = torch.arange(12, dtype=torch.float64) / 11
    expected = 0.5 * torch.tan(hi + (1 - torch.cos(math.pi * t)) / 2 * (lo - hi))
    assert torch.allclose(cheb, expected)
    model = Gaussian(torch.zeros(2), 0.5, sigma_min=0.01, sigma_max=80.0)
    half = grids.get_sigmas(model, "angle_clustered", 12)
    dphi = -torch.diff(torch.atan(half[:-1] / 0.5))
    assert half[0] == 80.0 and half[-2] == 0.01 and half[-1] == 0
    assert bool((dphi > 0).all())
    ramp = 0.5 * t + 0.5 * (1 - torch.cos(math.pi * t)) / 2  # c = 1/2 from 10 steps on
    assert torch.allclose(half[:-1], 0.5 * torch.tan(hi + ramp * (lo - hi)))
    assert float(dphi.max() / dphi[[0, -1]].max()) > 2  # middle steps over twice the end ones
    assert [grids.default_angle_cluster(n) for n in (1, 5, 6, 8, 10, 50)] == [0.0, 0.0, 0.1, 0.3, 0.5, 0.5]
    assert torch.equal(grids.get_sigmas(model, "angle_clustered", 5), grids.get_sigmas(model, "angle", 5))
    assert S.resolve_sampler("ABM").grid == "angle_clustered" == S.resolve_sampler("abm").grid


def test_karras_on_cosine_schedule_has_no_duplicate_timesteps():
    """diffusers rounds Karras σ to integer timesteps: on a cosine schedule several collapse
    to one and the multistep index lookup crashes. Our grid stays continuous."""
    sched = ScheduleConfig("cosine", 1000).build()
    sigmas = grids.get_sigmas(sched, "karras", 200)
    ts = sched.t(sigmas[:-1])
    assert len(torch.unique(ts)) == 200
    den = Denoiser(GaussianMixture.random(2, 4, seed=0).as_network(sched, "eps"), sched, "eps")
    x = float(sigmas[0]) * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(S.sample_dpmpp_2m(den, x, sigmas)).all()


def test_edm_style_models_fall_back_to_karras_for_t_spacings():
    data = GaussianMixture.random(2, 4, seed=0)  # no discrete schedule
    assert torch.equal(S.resolve_sampler("Euler").sigmas(data, 5), grids.get_sigmas(data, "karras", 5))
    with pytest.raises(ConfigError, match="discrete VP schedule"):
        grids.get_sigmas(data, "trailing", 5)


# -- bad input ----------------------------------------------------------------------------


def test_bad_steps_and_ranges():
    sched = ScheduleConfig("linear", 1000).build()
    for steps in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="steps"):
            grids.get_sigmas(sched, "karras", steps)
    with pytest.raises(ConfigError, match="outside the model's trained range"):
        grids.get_sigmas(sched, "karras", 10, sigma_max=1000.0)
    with pytest.raises(ConfigError, match="outside the model's trained range"):
        grids.get_sigmas(sched, "logsnr", 10, sigma_min=1e-4)
    with pytest.raises(ConfigError, match="unknown σ-grid"):
        grids.get_sigmas(sched, "cosine-ish", 10)
    narrowed = grids.get_sigmas(sched, "karras", 10, sigma_max=5.0)  # img2img-style: inside the range
    assert narrowed[0] == 5.0
    for cluster in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="cluster must be in"):
            grids.get_sigmas(sched, "angle_clustered", 10, cluster=cluster)
    assert grids.get_sigmas(sched, "angle_clustered", 10, sigma_max=5.0)[0] == 5.0


@pytest.mark.parametrize("sigmas,match", [
    (torch.tensor([200.0, 1.0, 0.0]), "leaves the model's trained range"),
    (torch.tensor([10.0, 1e-4, 0.0]), "leaves the model's trained range"),
    (torch.tensor([10.0, 10.0, 0.0]), "strictly decreasing"),
    (torch.tensor([1.0, 10.0, 0.0]), "strictly decreasing"),
    (torch.tensor([10.0, float("nan"), 0.0]), "NaN"),
    (torch.tensor([10.0]), "at least 2"),
    (torch.tensor([10.0, -1.0]), "positive"),
])
def test_bad_sigma_grids_are_config_errors(sigmas, match):
    sched = ScheduleConfig("linear", 1000).build()
    den = Denoiser(GaussianMixture.random(2, 4, seed=0).as_network(sched), sched)
    for name in ("ABM", "DPM++ 2M", "Heun", "DDPM"):
        with pytest.raises(ConfigError, match=match):
            S.get_sampler(name)(den, torch.zeros(2, 4), sigmas)


def test_nan_input_and_nan_denoiser():
    sched = ScheduleConfig("linear", 1000).build()
    den = Denoiser(GaussianMixture.random(2, 4, seed=0).as_network(sched), sched)
    sigmas = grids.get_sigmas(den, "karras", 5)
    x = torch.zeros(2, 4)
    x[1, 2] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        S.sample_dpmpp_2m(den, x, sigmas)

    def broken(x, sigma):
        return torch.full_like(x, float("nan"))

    with pytest.raises(S.SamplingError, match="step 0") as info:
        S.sample_abm(broken, torch.zeros(2, 4), sigmas)
    assert isinstance(info.value, TorchDiffusionError)
    with pytest.raises(ConfigError, match="generators for a batch"):
        S.sample_ddpm(den, torch.zeros(2, 4), sigmas, generator=[torch.Generator()])
