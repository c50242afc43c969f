"""Training losses with swappable weighting over timesteps.

For x₀ ~ data, t ~ U{0, …, T-1}, ε ~ N(0, I) and x_t = sqrt(ᾱ_t) x₀ + sqrt(1-ᾱ_t) ε the
network output F(x_t, t) regresses its parameterization's target (ε, x₀ or v):

    L = E_t [ w(t) · ‖F(x_t, t) - target‖² ].

Weightings ``w``:

* ``"simple"`` — w = 1: DDPM's L_simple (Ho et al. 2020, eq. 14) when the target is ε.
* ``"min_snr"`` — Min-SNR-γ (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
  Weighting Strategy", eq. 7/§3.4): the x₀-space weight min(SNR, γ) expressed for each
  target, i.e. w = min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v and min(SNR, γ) for x₀,
  with SNR = ᾱ_t/(1-ᾱ_t) = 1/σ_t².
"""
from __future__ import annotations

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.parameterization import append_dims, training_target
from torchdiffusion.diffusion.schedules import NoiseSchedule

WEIGHTINGS = ("simple", "min_snr")


def loss_weight(weighting: str, parameterization: str, snr: Tensor, gamma: float = 5.0) -> Tensor:
    """Per-sample weight w(t) of the chosen weighting for the given target."""
    if weighting == "simple":
        return torch.ones_like(snr)
    if weighting == "min_snr":
        clipped = snr.clamp(max=gamma)
        if parameterization == "eps":
            return clipped / snr
        if parameterization == "v":
            return clipped / (snr + 1)
        if parameterization == "x0":
            return clipped
        raise ConfigError(f"unknown parameterization {parameterization!r}")
    raise ConfigError(f"unknown loss weighting {weighting!r}; choose one of {WEIGHTINGS}")


def diffusion_loss(
    network,
    schedule: NoiseSchedule,
    x0: Tensor,
    parameterization: str = "eps",
    weighting: str = "simple",
    gamma: float = 5.0,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
    **cond,
) -> Tensor:
    """One Monte-Carlo estimate of the weighted denoising loss over a batch ``x0``.

    Timesteps ``t`` (integers in [0, T)) and ``noise`` may be given; otherwise they are drawn
    from ``generator`` on the CPU, so a seed gives the same draw on any device and the
    training run is reproducible.
    """
    b = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (b,), generator=generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
    t = t.cpu()
    noise = noise.to(x0.device, x0.dtype)
    alpha_bar = schedule.alpha_bar[t].to(x0.device, torch.float32)
    alpha = append_dims(alpha_bar.sqrt(), x0.ndim)
    sigma_vp = append_dims((1 - alpha_bar).sqrt(), x0.ndim)
    x_t = alpha * x0 + sigma_vp * noise
    target = training_target(parameterization, x0, noise, alpha, sigma_vp)
    out = network(x_t, t.to(x0.device, torch.float32), **cond)
    mse = ((out.float() - target) ** 2).mean(dim=tuple(range(1, x0.ndim)))
    weight = loss_weight(weighting, parameterization, alpha_bar / (1 - alpha_bar), gamma)
    return (weight * mse).mean()
