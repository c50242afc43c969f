"""First-order and Runge–Kutta samplers: Euler, Heun (EDM Alg. 2), Euler ancestral, DDIM, DDPM."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from torchdiffusion.sampling.core import LOWER_ORDER_FINAL_STEPS, _Run, _churn
from torchdiffusion.sampling.seeds import noise_like


@torch.no_grad()
def sample_euler(denoiser, x: Tensor, sigmas: Tensor, *, generator=None, callback: Callable | None = None,
                 cond: dict | None = None, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                 s_noise: float = 1.0) -> Tensor:
    """Euler's method on the probability-flow ODE dx/dσ = (x - D)/σ (Karras et al. 2022,
    "Elucidating the Design Space…", eq. 4 and Alg. 2 without its correction):

        x_{i+1} = x_i + (σ_{i+1} - σ_i) (x_i - D(x_i, σ_i))/σ_i.

    Same update as DDIM with η = 0 (EDM §3). Optional stochastic churn (``s_churn`` > 0,
    EDM Alg. 2 lines 4–6). NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    for i in range(run.steps):
        x, sigma = _churn(run, x, i, generator, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.denoise(x, sigma, i)
        sigma_next = run.sigma(i + 1)
        x = denoised + (sigma_next / sigma) * (x - denoised)
        run.report(i, x, denoised)
    return x


@torch.no_grad()
def sample_heun(denoiser, x: Tensor, sigmas: Tensor, *, generator=None, callback: Callable | None = None,
                cond: dict | None = None, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
                s_noise: float = 1.0, lower_order_final: bool = True, max_step_ratio: float = 10.0) -> Tensor:
    """Heun's 2nd-order method, EDM's sampler (Karras et al. 2022, Alg. 1; Alg. 2 with churn):

        d_i = (x_i - D(x_i, σ_i))/σ_i,   x' = x_i + (σ_{i+1} - σ_i) d_i,
        x_{i+1} = x_i + (σ_{i+1} - σ_i) (d_i + d')/2,   d' = (x' - D(x', σ_{i+1}))/σ_{i+1},

    with the plain Euler step (no correction, one evaluation) on the last step to σ = 0
    (Alg. 1, line 7); on a step that spans more than ``max_step_ratio`` in σ (the trapezoidal
    rule assumes d linear in σ; from a cosine schedule's σ_max ≈ 2·10⁴ to σ ≈ 7 it multiplies
    the small change of d by a step of 2·10⁴); and, on grids of fewer than
    :data:`LOWER_ORDER_FINAL_STEPS` steps, on the step into σ_min, where d' is taken at a tiny σ
    from an Euler prediction made with a large step and the correction inflates the variance.
    NFE = 2·steps - 1 minus those uncorrected steps (:meth:`SamplerSpec.nfe` counts them).
    ``s_churn`` > 0 adds EDM's stochastic churn (Alg. 2; S_tmin, S_tmax, S_noise).
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    for i in range(run.steps):
        x, sigma = _churn(run, x, i, generator, s_churn, s_tmin, s_tmax, s_noise)
        sigma_next = run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        d = (x - denoised) / sigma
        x_euler = x + (sigma_next - sigma) * d
        if not _heun_corrects(run.sigmas, i, lower_order_final, max_step_ratio):
            x = x_euler
        else:
            denoised_next = run.denoise(x_euler, sigma_next, i)
            d_next = (x_euler - denoised_next) / sigma_next
            x = x + (sigma_next - sigma) * 0.5 * (d + d_next)
        run.report(i, x, denoised)
    return x


def _heun_corrects(sigmas: Tensor, i: int, lower_order_final: bool = True, max_step_ratio: float = 10.0) -> bool:
    """Whether Heun takes its 2nd-order correction on step i of ``sigmas`` (see :func:`sample_heun`)."""
    sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
    steps = len(sigmas) - 1
    stiff_final = (lower_order_final and steps < LOWER_ORDER_FINAL_STEPS and float(sigmas[-1]) == 0
                   and i + 2 == steps)
    return sigma_next > 0 and sigma <= max_step_ratio * sigma_next and not stiff_final


def _ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """σ_down, σ_up of an ancestral step σ → σ_next in the variance-exploding view
    (k-diffusion's ``get_ancestral_step``): the VE posterior q(x_next | x, x₀) has std
    σ_up = σ_next sqrt(1 - σ_next²/σ²) (η = 1), and σ_down² + σ_up² = σ_next²."""
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


@torch.no_grad()
def sample_euler_ancestral(denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 1.0, s_noise: float = 1.0,
                           generator=None, callback: Callable | None = None, cond: dict | None = None) -> Tensor:
    """Euler ancestral ("Euler a"): an Euler ODE step down to σ_down, then fresh noise of std
    σ_up, so that x_{i+1} has the marginal of the VE posterior q(x_{i+1} | x_i, x̂₀)
    (Ho et al. 2020, eq. 7 in the σ-view; the sampler of Song et al. 2021, "Score-Based
    Generative Modeling through SDEs", §4.2, as in k-diffusion):

        x_{i+1} = x_i + (σ_down - σ_i) (x_i - D)/σ_i + σ_up z,
        σ_up = η σ_{i+1} sqrt(1 - σ_{i+1}²/σ_i²),  σ_down = sqrt(σ_{i+1}² - σ_up²).

    NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        sigma_down, sigma_up = _ancestral_split(sigma, sigma_next, eta)
        x = denoised + (sigma_down / sigma) * (x - denoised)
        if sigma_up > 0:
            x = x + sigma_up * s_noise * noise_like(x, generator)
        run.report(i, x, denoised)
    return x


@torch.no_grad()
def sample_ddim(denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 0.0, generator=None,
                callback: Callable | None = None, cond: dict | None = None) -> Tensor:
    """DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12).

    In VP terms with ᾱ = 1/(1+σ²):

        x_s = sqrt(ᾱ_s) x̂₀ + sqrt(1 - ᾱ_s - σ_η²) ε̂ + σ_η z,
        σ_η = η sqrt((1-ᾱ_s)/(1-ᾱ_t)) sqrt(1 - ᾱ_t/ᾱ_s)                         (eq. 16)

    and divided by sqrt(ᾱ_s) to return to the σ-view. η = 0 is the deterministic DDIM (the
    Euler step of the probability-flow ODE in σ, EDM §3); η = 1 is DDPM's ancestral step.
    NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        if sigma_next == 0:
            x = denoised
        else:
            eps = (x - denoised) / sigma
            ab_t, ab_s = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
            sigma_eta = eta * math.sqrt(max((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s), 0.0))
            dir_coef = math.sqrt(max(1 - ab_s - sigma_eta**2, 0.0))
            x_vp = math.sqrt(ab_s) * denoised + dir_coef * eps
            if sigma_eta > 0:
                x_vp = x_vp + sigma_eta * noise_like(x, generator)
            x = x_vp / math.sqrt(ab_s)
        run.report(i, x, denoised)
    return x


@torch.no_grad()
def sample_ddpm(denoiser, x: Tensor, sigmas: Tensor, *, generator=None, callback: Callable | None = None,
                cond: dict | None = None) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, "Denoising Diffusion Probabilistic Models",
    Alg. 2) on any σ-grid: draw x_s from the exact Gaussian posterior q(x_s | x_t, x₀ = x̂₀)
    of the forward process (DDPM eq. 6–7):

        mean = sqrt(ᾱ_s) β x̂₀/(1-ᾱ_t) + sqrt(α) (1-ᾱ_s) x_t/(1-ᾱ_t),   var = (1-ᾱ_s) β/(1-ᾱ_t),

    with α = ᾱ_t/ᾱ_s and β = 1 - α for the (possibly respaced) step t → s. NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        if sigma_next == 0:
            x = denoised
        else:
            ab_t, ab_s = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)
            alpha = ab_t / ab_s
            beta = 1 - alpha
            x_t = x * math.sqrt(ab_t)
            mean = (math.sqrt(ab_s) * beta / (1 - ab_t)) * denoised + (math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t)) * x_t
            std = math.sqrt((1 - ab_s) * beta / (1 - ab_t))
            x = (mean + std * noise_like(x, generator)) / math.sqrt(ab_s)
        run.report(i, x, denoised)
    return x
