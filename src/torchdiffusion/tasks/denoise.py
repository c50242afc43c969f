"""Denoising an image with known (or estimated) Gaussian noise level σ.

A noisy image y = x₀ + σ ε (pixels in [-1, 1]) is exactly the sampler state at noise level
σ in EDM's σ-view (Karras et al. 2022, eq. 1), so a trained denoiser applies directly:

* ``method="mean"``: the posterior mean E[x₀ | y] = D(y, σ) (Tweedie's formula, Efron 2011;
  EDM eq. 3) in ONE network call. It minimizes the expected squared error, so it has the
  best PSNR, and it is blurry where the posterior is wide.
* ``method="sample"``: a draw from p(x₀ | y) by running the reverse process from σ down to 0
  starting at y (the sampler's state *is* y at σ). Use a stochastic sampler (default
  ``ddpm``; an ODE sampler gives a deterministic, sharper but not posterior-distributed map).
  Lower PSNR than the mean, but sharp.

σ unknown: :func:`estimate_sigma` uses the median absolute deviation of the finest diagonal
Haar wavelet coefficients (Donoho & Johnstone 1994, "Ideal spatial adaptation by wavelet
shrinkage", §4.2): for i.i.d. N(0, σ²) noise the orthonormal HH coefficient
(a - b - c + d)/2 of a 2×2 block is N(0, σ²), and the median of |N(0, σ²)| is 0.6745 σ;
image edges make it an over-estimate on clean regions with strong edges (digits).

Images larger (or other-sized) than the model are processed in overlapping tiles of the
model's size (:class:`TiledDenoiser`): every call of D is applied to all tiles in one batch
and the tile outputs are blended with a weight that ramps linearly to the tile borders, so
overlaps fade into each other without seams. The tiled D works with every sampler.

A latent model denoises in its latent space. Pixel noise σε does not map to isotropic
Gaussian latent noise of a known level, so this is an approximation: the encoder is taken
as locally linear, z_y = E(y)·s ≈ z₀ + J σ ε, and the latent level is measured as
σ_z = rms(E(y + σ ε')·s - E(y)·s) with one extra encoding of freshly noised y (ε' seeded),
then z is denoised at σ_z and decoded. The decoder's own reconstruction error bounds the
PSNR (docs/latent.md); a pixel model is the better denoiser where one exists. Images must be
the model's size (no tiling through the VAE).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.tasks.common import (TaskResult, Wrapper, check_sigma, conditioned, model_channels, model_size, resolve, run_sampler, space_of, task_classes, task_sigmas, wants_class)
from torchdiffusion.io.images import as_images, check_size


def estimate_sigma(images: Tensor) -> Tensor:
    """Per-image noise std σ̂ = median(|HH|)/0.6745 (Donoho & Johnstone 1994), (N,)."""
    x = as_images(images)
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if h < 2 or w < 2:
        raise ConfigError(f"estimate_sigma needs images of at least 2×2 pixels, got {tuple(x.shape[-2:])}")
    x = x[..., :h, :w]
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    hh = (a - b - c + d) / 2
    return hh.abs().flatten(1).median(dim=1).values / 0.6745


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(tile: int, overlap: int) -> Tensor:
    """1-D blending weight: rises linearly over ``overlap`` pixels at both tile edges, never 0."""
    i = torch.arange(tile, dtype=torch.float32)
    r = torch.minimum(i + 1, tile - i) / (overlap + 1)
    return r.clamp(max=1.0)


class TiledDenoiser(Wrapper):
    """D applied to overlapping ``tile``×``tile`` windows of a larger image, blended.

    D_tiled(x, σ) = Σ_k w_k ⊙ P_kᵀ D(P_k x, σ) / Σ_k w_k ⊙ P_kᵀ 1, with P_k the crop of tile
    k and w_k the separable linear ramp of :func:`_ramp`; all tiles of a batch go through D
    in one call. An image smaller than a tile is padded by edge replication and cropped back.
    Tiled conditions (``cond_image``) are cut like x; other conditions are repeated per tile.
    """

    def __init__(self, denoiser, tile: int, overlap: int = 8):
        super().__init__(denoiser)
        if tile < 1:
            raise ConfigError(f"tile size must be ≥ 1, got {tile}")
        if not 0 <= overlap < tile:
            raise ConfigError(f"tile overlap must be in [0, {tile - 1}] for {tile}-pixel tiles, got {overlap}")
        self.tile, self.overlap = int(tile), int(overlap)

    def forward(self, x: Tensor, sigma, **cond) -> Tensor:
        t = self.tile
        n, c, h0, w0 = x.shape
        if (h0, w0) == (t, t):
            return self.denoiser(x, sigma, **cond)
        ph, pw = max(0, t - h0), max(0, t - w0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            if "cond_image" in cond:
                cond = {**cond, "cond_image": F.pad(cond["cond_image"], (0, pw, 0, ph), mode="replicate")}
        h, w = x.shape[-2:]
        stride = t - self.overlap
        boxes = [(i, j) for i in _starts(h, t, stride) for j in _starts(w, t, stride)]
        k = len(boxes)
        tiles = torch.stack([x[:, :, i:i + t, j:j + t] for i, j in boxes], dim=1).flatten(0, 1)  # (n·k, c, t, t)
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        sigma = sigma.expand(n) if sigma.ndim == 0 else sigma
        tcond = {}
        for key, v in cond.items():
            if key == "cond_image":
                tcond[key] = torch.stack([v[:, :, i:i + t, j:j + t] for i, j in boxes], dim=1).flatten(0, 1)
            elif isinstance(v, Tensor) and v.shape[:1] == (n,):
                tcond[key] = v.repeat_interleave(k, dim=0)
            else:
                tcond[key] = v
        out = self.denoiser(tiles, sigma.repeat_interleave(k), **tcond).reshape(n, k, c, t, t)
        ramp = _ramp(t, self.overlap).to(x.device, x.dtype)
        weight = (ramp[:, None] * ramp[None, :])[None, None]
        acc = torch.zeros_like(x)
        norm = torch.zeros((1, 1, h, w), device=x.device, dtype=x.dtype)
        for idx, (i, j) in enumerate(boxes):
            acc[:, :, i:i + t, j:j + t] += weight * out[:, idx]
            norm[:, :, i:i + t, j:j + t] += weight
        return (acc / norm)[..., :h0, :w0]


def fit_to_model(denoiser, pipe, x: Tensor, overlap: int):
    """The denoiser to use on images like ``x``: tiled when they are not the model's size."""
    size = model_size(pipe)
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return denoiser
    return TiledDenoiser(denoiser, size, min(overlap, size - 1))


