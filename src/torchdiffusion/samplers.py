"""Samplers: plain functions ``sample_xxx(denoiser, x, sigmas, *, generator=None, callback=None, ...)``.

Contract (k-diffusion's): ``denoiser(x, sigma, **cond)`` returns x̂₀ for x = x₀ + σ ε with
``sigma`` a (B,) tensor; ``x`` starts as ``sigmas[0] * noise``; ``sigmas`` is a descending
1-D tensor of noise levels that ends with 0. ``callback({"i", "x", "sigma", "sigma_next",
"denoised"})`` is called after every step (progress bars, x̂₀ previews).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .parameterization import append_dims


def _noise_like(x: Tensor, generator) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the CPU from ``generator``: a
    ``torch.Generator`` or a list of one generator per sample (so that a seed gives the
    same image whatever the batch it is drawn in)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        noise = torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in generator])
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


def _sigma_batch(sigma: Tensor, x: Tensor) -> Tensor:
    return sigma.to(device=x.device, dtype=x.dtype).expand(x.shape[0])


@torch.no_grad()
def sample_ddim(denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 0.0, generator=None,
                callback: Callable | None = None, cond: dict | None = None) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12).

    In VP terms with ᾱ = 1/(1+σ²):

        x_s = sqrt(ᾱ_s) x̂₀ + sqrt(1 - ᾱ_s - σ_η²) ε̂ + σ_η z,
        σ_η = η sqrt((1-ᾱ_s)/(1-ᾱ_t)) sqrt(1 - ᾱ_t/ᾱ_s)                         (eq. 16)

    and divided by sqrt(ᾱ_s) to return to the σ-view. η = 0 is the deterministic DDIM (the
    Euler step of the probability-flow ODE in σ, EDM §3); η = 1 is DDPM's ancestral step.
    """
    cond = cond or {}
    sigmas = sigmas.to(torch.float64)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _sigma_batch(s, x), **cond)
        eps = (x - denoised) / s.item()
        if s_next == 0:
            x = denoised
        else:
            ab_t, ab_s = 1 / (1 + s**2), 1 / (1 + s_next**2)
            sigma_eta = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).clamp(min=0).sqrt()
            dir_coef = (1 - ab_s - sigma_eta**2).clamp(min=0).sqrt()
            x_vp = ab_s.sqrt() * denoised + dir_coef.item() * eps
            if eta > 0:
                x_vp = x_vp + sigma_eta.item() * _noise_like(x, generator)
            x = x_vp / ab_s.sqrt().item()
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "sigma_next": s_next, "denoised": denoised})
    return x


@torch.no_grad()
def sample_ddpm(denoiser, x: Tensor, sigmas: Tensor, *, generator=None, callback: Callable | None = None,
                cond: dict | None = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) on any σ-grid: draw x_s from the
    exact Gaussian posterior q(x_s | x_t, x₀ = x̂₀) of the forward process (DDPM eq. 6–7):

        mean = sqrt(ᾱ_s) β x̂₀/(1-ᾱ_t) + sqrt(α) (1-ᾱ_s) x_t/(1-ᾱ_t),   var = (1-ᾱ_s) β/(1-ᾱ_t),

    with α = ᾱ_t/ᾱ_s and β = 1 - α for the (possibly respaced) step t → s.
    """
    cond = cond or {}
    sigmas = sigmas.to(torch.float64)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _sigma_batch(s, x), **cond)
        if s_next == 0:
            x = denoised
        else:
            ab_t, ab_s = 1 / (1 + s**2), 1 / (1 + s_next**2)
            alpha = ab_t / ab_s
            beta = 1 - alpha
            x_t = x * ab_t.sqrt().item()
            mean = (ab_s.sqrt() * beta / (1 - ab_t)).item() * denoised + (alpha.sqrt() * (1 - ab_s) / (1 - ab_t)).item() * x_t
            std = ((1 - ab_s) * beta / (1 - ab_t)).sqrt().item()
            x = (mean + std * _noise_like(x, generator)) / ab_s.sqrt().item()
        if callback is not None:
            callback({"i": i, "x": x, "sigma": s, "sigma_next": s_next, "denoised": denoised})
    return x


SAMPLERS: dict[str, Callable] = {"ddim": sample_ddim, "ddpm": sample_ddpm}


def get_sampler(name: str) -> Callable:
    from .errors import ConfigError

    key = name.lower()
    if key not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; valid samplers: {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[key]
