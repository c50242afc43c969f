"""The editing tasks on a latent diffusion pipeline: they read and return pixels, sample in
the VAE's latent space, and keep the same guarantees as in pixel space (known pixels exact
in inpainting, A x = y in upscaling, strength 1 = plain generation, walk ends = generate)."""
import pytest
import torch

from torchdiffusion.sampling.registry import EDIT_SAMPLER  # the tasks' sampler; they guide every step

from helpers import tiny_model_config
from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.space import LatentSpace
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.tasks import (denoise, downsample, img2img, inpaint, interpolate_seeds, invert, reconstruct,
                                  upscale)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipe() -> DiffusionPipeline:
    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig(image_size=16, in_channels=1, latent_channels=4, base_channels=8,
                                        channel_mult=(1, 2, 2), norm_groups=4, scale_factor=0.8)).eval()
    cfg = tiny_model_config(image_size=4, in_channels=4, attention_resolutions=(2,))
    den = build_denoiser(cfg).eval()
    with torch.no_grad():  # the output conv starts at zero; random weights make outputs depend on the input
        for p in den.network.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return DiffusionPipeline(den, cfg, LatentSpace(vae))


def digits(n=2, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 16, 16, generator=g) * 2 - 1


def test_space_maps(pipe):
    space = pipe.space
    assert space.latent and space.factor == 4 and pipe.latent_shape == (4, 4, 4)
    y = digits()
    z = space.to_model(y)
    assert z.shape == (2, 4, 4, 4)
    torch.testing.assert_close(z, pipe.vae.encode(y).mode() * 0.8)
    assert space.to_pixels(z).shape == y.shape
    hole = torch.zeros(2, 1, 16, 16)
    hole[:, :, 5, 9] = 1  # one pixel → the latent cell (1, 2) of its 4×4 block
    m = space.mask_to_model(hole)
    assert m.shape == (2, 1, 4, 4) and m.sum() == 2 and bool((m[:, :, 1, 2] == 1).all())


def test_img2img_strength_one_is_generation_and_zero_is_identity(pipe):
    y = digits()
    full = img2img(pipe, y, 1.0, steps=3, seed=4)
    assert full.images.shape == (2, 1, 16, 16)
    torch.testing.assert_close(full.images, pipe.generate(n=2, steps=3, seed=4, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all"))
    assert torch.equal(img2img(pipe, y, 0.0).images, y)
    part = img2img(pipe, y, 0.4, steps=3, seed=4)
    assert part.nfe == 3 and part.images.shape == y.shape and not torch.equal(part.images, full.images)


def test_inpaint_keeps_known_pixels_exact(pipe):
    y = digits()
    hole = torch.zeros(1, 16, 16)
    hole[:, 4:12, 4:12] = 1
    r = inpaint(pipe, y, hole, steps=3, seed=1, resample=2, jump=2)
    known = hole.expand(2, 1, 16, 16) == 0
    assert torch.equal(r.images[known], y[known])  # exact, although the VAE does not reconstruct y exactly
    assert not torch.allclose(r.images[~known], y[~known])
    assert r.nfe > 3  # resampling re-ran segments
    with pytest.raises(ConfigError, match="mask is 8×8 but the image is 16×16"):
        inpaint(pipe, y, torch.zeros(8, 8), steps=2)


def test_upscale_defaults_to_sdedit_and_keeps_block_averages(pipe):
    small = downsample(digits(), 4)
    r = upscale(pipe, small, steps=3, seed=2)
    assert r.info["method"] == "sdedit" and r.images.shape == (2, 1, 16, 16) and r.nfe == 3
    torch.testing.assert_close(downsample(r.images, 4), small, atol=1e-4, rtol=0)
    assert r.images.abs().max() <= 1
    with pytest.raises(ConfigError, match="latent model upscales with method 'sdedit'"):
        upscale(pipe, small, method="projection")


def test_denoise_measures_the_latent_noise_level(pipe):
    y = digits() + 0.2 * torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    r = denoise(pipe, y, 0.2)
    assert r.nfe == 1 and r.images.shape == (2, 1, 16, 16)
    assert r.info["sigma"] == 0.2 and r.info["latent_sigma"] > 0
    more = denoise(pipe, y, 0.4)
    assert more.info["latent_sigma"] > r.info["latent_sigma"]  # more pixel noise, more latent noise


def test_walk_ends_are_generated_images_and_inversion_runs_in_latents(pipe):
    walk = interpolate_seeds(pipe, 3, 8, frames=4, steps=3)
    assert walk.images.shape == (4, 1, 16, 16)
    torch.testing.assert_close(walk.images[0], pipe.generate(n=1, steps=3, seed=3, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all")[0])
    torch.testing.assert_close(walk.images[-1], pipe.generate(n=1, steps=3, seed=8, progress=False, sampler=EDIT_SAMPLER, guidance_interval="all")[0])
    inv = invert(pipe, digits(), steps=4)
    assert inv.images.shape == (2, 4, 4, 4)  # latent noise
    rec = reconstruct(pipe, inv.images, inv.info["sigmas"])
    assert rec.images.shape == (2, 1, 16, 16)
