"""Autoencoders that map images to a smaller latent space where diffusion runs (Rombach et al.
2022, "High-Resolution Image Synthesis with Latent Diffusion Models", §3.1 and App. G).

* ``kind="kl"`` — the KL-regularised VAE (Kingma & Welling 2014, "Auto-Encoding Variational
  Bayes"): the encoder gives the mean μ and log-variance log σ² of a diagonal Gaussian
  posterior q(z|x) = N(μ, σ²); training decodes a sample z = μ + σ ε and adds the KL term

      KL(q(z|x) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²)

  with a small weight, which keeps the latent space from drifting to arbitrary scales.
* ``kind="ae"`` — a plain deterministic autoencoder (the posterior is a point mass, KL = 0),
  for comparison.

The layout is LDM's ``Encoder``/``Decoder`` (taming-transformers ``model.py``) scaled down for
a CPU: ``len(channel_mult) - 1`` stride-2 downsamplings give the downsampling factor
f = 2^(levels-1) (channel_mult of length 3 → f=4, length 4 → f=8), each level has
``num_res_blocks`` pre-activation residual blocks (GroupNorm → SiLU → 3×3 conv, twice), the
lowest resolution has a residual–attention–residual middle block, and 1×1 "quant" convs sit
on either side of the latent. An image (C, H, W) becomes a latent (c, H/f, W/f); "f=4, c=4"
and "f=8, c=4" are the LDM names of the two presets (:data:`LAYOUTS`).

``scale_factor`` (1/std of the training latents, computed by :func:`latent.latent_scale_factor`
after training and stored here in the config) scales latents to unit variance for diffusion.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchdiffusion.errors import CheckpointError, ConfigError

KINDS = ("kl", "ae")
# LDM's names for the presets: downsampling factor f and latent channels c → channel_mult.
LAYOUTS = {"f4": (1, 2, 2), "f8": (1, 2, 2, 4)}


@dataclass
class AutoencoderConfig:
    """Architecture of the autoencoder; saved as ``config.json`` beside the weights."""

    kind: str = "kl"  # kl (VAE) | ae (plain autoencoder)
    image_size: int = 32  # training resolution (the network is convolutional: any multiple of f works)
    in_channels: int = 1
    latent_channels: int = 4
    base_channels: int = 32
    channel_mult: tuple[int, ...] = LAYOUTS["f4"]
    num_res_blocks: int = 1
    norm_groups: int = 8
    mid_attention: bool = True
    scale_factor: float = 1.0  # latents × scale_factor have unit variance (set from data after training)

    def __post_init__(self) -> None:
        try:
            self.channel_mult = tuple(int(m) for m in self.channel_mult)
        except (TypeError, ValueError):
            raise ConfigError("autoencoder channel_mult must be a list of integers") from None

    @property
    def downsample_factor(self) -> int:
        """f = 2^(number of levels - 1)."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.latent_size, self.latent_size)

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown autoencoder kind {self.kind!r}; choose one of {KINDS}")
        for name in ("image_size", "in_channels", "latent_channels", "base_channels", "num_res_blocks", "norm_groups"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"autoencoder config {name} must be a positive integer, got {v!r}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ConfigError(f"autoencoder channel_mult must be non-empty positive integers, got {self.channel_mult}")
        f = self.downsample_factor
        if self.image_size % f:
            raise ConfigError(f"image size {self.image_size} is not divisible by the downsampling factor f={f} "
                              f"({len(self.channel_mult)} levels)")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.norm_groups:
                raise ConfigError(f"autoencoder width {self.base_channels * m} is not divisible by "
                                  f"norm_groups {self.norm_groups}")
        if not (isinstance(self.scale_factor, (int, float)) and self.scale_factor > 0):
            raise ConfigError(f"autoencoder scale_factor must be a positive number, got {self.scale_factor!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AutoencoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown autoencoder config keys {sorted(unknown)}")
        try:
            cfg = cls(**d)
        except TypeError as exc:
            raise ConfigError(f"malformed autoencoder config: {exc}") from None
        cfg.validate()
        return cfg


class DiagonalGaussian:
    """The posterior q(z|x) = N(μ, diag σ²), from the encoder's (μ, log σ²) (log σ² clamped to
    [-30, 20] as in LDM). ``deterministic`` makes it a point mass at μ (the plain autoencoder)."""

    def __init__(self, mean: Tensor, logvar: Tensor | None = None, deterministic: bool = False):
        self.mean = mean
        self.deterministic = deterministic or logvar is None
        self.logvar = torch.zeros_like(mean) if logvar is None else logvar.clamp(-30.0, 20.0)
        self.std = torch.zeros_like(mean) if self.deterministic else torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> Tensor:
        return self.std**2

    def sample(self, generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """z = μ + σ ε with ε ~ N(0, I) drawn on the CPU from ``generator`` (or given)."""
        if self.deterministic:
            return self.mean
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, dtype=torch.float32)
        return self.mean + self.std * noise.to(self.mean.device, self.mean.dtype)

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q ‖ N(0, I)) = ½ Σ (μ² + σ² - 1 - log σ²) per sample, shape (B,); 0 for a point mass."""
        if self.deterministic:
            return torch.zeros(self.mean.shape[0], device=self.mean.device, dtype=self.mean.dtype)
        dims = tuple(range(1, self.mean.ndim))
        return 0.5 * (self.mean**2 + self.var - 1.0 - self.logvar).sum(dim=dims)


class ResnetBlock(nn.Module):
    """Pre-activation residual block without a time embedding (LDM ``ResnetBlock``)."""

    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over pixels with a residual connection (LDM ``AttnBlock``)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(2, 3).unbind(1)  # (B, HW, C) each
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


def _mid(ch: int, groups: int, attention: bool) -> nn.Sequential:
    return nn.Sequential(ResnetBlock(ch, ch, groups), SelfAttention(ch, groups) if attention else nn.Identity(),
                         ResnetBlock(ch, ch, groups))


class Encoder(nn.Module):
    """Image (B, C, H, W) → (B, out_channels, H/f, W/f)."""

    def __init__(self, cfg: AutoencoderConfig, out_channels: int):
        super().__init__()
        g, c0 = cfg.norm_groups, cfg.base_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
        layers: list[nn.Module] = []
        ch = c0
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResnetBlock(ch, c0 * mult, g))
                ch = c0 * mult
            if level < len(cfg.channel_mult) - 1:
                layers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.down = nn.Sequential(*layers)
        self.mid = _mid(ch, g, cfg.mid_attention)
        self.norm_out = nn.GroupNorm(g, ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """Latent (B, c, h, w) → image (B, C, h·f, w·f); ``conv_out`` is the last layer (the
    adaptive GAN weight is measured on its weight)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        g, c0 = cfg.norm_groups, cfg.base_channels
        ch = c0 * cfg.channel_mult[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch, 3, padding=1)
        self.mid = _mid(ch, g, cfg.mid_attention)
        layers: list[nn.Module] = []
        for level in reversed(range(len(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResnetBlock(ch, c0 * cfg.channel_mult[level], g))
                ch = c0 * cfg.channel_mult[level]
            if level > 0:
                layers.append(Upsample(ch))
        self.up = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(g, ch)
        self.conv_out = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Autoencoder(nn.Module):
    """``encode(x) → DiagonalGaussian`` over unscaled latents, ``decode(z) → x̂``,
    ``forward(x, generator)`` → (x̂ from a posterior sample, posterior)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        config.validate()
        self.config = config
        c = config.latent_channels
        moments = 2 * c if config.kind == "kl" else c
        self.encoder = Encoder(config, moments)
        self.quant_conv = nn.Conv2d(moments, moments, 1)
        self.post_quant_conv = nn.Conv2d(c, c, 1)
        self.decoder = Decoder(config)

    @property
    def last_layer(self) -> Tensor:
        return self.decoder.conv_out.weight

    def _check(self, x: Tensor, channels: int, what: str) -> None:
        if x.ndim != 4 or x.shape[1] != channels:
            raise ConfigError(f"autoencoder {what} expects (B, {channels}, H, W) tensors, got {tuple(x.shape)}")

    def encode(self, x: Tensor) -> DiagonalGaussian:
        self._check(x, self.config.in_channels, "encode")
        f = self.config.downsample_factor
        if x.shape[-1] % f or x.shape[-2] % f:
            raise ConfigError(f"image size {tuple(x.shape[-2:])} is not divisible by the autoencoder's f={f}")
        moments = self.quant_conv(self.encoder(x))
        if self.config.kind == "kl":
            mean, logvar = moments.chunk(2, dim=1)
            return DiagonalGaussian(mean, logvar)
        return DiagonalGaussian(moments, deterministic=True)

    def decode(self, z: Tensor) -> Tensor:
        self._check(z, self.config.latent_channels, "decode")
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        posterior = self.encode(x)
        return self.decode(posterior.sample(generator)), posterior
