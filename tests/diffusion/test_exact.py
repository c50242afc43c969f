"""Closed-form denoisers of Gaussian and Gaussian-mixture data (torchdiffusion.exact)."""
import math

import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.exact import ExactNetwork, Gaussian, GaussianMixture, sliced_wasserstein, solve_ode
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.diffusion.schedules import ScheduleConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: one thread is fastest, and immune to a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mixture(seed=0, k=3, d=5):
    return GaussianMixture.random(k, d, seed=seed)


def _brute_force_denoise(mix: GaussianMixture, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """D(x, σ) from the definition, one sample and one component at a time."""
    out = []
    for xi, si in zip(x.double(), sigma.double()):
        var = mix.stds**2 + si**2
        log_w = mix.weights.log() - 0.5 * (((xi - mix.means) ** 2 / var) + var.log()).sum(1)
        r = torch.softmax(log_w, 0)
        comp = mix.means + mix.stds**2 / var * (xi - mix.means)
        out.append((r[:, None] * comp).sum(0))
    return torch.stack(out)


def test_mixture_denoiser_matches_definition_with_per_sample_sigma():
    mix = _mixture()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64)
    sigma = torch.rand(40, generator=g, dtype=torch.float64) * 3
    sigma[:10] = 0.7  # a group of equal σ and singletons
    assert torch.allclose(mix.denoise(x, sigma), _brute_force_denoise(mix, x, sigma), atol=1e-12)


def test_denoiser_is_tweedie_posterior_mean():
    """D(x, σ) = x + σ² ∇ log p_σ(x) (Tweedie's formula)."""
    mix = _mixture(seed=2)
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64).requires_grad_(True)
    sigma = 0.4
    (score,) = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)
    assert torch.allclose(mix.denoise(x.detach(), sigma), x.detach() + sigma**2 * score, atol=1e-10)


def test_keeps_sample_shape_and_dtype():
    mix = GaussianMixture.random(2, 12, seed=0)
    x = torch.randn(3, 3, 2, 2)
    out = mix(x, torch.full((3,), 0.5))
    assert out.shape == x.shape and out.dtype == torch.float32


def test_exact_samples_have_the_mixture_moments():
    mix = GaussianMixture(torch.tensor([[-2.0, 0.0], [3.0, 1.0]]), torch.tensor([0.5, 0.2]), [0.3, 0.7])
    x, labels = mix.sample(40000, torch.Generator().manual_seed(0), return_labels=True)
    assert abs(labels.float().mean().item() - 0.7) < 0.01
    assert torch.allclose(x[labels == 0].mean(0), torch.tensor([-2.0, 0.0]), atol=0.02)
    assert torch.allclose(x[labels == 1].std(0), torch.tensor([0.2, 0.2]), atol=0.01)
    assert (mix.classify(x) == labels).float().mean() > 0.999


def test_gaussian_ode_solution_matches_numerical_integration():
    g = Gaussian(torch.tensor([0.3, -1.0, 0.0]), torch.tensor([0.1, 0.5, 2.0]))
    x = 20.0 * torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = g.ode_solution(x, 20.0, 0.0)
    numeric = solve_ode(g, x, 20.0, 0.0, steps=400)
    assert torch.allclose(exact, numeric, atol=1e-7)
    # the solution to σ = 0 has the data's moments when started from the exact marginal
    z = torch.randn(20000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_T = g.means[0] + (g.stds[0] ** 2 + 20.0**2).sqrt() * z
    out = g.ode_solution(x_T, 20.0, 0.0)
    assert torch.allclose(out.std(0), g.stds[0], rtol=0.03)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_exact_network_through_denoiser_reproduces_D(parameterization):
    sched = ScheduleConfig("cosine", 1000).build()
    mix = _mixture(seed=4)
    den = Denoiser(mix.as_network(sched, parameterization), sched, parameterization)
    assert den.sigma_min == pytest.approx(sched.sigma_min)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for sigma in (0.05, 1.0, 30.0):
        s = torch.full((6,), sigma, dtype=torch.float64)
        assert torch.allclose(den(x * (1 + sigma), s), mix.denoise(x * (1 + sigma), s), atol=1e-6)


def test_network_counts_calls_and_uses_schedule_range():
    sched = ScheduleConfig("linear", 100).build()
    net = _mixture().as_network(sched)
    assert isinstance(net, ExactNetwork) and net.data.sigma_max == pytest.approx(sched.sigma_max)
    net(torch.zeros(2, 5), torch.tensor([10, 20]))
    assert net.nfe == 1


def test_sliced_wasserstein():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 4, generator=g)
    assert sliced_wasserstein(a, a) == 0.0
    shifted = sliced_wasserstein(a + torch.tensor([1.0, 0, 0, 0]), a, generator=torch.Generator().manual_seed(1))
    assert 0.3 < shifted < 0.7  # ≈ sqrt(E[θ₁²]) = 1/2 for a unit shift along one axis in 4-D
    with pytest.raises(ConfigError):
        sliced_wasserstein(a, a[:10])


@pytest.mark.parametrize("kwargs", [
    dict(means=torch.zeros(2, 3, 1), stds=1.0),
    dict(means=torch.zeros(2, 3), stds=torch.ones(3, 3)),
    dict(means=torch.zeros(2, 3), stds=0.0),
    dict(means=torch.zeros(2, 3), stds=1.0, weights=[1.0]),
    dict(means=torch.zeros(2, 3), stds=1.0, sigma_min=1.0, sigma_max=0.5),
])
def test_bad_mixtures(kwargs):
    with pytest.raises(ConfigError):
        GaussianMixture(**kwargs)


def test_wrong_sample_size_and_bad_ode_range():
    mix = _mixture()
    with pytest.raises(ConfigError, match="dim 5"):
        mix(torch.zeros(2, 4), 1.0)
    with pytest.raises(ConfigError):
        solve_ode(mix, torch.zeros(2, 5), 1.0, 2.0)
    assert math.isfinite(float(mix.log_prob(torch.zeros(2, 5)).sum()))
