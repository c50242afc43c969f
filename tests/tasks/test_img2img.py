"""img2img limits, inversion round trip (exact Gaussian) and latent walks."""
import math

import pytest
import torch

from torchdiffusion.sampling.registry import EDIT_SAMPLER  # the tasks' sampler; they guide every step

from helpers import tiny_model_config
from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.exact import Gaussian, GaussianMixture
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.pipeline import DiffusionPipeline
from torchdiffusion.tasks import (img2img, interpolate_conditions, interpolate_images, interpolate_seeds, invert,
                                  reconstruct, save_frames, slerp, strength_to_sigma)


def _pipe(**kw):
    cfg = tiny_model_config(**kw)
    torch.manual_seed(0)
    d = build_denoiser(cfg)
    torch.nn.init.normal_(d.network.out_conv.weight, std=0.1)  # not the zero-initialised identity
    return DiffusionPipeline(d, cfg)


def test_strength_zero_returns_the_input_without_network_calls():
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    r = img2img(_pipe(), x, 0.0)
    assert torch.equal(r.images, x) and r.nfe == 0


@pytest.mark.parametrize("sampler", ["DDIM", "Euler a", "DPM++ 2M Karras"])
def test_strength_one_is_plain_generation(sampler):
    pipe = _pipe()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    r = img2img(pipe, x, 1.0, steps=5, sampler=sampler, seed=7)
    ref = pipe.generate(n=3, steps=5, sampler=sampler, seed=7, progress=False, guidance_interval="all")
    assert torch.equal(r.images, ref)


def test_nfe_does_not_depend_on_strength():
    pipe = _pipe()
    x = torch.zeros(2, 1, 8, 8)
    for s in (0.1, 0.5, 0.9):
        r = img2img(pipe, x, s, steps=6, sampler="DDIM")
        assert r.nfe == 6 and len(r.info["sigmas"]) == 7
        assert r.info["sigma_start"] == pytest.approx(strength_to_sigma(pipe.denoiser, s))
    from torchdiffusion.sampling.registry import resolve_sampler

    heun = img2img(pipe, x, 0.5, steps=6, sampler="Heun")
    assert heun.nfe == resolve_sampler("Heun").nfe(6, heun.info["sigmas"])


def test_low_strength_stays_close_exact_mixture():
    mix = GaussianMixture.random(3, 16, seed=1, mean_scale=0.3, std_range=(0.05, 0.2))
    x = mix.sample(50, torch.Generator().manual_seed(0), shape=(1, 4, 4))
    d = [float((img2img(mix, x, s, steps=10).images - x).pow(2).mean()) for s in (0.2, 0.5, 0.9)]
    assert d[0] < d[1] < d[2]


def test_bad_strength_and_channels():
    pipe = _pipe()
    for s in (-0.1, 1.5, float("nan"), "a lot"):
        with pytest.raises(ConfigError, match="strength"):
            img2img(pipe, torch.zeros(1, 1, 8, 8), s)
    with pytest.raises(ConfigError, match="2 channels"):
        img2img(pipe, torch.zeros(1, 2, 8, 8), 0.5)
    with pytest.raises(ConfigError, match="model works at 8×8"):
        img2img(pipe, torch.zeros(1, 1, 9, 9), 0.5)
    rgb = torch.rand(1, 3, 8, 8) * 2 - 1  # RGB is converted to gray for a 1-channel model
    assert img2img(pipe, rgb, 0.0).images.shape == (1, 1, 8, 8)


def test_inversion_round_trip_exact_gaussian():
    g = Gaussian(torch.full((16,), 0.1), 0.3)
    y = g.sample(6, torch.Generator().manual_seed(0), shape=(1, 4, 4))
    err = {}
    for iters in (0, 3):
        for steps in (10, 50):
            inv = invert(g, y, steps=steps, fixed_point_iters=iters)
            assert inv.nfe == steps * (1 + iters) - 1
            rec = reconstruct(g, inv.images, inv.info["sigmas"])
            err[iters, steps] = float((rec.images - y).abs().max())
    assert err[0, 50] < err[0, 10]  # the explicit inversion converges with steps
    assert err[3, 50] < err[0, 50] / 20 and err[3, 50] < 5e-3  # fixed-point refinement: near exact
    assert err[3, 10] < err[0, 10]


def test_slerp():
    a, b = torch.randn(4, 64), torch.randn(4, 64)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-6) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, torch.full((4,), 0.5))
    assert torch.allclose(mid.norm(dim=1), (a.norm(dim=1) + b.norm(dim=1)) / 2, rtol=0.1)
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-5)  # parallel: linear


def test_seed_walk_ends_are_the_generated_images(tmp_path):
    pipe = _pipe()
    r = interpolate_seeds(pipe, 3, 11, 5, steps=4)
    ends = torch.cat([pipe.generate(n=1, steps=4, seed=s, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all") for s in (3, 11)])
    assert r.images.shape == (5, 1, 8, 8) and r.nfe == 4
    torch.testing.assert_close(r.images[[0, -1]], ends, atol=1e-5, rtol=0)
    gif = save_frames(r.images, tmp_path / "walk.gif", strip=tmp_path / "strip.png")
    webp = save_frames(r.images, tmp_path / "walk.webp")
    assert gif.stat().st_size > 0 and webp.stat().st_size > 0 and (tmp_path / "strip.png").is_file()
    with pytest.raises(ConfigError, match="gif or .webp"):
        save_frames(r.images, tmp_path / "walk.mp4")
    with pytest.raises(ConfigError, match="frames"):
        interpolate_seeds(pipe, 0, 1, 1)


def test_image_walk_and_class_walk():
    pipe = _pipe()
    a, b = torch.rand(2, 1, 8, 8) * 2 - 1
    r = interpolate_images(pipe, a, b, 3, steps=4)
    assert r.images.shape == (3, 1, 8, 8)
    cpipe = _pipe(num_classes=3)
    cpipe.config.conditioning = "class"
    r = interpolate_conditions(cpipe, {"class_labels": 0}, {"class_labels": 2}, 4, steps=3, guidance_scale=2.0)
    ends = torch.cat([cpipe.generate(n=1, steps=3, seed=0, class_labels=c, guidance_scale=2.0, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all")
                      for c in (0, 2)])
    torch.testing.assert_close(r.images[[0, -1]], ends, atol=1e-5, rtol=0)
