"""Noise schedules of variance-preserving (VP) diffusion, in the noise-level view of EDM.

A discrete VP schedule (Ho et al. 2020, "Denoising Diffusion Probabilistic Models") is a
sequence ``alpha_bar[t]`` (ᾱ_t, t = 0 … T-1) with the forward process

    q(x_t | x_0) = N( sqrt(ᾱ_t) x_0 , (1 - ᾱ_t) I ).                                   (DDPM eq. 4)

Karras et al. 2022 ("Elucidating the Design Space of Diffusion-Based Generative Models", EDM)
rewrite every such process as ``x = x_0 + σ ε`` with the noise level

    σ_t = sqrt( (1 - ᾱ_t) / ᾱ_t ),        x_t = x / sqrt(1 + σ_t²).                      (EDM Table 1)

so a sampler only ever sees σ. This module gives each schedule ᾱ(t), σ(t) and the inverse
t(σ). Between integer timesteps, ``log σ`` is interpolated linearly (as k-diffusion's
``DiscreteSchedule`` does), so fractional timesteps and arbitrary σ-grids map to a
continuous t the network can embed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError


def linear_alpha_bar(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """DDPM's linear β schedule (Ho et al. 2020, §4): β_t linear in t, ᾱ_t = Π_{s≤t} (1 - β_s).

    ``beta_start``/``beta_end`` are given for T = 1000 and rescaled by 1000/T so that other T
    describe the same continuous process (as in Nichol & Dhariwal 2021, appendix).
    """
    scale = 1000.0 / num_timesteps
    betas = torch.linspace(beta_start * scale, beta_end * scale, num_timesteps, dtype=torch.float64).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, dim=0)


def cosine_alpha_bar(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM", eq. 17).

    ᾱ(t) = f(t)/f(0),  f(t) = cos²( (t/T + s)/(1 + s) · π/2 ),  with β_t = 1 - ᾱ_t/ᾱ_{t-1}
    clipped to ``max_beta`` so the last step stays finite.
    """
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0)


def sigmoid_alpha_bar(num_timesteps: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0) -> Tensor:
    """Sigmoid schedule (Jabri et al. 2022, "Scalable Adaptive Computation"; Chen 2023, "On the
    Importance of Noise Scheduling for Diffusion Models", Alg. 1).

    ᾱ(t) = ( -sigmoid((t/T·(end-start) + start)/τ) + sigmoid(end/τ) ) / ( sigmoid(end/τ) - sigmoid(start/τ) ),
    evaluated at t = 1/T … 1 and kept strictly inside (0, 1).
    """
    t = torch.arange(1, num_timesteps + 1, dtype=torch.float64) / num_timesteps
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    out = (-torch.sigmoid((t * (end - start) + start) / tau) + v_end) / (v_end - v_start)
    return out.clamp(1e-9, 1 - 1e-9)


_BUILDERS = {"linear": linear_alpha_bar, "cosine": cosine_alpha_bar, "sigmoid": sigmoid_alpha_bar}


@dataclass
class ScheduleConfig:
    """A schedule's name and length; saved in a model's JSON config."""

    name: str = "cosine"
    num_timesteps: int = 1000

    def build(self) -> "NoiseSchedule":
        return NoiseSchedule.from_config(self)

    def to_dict(self) -> dict:
        return asdict(self)


