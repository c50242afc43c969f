import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.parameterization import (Denoiser, eps_to_x0, output_to_x0, training_target, v_to_x0,
                                             x0_to_eps, x0_to_v)
from torchdiffusion.sampling.registry import sample_ddim, sample_ddpm
from torchdiffusion.diffusion.schedules import ScheduleConfig

MU, STD = 0.3, 0.6  # data distribution N(MU, STD²) per pixel


def posterior_mean(x, sigma):
    """E[x0 | x0 + σ ε = x] for x0 ~ N(MU, STD²): MU + STD²/(STD²+σ²) (x - MU)."""
    s2 = sigma.reshape(-1, *[1] * (x.ndim - 1)) ** 2
    return MU + STD**2 / (STD**2 + s2) * (x - MU)


class ExactGaussianNetwork(torch.nn.Module):
    """What a perfectly trained VP network of each parameterization outputs for Gaussian data."""

    def __init__(self, schedule, parameterization):
        super().__init__()
        self.schedule, self.parameterization = schedule, parameterization

    def forward(self, x_t, t):
        sigma = self.schedule.sigma(t.double()).to(x_t.dtype)
        alpha = (1 + sigma**2).rsqrt().reshape(-1, 1, 1, 1)
        x = x_t / alpha
        x0 = posterior_mean(x, sigma)
        if self.parameterization == "x0":
            return x0
        eps = x0_to_eps(x, sigma, x0)
        if self.parameterization == "eps":
            return eps
        return x0_to_v(x, sigma, x0)


def test_conversions_round_trip():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 7.0, 80.0], dtype=torch.float64)
    x = x0 + sigma.reshape(-1, 1, 1, 1) * eps
    assert torch.allclose(eps_to_x0(x, sigma, eps), x0)
    assert torch.allclose(x0_to_eps(x, sigma, x0), eps)
    v = x0_to_v(x, sigma, x0)
    assert torch.allclose(v_to_x0(x, sigma, v), x0)
    # v = α ε - σ_vp x0 is the training target for x_t = α x0 + σ_vp ε
    alpha = (1 + sigma**2).rsqrt().reshape(-1, 1, 1, 1)
    sigma_vp = sigma.reshape(-1, 1, 1, 1) * alpha
    assert torch.allclose(training_target("v", x0, eps, alpha, sigma_vp), v)
    assert torch.allclose(training_target("eps", x0, eps, alpha, sigma_vp), eps)
    for p, out in (("eps", eps), ("x0", x0), ("v", v)):
        assert torch.allclose(output_to_x0(p, x, sigma, out), x0)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_denoiser_of_gaussian_is_posterior_mean(parameterization, schedule):
    sched = ScheduleConfig(schedule, 1000).build()
    den = Denoiser(ExactGaussianNetwork(sched, parameterization), sched, parameterization)
    g = torch.Generator().manual_seed(0)
    for sigma in (0.05, 0.5, 3.0, 40.0):
        x = MU + (STD**2 + sigma**2) ** 0.5 * torch.randn(8, 1, 4, 4, generator=g)
        s = torch.full((8,), sigma)
        assert torch.allclose(den(x, s), posterior_mean(x, s), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("sampler,steps", [("ddim", 200), ("ddpm", 1000)])
def test_sampler_on_exact_gaussian_lands_on_data_moments(sampler, steps):
    """Coarse grids under-disperse (50 DDIM steps: std -4%); enough steps land on N(MU, STD²)."""
    sched = ScheduleConfig("linear", 1000).build()
    den = Denoiser(ExactGaussianNetwork(sched, "eps"), sched, "eps")
    g = torch.Generator().manual_seed(0)
    sigmas = sched.sigmas_for_steps(steps)
    x = sigmas[0] * torch.randn(4000, 1, 2, 2, generator=g)
    out = (sample_ddim if sampler == "ddim" else sample_ddpm)(den, x, sigmas, generator=g)
    assert abs(out.mean() - MU) < 0.02
    assert abs(out.std() / STD - 1) < 0.03


def test_ddpm_equals_ddim_eta_one():
    """DDIM with η = 1 draws from the same posterior as DDPM: same noise → same result."""
    sched = ScheduleConfig("cosine", 1000).build()
    den = Denoiser(ExactGaussianNetwork(sched, "v"), sched, "v")
    sigmas = sched.sigmas_for_steps(20)
    x = sigmas[0] * torch.randn(16, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    a = sample_ddpm(den, x.clone(), sigmas, generator=torch.Generator().manual_seed(4))
    b = sample_ddim(den, x.clone(), sigmas, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(a, b, atol=1e-4)


def test_unknown_parameterization():
    sched = ScheduleConfig("linear", 10).build()
    with pytest.raises(ConfigError, match="unknown parameterization"):
        Denoiser(torch.nn.Identity(), sched, "score")
