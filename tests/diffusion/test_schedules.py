import math

import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.schedules import (NoiseSchedule, ScheduleConfig, cosine_alpha_bar, linear_alpha_bar,
                                      sigmoid_alpha_bar)


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
def test_sigma_matches_alpha_bar_and_inverts(name):
    s = ScheduleConfig(name, 1000).build()
    ab = s.alpha_bar
    assert torch.allclose(s.sigmas, ((1 - ab) / ab).sqrt())
    t = torch.tensor([0.0, 1.0, 10.5, 500.25, 998.9, 999.0], dtype=torch.float64)
    assert torch.allclose(s.t(s.sigma(t)), t, atol=1e-6)
    # integer timesteps hit the table exactly
    assert torch.allclose(s.sigma(torch.arange(1000.0, dtype=torch.float64)), s.sigmas)
    assert torch.allclose(s.alpha_bar_at(torch.tensor([3.0], dtype=torch.float64)), ab[3:4])


def test_linear_schedule_closed_form():
    ab = linear_alpha_bar(1000)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(ab, torch.cumprod(1 - betas, 0))
    assert math.isclose(float(ab[-1]), 4.036e-5, rel_tol=1e-2)  # DDPM's ᾱ_T


def test_cosine_schedule_closed_form():
    ab = cosine_alpha_bar(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 100, 500, 900):
        assert math.isclose(float(ab[t]), f(t + 1) / f(0), rel_tol=1e-9)
    assert (ab[1:] < ab[:-1]).all()


def test_sigmoid_schedule_is_decreasing_in_unit_interval():
    ab = sigmoid_alpha_bar(1000)
    assert (ab > 0).all() and (ab < 1).all() and (ab[1:] < ab[:-1]).all()


def test_forward_process_moments():
    """x_t = sqrt(ᾱ) x0 + sqrt(1-ᾱ) ε has mean sqrt(ᾱ) μ and variance ᾱ s² + 1 - ᾱ."""
    s = ScheduleConfig("linear", 1000).build()
    g = torch.Generator().manual_seed(0)
    mu, std = 0.7, 0.5
    x0 = mu + std * torch.randn(200_000, generator=g, dtype=torch.float64)
    for t in (10, 300, 900):
        ab = s.alpha_bar[t]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(200_000, generator=g, dtype=torch.float64)
        assert abs(xt.mean() - ab.sqrt() * mu) < 0.01
        assert abs(xt.var() - (ab * std**2 + 1 - ab)) < 0.01
        # in the σ-view x = x_t/sqrt(ᾱ) = x0 + σ ε
        x = xt / ab.sqrt()
        assert abs(x.var() - (std**2 + s.sigmas[t] ** 2)) / (std**2 + s.sigmas[t] ** 2) < 0.02


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timestep_spacings(spacing):
    s = ScheduleConfig("linear", 1000).build()
    ts = s.timesteps_for_steps(10, spacing)
    assert len(ts) == 10 and (ts[:-1] > ts[1:]).all()
    assert 0 <= int(ts.min()) and int(ts.max()) <= 999
    if spacing == "trailing":
        assert int(ts[0]) == 999
    sig = s.sigmas_for_steps(10, spacing)
    assert sig[-1] == 0 and len(sig) == 11


def test_bad_schedules():
    with pytest.raises(ConfigError, match="unknown schedule"):
        ScheduleConfig("quadratic", 1000).build()
    with pytest.raises(ConfigError, match="steps must be in"):
        ScheduleConfig("linear", 100).build().timesteps_for_steps(101)
    with pytest.raises(ConfigError, match="steps must be in"):
        ScheduleConfig("linear", 100).build().timesteps_for_steps(0)
    with pytest.raises(ConfigError):
        NoiseSchedule(torch.tensor([0.5, 0.6]))