@torch.no_grad()
def denoise(model, images, sigma: float | None = None, *, method: str = "mean", steps: int = 20,
            sampler: str = "ddpm", seed: int = 0, overlap: int = 8, class_labels=None, prompt=None,
            guidance_scale: float = DEFAULT_GUIDANCE, sampler_kwargs: dict | None = None) -> TaskResult:
    """Denoise ``images`` (N, C, H, W in [-1, 1], any size) with noise std ``sigma``
    (estimated per batch by :func:`estimate_sigma` when None).

    ``method='mean'``: D(y, σ), NFE 1. ``method='sample'``: ``steps`` steps of ``sampler``
    from y at σ to 0 (NFE as the sampler's). ``info['sigma']`` is the σ used.
    """
    denoiser, pipe = resolve(model)
    y = as_images(images, model_channels(denoiser, pipe))
    if method not in ("mean", "sample"):
        raise ConfigError(f"unknown denoising method {method!r}; choose 'mean' or 'sample'")
    estimated = sigma is None
    if estimated:
        sigma = float(estimate_sigma(y).mean())
    space = space_of(pipe)
    pixel_sigma = sigma
    if space.latent:
        check_size(y, model_size(pipe), "image")
        y, sigma = latent_noise_level(space, y, float(sigma), seed, pipe.device)
    sigma = check_sigma(denoiser, sigma, "sigma (the noise level of the image)")
    dev = pipe.device if pipe is not None else y.device
    tiled = fit_to_model(denoiser, pipe, y, overlap)  # inside the condition: it repeats per-image conditions per tile
    info = {"sigma": pixel_sigma, "sigma_estimated": estimated, "method": method}
    extra_nfe = 0
    if wants_class(pipe, class_labels, prompt) and not space.latent and tuple(y.shape[-2:]) == (model_size(pipe),) * 2:
        # the class the model sees in the unconditional posterior mean D(y, σ) (one more evaluation)
        y_dev = y.to(pipe.device)
        rough = tiled(y_dev, torch.full((y.shape[0],), sigma, device=pipe.device, dtype=y.dtype)).clamp(-1, 1)
        extra_nfe = 1
        class_labels = task_classes(pipe, rough, None, None, info)
    d = CountingDenoiser(conditioned(tiled, pipe, y.shape[0], class_labels, prompt, guidance_scale=guidance_scale))
    y = y.to(dev)
    if space.latent:
        info["latent_sigma"] = sigma
    if method == "mean":
        out = d(y, torch.full((y.shape[0],), sigma, device=dev, dtype=y.dtype))
    else:
        sigmas = task_sigmas(denoiser, pipe, sampler, steps, sigma_start=sigma)
        info["sigmas"] = sigmas
        out = run_sampler(sampler, d, y, sigmas, seeded_generators(seed, y.shape[0]), sampler_kwargs)
    return TaskResult(space.to_pixels(out).cpu().clamp(-1, 1), d.nfe + extra_nfe, info)


def latent_noise_level(space, y: Tensor, sigma: float, seed: int, dev) -> tuple[Tensor, float]:
    """(E(y)·s, σ_z) for a latent model: σ_z = rms(E(y + σ ε')·s - E(y)·s), the latent
    response to one more draw of pixel noise of level σ (see the module docstring)."""
    y = y.to(dev)
    z = space.to_model(y)
    extra = initial_noise(y.shape[1:], seeded_generators(seed + 7_919, y.shape[0])).to(dev)
    z_more = space.to_model(y + sigma * extra)
    return z, float((z_more - z).pow(2).mean().sqrt())
