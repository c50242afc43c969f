"""Denoising against the closed-form posterior of a Gaussian (exact denoisers)."""
import math

import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.exact import Gaussian
from torchdiffusion.diffusion.parameterization import Denoiser
from torchdiffusion.diffusion.schedules import ScheduleConfig
from torchdiffusion.tasks import TiledDenoiser, denoise, estimate_sigma

MU, S = 0.2, 0.3


def _posterior_mean(y, sigma):
    return MU + S**2 / (S**2 + sigma**2) * (y - MU)


@pytest.mark.parametrize("sigma", [0.1, 0.2, 0.4])
def test_mean_is_the_gaussian_posterior_mean_in_one_call(sigma):
    g = Gaussian(torch.full((16,), MU), S)
    y = g.sample(8, torch.Generator().manual_seed(0), shape=(1, 4, 4))
    noisy = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    r = denoise(g, noisy, sigma)
    assert r.nfe == 1 and r.info["sigma"] == pytest.approx(sigma)
    torch.testing.assert_close(r.images, _posterior_mean(noisy, sigma).clamp(-1, 1), atol=1e-6, rtol=0)


def test_mean_through_a_vp_network_and_schedule():
    """The same closed form through Denoiser(ExactNetwork) on a cosine schedule (v-prediction)."""
    schedule = ScheduleConfig("cosine", 1000).build()
    g = Gaussian(torch.full((16,), MU), S)
    d = Denoiser(g.as_network(schedule, "v"), schedule, "v")
    noisy = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2)) * 0.2
    r = denoise(d, noisy, 0.2)
    torch.testing.assert_close(r.images, _posterior_mean(noisy, 0.2).clamp(-1, 1), atol=1e-5, rtol=0)


def test_tiled_denoiser_is_exact_for_a_pixelwise_denoiser():
    """An i.i.d.-per-pixel Gaussian has a pixelwise posterior mean, so blending overlapping
    tiles must reproduce it exactly on an image larger (and one smaller) than a tile."""
    g = Gaussian(torch.full((64,), MU), S)
    for shape in [(2, 1, 21, 19), (1, 1, 5, 8)]:
        y = torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 0.5
        tiled = TiledDenoiser(g, tile=8, overlap=3)
        torch.testing.assert_close(tiled(y, torch.full((shape[0],), 0.4)), _posterior_mean(y, 0.4), atol=1e-6, rtol=0)


def test_tiled_denoiser_one_batched_call_per_step():
    calls = []

    def d(x, sigma, **cond):
        calls.append(x.shape)
        return x * 0

    TiledDenoiser(d, 8, 4)(torch.zeros(2, 1, 20, 20), torch.ones(2))
    assert calls == [(2 * 16, 1, 8, 8)]  # 4×4 tiles of both images in one call


def test_posterior_sample_has_the_posterior_moments():
    sigma = 0.4
    g = Gaussian(torch.full((4,), MU), S)
    noisy = torch.full((1000, 1, 2, 2), 0.3)
    post_std = math.sqrt(S**2 * sigma**2 / (S**2 + sigma**2))
    coarse = denoise(g, noisy, sigma, method="sample", steps=30, sampler="ddpm", seed=0)
    fine = denoise(g, noisy, sigma, method="sample", steps=150, sampler="ddpm", seed=0)
    assert (coarse.nfe, fine.nfe) == (30, 150)
    assert float(fine.images.mean()) == pytest.approx(float(_posterior_mean(torch.tensor(0.3), sigma)), abs=0.01)
    assert float(fine.images.std()) == pytest.approx(post_std, rel=0.05)
    # ancestral steps use the posterior mean of x0: coarse grids under-disperse, converging with steps
    assert float(coarse.images.std()) < float(fine.images.std())


def test_estimate_sigma_on_flat_images():
    y = torch.zeros(4, 1, 64, 64) + 0.3
    for sigma in (0.1, 0.4):
        noisy = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
        est = estimate_sigma(noisy)
        assert est.shape == (4,)
        assert torch.allclose(est, torch.full((4,), sigma), rtol=0.1)
    g = Gaussian(torch.zeros(4096), 1e-3)
    r = denoise(g, y + 0.2 * torch.randn(y.shape, generator=torch.Generator().manual_seed(5)))
    assert r.info["sigma_estimated"] and r.info["sigma"] == pytest.approx(0.2, rel=0.12)


def test_bad_sigma_and_method():
    g = Gaussian(torch.zeros(4), 0.3)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ConfigError, match="outside the model's trained noise range"):
        denoise(g, x, 500.0)
    with pytest.raises(ConfigError, match="> 0"):
        denoise(g, x, -0.1)
    with pytest.raises(ConfigError, match="unknown denoising method"):
        denoise(g, x, 0.1, method="median")


def test_tiled_with_classifier_free_guidance():
    from helpers import tiny_model_config
    from torchdiffusion.denoiser.model import build_denoiser
    from torchdiffusion.pipeline.pipeline import DiffusionPipeline

    cfg = tiny_model_config(num_classes=3)
    cfg.conditioning = "class"
    pipe = DiffusionPipeline(build_denoiser(cfg), cfg)
    r = denoise(pipe, torch.zeros(2, 1, 13, 11), 0.3, class_labels=[0, 2], guidance_scale=2.0)
    assert r.images.shape == (2, 1, 13, 11) and r.nfe == 1
