"""Where a model samples: pixels or an autoencoder's latent space (edm2's one encoder interface).

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models") denoises z = s · E(x) in a VAE's latent space and decodes x = D(z / s). One *space*
object carries that map for generation, training and every editing task, so none of them has a
latent branch of its own:

* :class:`PixelSpace` — the identity (``decode`` clamps to [-1, 1]); masks stay as they are.
* :class:`LatentSpace` ``(vae)`` — ``encode(x)`` = s · mean(E(x)) (or a posterior sample),
  ``decode(z)`` = D(z / s) clamped, ``mask_to_model`` max-pools a pixel hole mask over f×f blocks.

:func:`latent_scale_factor` is s = 1/std of the training latents (LDM §4.3.2 and App. G: "we
rescale the latents by the component-wise standard deviation" — one scalar over every element),
so the diffusion model sees unit-variance data, as the noise schedule assumes. It is stored in the
autoencoder's ``config.json`` (``scale_factor``).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.io.checkpoint import read_json
from torchdiffusion.io.runs import find_autoencoder_folder
from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
from torchdiffusion.networks.unet import UNetConfig

__all__ = ["LatentSpace", "PixelSpace", "check_unet_matches_vae", "encode_images", "latent_geometry",
           "latent_scale_factor"]


@torch.no_grad()
def encode_images(vae: Autoencoder, images: Tensor, batch_size: int = 128, sample: bool = False,
                  generator: torch.Generator | None = None) -> Tensor:
    """Unscaled latents of float images in [-1, 1]: the posterior means (or samples)."""
    device = next(vae.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        post = vae.encode(images[i:i + batch_size].to(device))
        out.append((post.sample(generator) if sample else post.mode()).float().cpu())
    return torch.cat(out)


def latent_scale_factor(vae: Autoencoder, images: Tensor, batch_size: int = 128) -> float:
    """s = 1 / std(E(x)) over every element of the latents of ``images`` (posterior means),
    so that s · E(x) has unit variance on these images."""
    was_training = vae.training
    vae.eval()
    z = encode_images(vae, images, batch_size)
    vae.train(was_training)
    std = float(z.double().std())
    if not std > 0:
        raise ConfigError("the autoencoder maps every image to the same latent: cannot compute a scale factor")
    return 1.0 / std


def check_unet_matches_vae(unet: UNetConfig, vae: AutoencoderConfig, where: str = "unet") -> None:
    """The U-Net must take (and give) exactly the VAE's latent channels."""
    out = unet.out_channels or unet.in_channels
    if unet.in_channels != vae.latent_channels or out != vae.latent_channels:
        raise ConfigError(f"{where}: the U-Net has {unet.in_channels} input / {out} output channels but the VAE's "
                          f"latents have {vae.latent_channels} channels (component 'unet' does not fit component 'vae')")


def latent_geometry(vae_path: str | Path, image_size: int | None = None) -> tuple[int, int, int]:
    """(pixel size, latent size, latent channels) for training on ``vae_path``'s latents; the
    pixel size defaults to the VAE's training resolution."""
    folder = find_autoencoder_folder(Path(vae_path))
    cfg = AutoencoderConfig.from_dict(read_json(folder, "config"))
    size = image_size or cfg.image_size
    f = cfg.downsample_factor
    if size % f:
        raise ConfigError(f"--image-size {size} is not divisible by the VAE's downsampling factor f={f}")
    return size, size // f, cfg.latent_channels


class PixelSpace:
    """The model samples pixels: every map is the identity (``decode`` clamps to [-1, 1])."""

    latent = False
    factor = 1
    vae = None

    def image_shape(self, model_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(model_shape)

    def encode(self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        return images

    def decode(self, x: Tensor) -> Tensor:
        return x.clamp(-1, 1)

    def to_model(self, y: Tensor) -> Tensor:
        return y

    def to_pixels(self, x: Tensor) -> Tensor:
        return x

    def mask_to_model(self, hole: Tensor) -> Tensor:
        return hole

    def to(self, device) -> "PixelSpace":
        return self


class LatentSpace:
    """The model samples s · E(x) of the autoencoder ``vae`` (its ``config.scale_factor`` is s)."""

    latent = True

    def __init__(self, vae: Autoencoder):
        self.vae = vae

    @property
    def factor(self) -> int:
        return int(self.vae.config.downsample_factor)

    @property
    def scale_factor(self) -> float:
        return float(self.vae.config.scale_factor)

    def image_shape(self, model_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The pixel shape of a latent of ``model_shape`` (c, h, w): (C, h·f, w·f)."""
        _, h, w = model_shape
        return (self.vae.config.in_channels, h * self.factor, w * self.factor)

    @torch.no_grad()
    def encode(self, images: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Images in [-1, 1] (B, C, H, W) → scaled latents s · E(x) (posterior means, or samples)."""
        vae_device = next(self.vae.parameters()).device
        return encode_images(self.vae, images.to(vae_device), sample=sample, generator=generator) * self.scale_factor

    @torch.no_grad()
    def decode(self, latents: Tensor, batch_size: int = 64) -> Tensor:
        """Scaled latents → images D(z / s) in [-1, 1]."""
        vae_device = next(self.vae.parameters()).device
        out = [self.vae.decode(latents[i:i + batch_size].to(vae_device).float() / self.scale_factor).cpu()
               for i in range(0, len(latents), batch_size)]
        return torch.cat(out).clamp(-1, 1)

    def to_model(self, y: Tensor) -> Tensor:
        return self.encode(y).to(y.device)

    def to_pixels(self, x: Tensor) -> Tensor:
        return self.decode(x).to(x.device)

    def mask_to_model(self, hole: Tensor) -> Tensor:
        """A pixel hole mask (N, 1, H, W) → the latent resolution: a latent is unknown if any pixel of its block is."""
        return torch.nn.functional.max_pool2d(hole, self.factor)

    def to(self, device) -> "LatentSpace":
        self.vae.to(device)
        return self
