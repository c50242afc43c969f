"""Super-resolution: DDNM projection consistency, SR3 conditioning, factor errors."""
import pytest
import torch

from helpers import tiny_model_config
from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.exact import GaussianMixture
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.tasks import downsample, upscale
from torchdiffusion.denoiser.image_conditions import apply_task, build, draw
from torchdiffusion.tasks.superres import project, upsample_nearest


def test_projection_pseudo_inverse():
    y = torch.randn(3, 1, 4, 4)
    assert torch.allclose(downsample(upsample_nearest(y, 4), 4), y)  # A A† = I
    x = torch.randn(3, 1, 16, 16)
    assert torch.allclose(downsample(project(x, y, 4), 4), y, atol=1e-6)


@pytest.mark.parametrize("sampler", ["DDIM", "DPM++ 2M Karras", "Euler a"])
def test_zero_shot_output_is_consistent_with_the_input(sampler):
    mix = GaussianMixture.random(4, 64, seed=0, mean_scale=0.3, std_range=(0.05, 0.2))
    hr = mix.sample(5, torch.Generator().manual_seed(0), shape=(1, 8, 8)).clamp(-1, 1)
    low = downsample(hr, 4)
    r = upscale(mix, low, 4, steps=10, sampler=sampler)
    assert r.images.shape == (5, 1, 8, 8) and r.nfe == 10 and r.info["method"] == "projection"
    assert torch.allclose(downsample(r.images, 4), low, atol=1e-5)


def _sr_pipe(factor=2):
    cfg = tiny_model_config()
    apply_task(cfg, "superres", factor)
    torch.manual_seed(0)
    d = build_denoiser(cfg)
    torch.nn.init.normal_(d.network.out_conv.weight, std=0.1)
    return DiffusionPipeline(d, cfg)


def test_sr3_model_refuses_other_factors_and_sizes():
    pipe = _sr_pipe(2)
    low = torch.zeros(2, 1, 4, 4)
    r = upscale(pipe, low, steps=3)
    assert r.images.shape == (2, 1, 8, 8) and r.info == {**r.info, "method": "sr3", "factor": 2}
    with pytest.raises(ConfigError, match="trained for ×2, not ×4"):
        upscale(pipe, torch.zeros(1, 1, 2, 2), 4, steps=2)
    with pytest.raises(ConfigError, match="give 4×4 inputs"):
        upscale(pipe, torch.zeros(1, 1, 3, 3), steps=2)
    with pytest.raises(ConfigError, match="aug_level"):
        upscale(pipe, low, aug_level=3.0, steps=2)
    with pytest.raises(ConfigError, match="superres model"):
        from torchdiffusion.tasks import img2img
        img2img(pipe, torch.zeros(1, 1, 8, 8), 0.5)


def test_sr_conditioning_batch():
    cfg = {"kind": "superres", "factor": 2, "aug_max": 0.5}
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    draws = draw(cfg, x.shape, torch.Generator().manual_seed(0))
    c = build(cfg, x, draws)
    assert c.shape == (6, 2, 8, 8)
    assert torch.equal(c[:, 1, 0, 0], draws["aug"])  # the augmentation level plane
    clean = draws["aug"] == 0
    assert clean.any() and (~clean).any()
    assert torch.allclose(downsample(c[clean, :1], 2), downsample(x[clean], 2), atol=0.35)
    part = build(cfg, x[2:4], draws, slice(2, 4))
    assert torch.equal(part, c[2:4])


def test_bad_task_options():
    cfg = tiny_model_config()
    with pytest.raises(ConfigError, match="does not divide"):
        apply_task(cfg, "superres", 3)
    with pytest.raises(ConfigError, match="drop --vae"):
        apply_task(cfg, "inpaint", latent=True)


def test_projection_stays_consistent_after_clamping_to_the_pixel_range():
    """Digits are mostly -1: a plain clamp after the projection breaks A x = y; POCS does not."""
    from torchdiffusion.data.mnist import load_mnist
    from torchdiffusion.tasks.superres import project_in_range

    x = load_mnist(28, split="test").batch(torch.arange(20))
    y = downsample(x, 4)
    z = torch.randn(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert float((downsample(project(z, y, 4).clamp(-1, 1), 4) - y).abs().max()) > 0.1
    out = project_in_range(z, y, 4)
    assert out.min() >= -1 and out.max() <= 1
    assert float((downsample(out, 4) - y).abs().max()) < 1e-3
