"""Network parameterizations (ε, x₀, v) and the denoiser D(x, σ) that hides them.

In the σ-view of Karras et al. 2022 (EDM) a noisy sample is ``x = x₀ + σ ε``; a VP network
sees the scaled input ``x_t = α x`` with α = 1/sqrt(1+σ²) and the VP noise scale
σ_vp = σ α (so α² + σ_vp² = 1). A network trained to predict

* ε   (Ho et al. 2020):                         x̂₀ = x - σ ε̂
* x₀  (Ho et al. 2020, "predict x_0"):          x̂₀ = network output
* v   (Salimans & Ho 2022, "Progressive Distillation", §4):
      v = α ε - σ_vp x₀,   so   x̂₀ = α x_t - σ_vp v̂ = x/(1+σ²) - σ_vp v̂

is wrapped by :class:`Denoiser` into the single function D(x, σ, **cond) → x̂₀ that every
sampler uses (EDM eq. 2; k-diffusion's ``external.py`` adapters).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from torchdiffusion.errors import ConfigError
from torchdiffusion.diffusion.schedules import NoiseSchedule

PARAMETERIZATIONS = ("eps", "x0", "v")


def _vp_coeffs(sigma: Tensor) -> tuple[Tensor, Tensor]:
    """α = 1/sqrt(1+σ²) and σ_vp = σ/sqrt(1+σ²) for VE noise level σ."""
    alpha = (1 + sigma**2).rsqrt()
    return alpha, sigma * alpha


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Reshape a per-sample tensor (B,) to (B, 1, 1, …) with ``ndim`` dims for broadcasting."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def eps_to_x0(x: Tensor, sigma: Tensor, eps: Tensor) -> Tensor:
    """x̂₀ = x - σ ε (x in the σ-view, x = x₀ + σ ε)."""
    return x - append_dims(sigma, x.ndim) * eps


def x0_to_eps(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    """ε = (x - x₀)/σ."""
    return (x - x0) / append_dims(sigma, x.ndim)


def v_to_x0(x: Tensor, sigma: Tensor, v: Tensor) -> Tensor:
    """x̂₀ = α x_t - σ_vp v with x_t = α x (Salimans & Ho 2022, eq. after 11)."""
    alpha, sigma_vp = _vp_coeffs(append_dims(sigma, x.ndim))
    return alpha * alpha * x - sigma_vp * v


def x0_to_v(x: Tensor, sigma: Tensor, x0: Tensor) -> Tensor:
    """v = α ε - σ_vp x₀, with ε = (x - x₀)/σ."""
    s = append_dims(sigma, x.ndim)
    alpha, sigma_vp = _vp_coeffs(s)
    return alpha * (x - x0) / s - sigma_vp * x0


def output_to_x0(parameterization: str, x: Tensor, sigma: Tensor, out: Tensor) -> Tensor:
    """Turn a network output of the given parameterization into x̂₀."""
    if parameterization == "eps":
        return eps_to_x0(x, sigma, out)
    if parameterization == "x0":
        return out
    if parameterization == "v":
        return v_to_x0(x, sigma, out)
    raise ConfigError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}")


def training_target(parameterization: str, x0: Tensor, noise: Tensor, alpha: Tensor, sigma_vp: Tensor) -> Tensor:
    """The regression target for x_t = α x₀ + σ_vp ε (α, σ_vp broadcastable to x₀)."""
    if parameterization == "eps":
        return noise
    if parameterization == "x0":
        return x0
    if parameterization == "v":
        return alpha * noise - sigma_vp * x0
    raise ConfigError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}")


class Denoiser(nn.Module):
    """D(x, σ, **cond) → x̂₀ for a VP network trained on a discrete schedule.

    ``network(x_t, t, **cond)`` takes the VP-scaled input x_t = x/sqrt(1+σ²) and the
    continuous timestep t = schedule.t(σ) and returns its parameterization's prediction.
    """

    def __init__(self, network: nn.Module | Callable, schedule: NoiseSchedule, parameterization: str = "eps"):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"unknown parameterization {parameterization!r}; choose one of {PARAMETERIZATIONS}")
        self.network = network
        self.schedule = schedule
        self.parameterization = parameterization
        self.autocast_dtype: torch.dtype | None = None  # the network's autocast type (None: as the caller runs)
        self.distilled_steps: int | None = None  # a step-distilled student: at most this many steps
        self.guidance_range: tuple[float, float] | None = None  # a guidance-distilled student: w is an input
        self.channels_last = False

    def set_precision(self, dtype: torch.dtype | None, channels_last: bool = False) -> "Denoiser":
        """Run the network under ``torch.autocast(dtype)`` (bf16/fp16; None = fp32, or whatever
        autocast the caller has entered, as in training), with its inputs and weights in
        channels-last layout when ``channels_last``. The σ arithmetic around the network and its
        output stay in the input's dtype (fp32), so samplers keep their state in fp32."""
        self.autocast_dtype = dtype
        if channels_last != self.channels_last and isinstance(self.network, nn.Module):
            self.network.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.channels_last = bool(channels_last)
        return self

    @property
    def sigma_min(self) -> float:
        return self.schedule.sigma_min

    @property
    def sigma_max(self) -> float:
        return self.schedule.sigma_max

    def forward(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        alpha, _ = _vp_coeffs(append_dims(sigma, x.ndim))
        t = self.schedule.t(sigma)
        x_in = x * alpha
        if self.channels_last and x_in.ndim == 4:
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        if self.autocast_dtype is None:
            out = self.network(x_in, t, **cond)
        else:
            with torch.autocast(x.device.type, dtype=self.autocast_dtype):
                out = self.network(x_in, t, **cond)
        out = out.to(x.dtype).contiguous()
        return output_to_x0(self.parameterization, x, sigma, out)