class NoiseSchedule:
    """A discrete VP schedule with T steps, viewed through its noise levels σ_t.

    Attributes: ``alpha_bar`` (T,), ``sigmas`` (T,) increasing, ``sigma_min``/``sigma_max``.
    All tables are float64 on the CPU; methods return tensors on the device and dtype of
    their input.
    """

    def __init__(self, alpha_bar: Tensor, name: str = "custom"):
        alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
        if alpha_bar.ndim != 1 or len(alpha_bar) < 2:
            raise ConfigError("a schedule needs at least 2 timesteps")
        if not bool(((alpha_bar > 0) & (alpha_bar < 1)).all()) or not bool((alpha_bar[1:] < alpha_bar[:-1]).all()):
            raise ConfigError(f"schedule {name!r}: ᾱ_t must be strictly decreasing inside (0, 1)")
        self.name = name
        self.alpha_bar = alpha_bar
        self.sigmas = ((1 - alpha_bar) / alpha_bar).sqrt()
        self.log_sigmas = self.sigmas.log()

    @classmethod
    def from_config(cls, config: ScheduleConfig) -> "NoiseSchedule":
        if config.name not in _BUILDERS:
            raise ConfigError(f"unknown schedule {config.name!r}; choose one of {sorted(_BUILDERS)}")
        if config.num_timesteps < 2:
            raise ConfigError(f"num_timesteps must be ≥ 2, got {config.num_timesteps}")
        return cls(_BUILDERS[config.name](config.num_timesteps), name=config.name)

    @property
    def num_timesteps(self) -> int:
        return len(self.alpha_bar)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma(self, t: Tensor) -> Tensor:
        """σ(t) for continuous t ∈ [0, T-1], log-linear between integer steps."""
        t = torch.as_tensor(t)
        tf = t.detach().to(torch.float64).cpu().clamp(0, self.num_timesteps - 1)
        low = tf.floor().long().clamp(max=self.num_timesteps - 2)
        w = tf - low
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[low + 1]
        return log_sigma.exp().to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float32)

    def t(self, sigma: Tensor) -> Tensor:
        """The inverse t(σ): continuous timestep whose noise level is σ (clamped to the table)."""
        sigma = torch.as_tensor(sigma)
        log_sigma = sigma.detach().to(torch.float64).cpu().clamp(min=1e-30).log()
        idx = torch.searchsorted(self.log_sigmas, log_sigma.reshape(-1)).reshape(log_sigma.shape)
        low = (idx - 1).clamp(0, self.num_timesteps - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = ((log_sigma - lo) / (hi - lo)).clamp(0, 1)
        t = low.to(torch.float64) + w
        dtype = sigma.dtype if sigma.is_floating_point() else torch.float32
        return t.to(device=sigma.device, dtype=dtype)

    def alpha_bar_at(self, t: Tensor) -> Tensor:
        """ᾱ(t) = 1 / (1 + σ(t)²) for continuous t."""
        return 1.0 / (1.0 + self.sigma(t) ** 2)

    def timesteps_for_steps(self, steps: int, spacing: str = "trailing") -> Tensor:
        """Integer timesteps (descending) for sampling with ``steps`` network calls.

        'leading' (DDIM paper, diffusers default): t = k·⌊T/n⌋, largest first;
        'trailing' (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
        Flawed", Table 2): starts at T-1 so the first step sees the trained σ_max;
        'linspace': round(linspace(T-1, 0, n)).
        """
        T = self.num_timesteps
        if steps < 1 or steps > T:
            raise ConfigError(f"steps must be in [1, {T}] for this {T}-step schedule, got {steps}")
        if spacing == "leading":
            ts = torch.arange(steps) * (T // steps)
        elif spacing == "trailing":
            ts = torch.round(torch.arange(T, 0, -T / steps, dtype=torch.float64)).long() - 1
            ts = ts.flip(0)
        elif spacing == "linspace":
            ts = torch.linspace(0, T - 1, steps, dtype=torch.float64).round().long()
        else:
            raise ConfigError(f"unknown timestep spacing {spacing!r}; choose leading, trailing or linspace")
        return ts.flip(0)

    def sigmas_for_steps(self, steps: int, spacing: str = "trailing") -> Tensor:
        """Descending σ-grid of ``steps`` noise levels from the trained table, then a final 0."""
        ts = self.timesteps_for_steps(steps, spacing)
        return torch.cat([self.sigmas[ts], torch.zeros(1, dtype=torch.float64)]).float()
