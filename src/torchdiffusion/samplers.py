"""Samplers: plain functions ``sample_xxx(denoiser, x, sigmas, *, generator=None, callback=None, cond=None, ...)``.

Contract (k-diffusion's): ``denoiser(x, sigma, **cond)`` returns x̂₀ = D(x, σ) for
x = x₀ + σ ε, with ``sigma`` a (B,) tensor (EDM's σ-view; Karras et al. 2022, eq. 2);
``x`` starts as ``sigmas[0] * noise``; ``sigmas`` is a strictly decreasing 1-D tensor of
noise levels, usually from :func:`torchdiffusion.discretization.get_sigmas`, that ends
with 0. ``callback({"i", "x", "sigma", "sigma_next", "denoised"})`` is called after every
step (progress bars, live x̂₀ previews). ``generator`` is a ``torch.Generator`` or a list of
one per sample; noise is always drawn on the CPU, so per-sample generators give the same
image whatever the batch size and device.

Notation. h = λ_{i+1} - λ_i with λ = -log σ (for a VP model this is the half log-SNR
log(α/σ_vp) of DPM-Solver), φ_k are the exponential-integrator functions
φ_0(z) = e^z, φ_{k+1}(z) = (φ_k(z) - 1/k!)/z, and ε̂ = (x - D)/σ. In the σ-view the
probability-flow ODE (EDM eq. 4) reads

    dx/dσ = (x - D(x, σ))/σ,       equivalently     dx/dλ = D(x, λ) - x,

and its exact solution over one step is x_{i+1} = e^{-h} x_i + ∫_0^h e^{-(h-τ)} D(λ_i+τ) dτ
(DPM-Solver++, Lu et al. 2022b, eq. 8). The exponential integrators (DDIM, DPM++, UniPC)
differ in how they approximate D in that integral; LMS/PLMS/Euler/Heun integrate dx/dσ;
:func:`sample_abm` (the default) integrates the ODE in the angle φ = arctan(σ/σ_data).
Network evaluations (NFE) per grid of n steps (n+1 entries):

=====================  ======================================
sampler                NFE
=====================  ======================================
heun                   ≤ 2n - 1 (no correction on the step to 0, on steps
                       spanning > 10× in σ, nor into σ_min when n < 15)
all others             n
=====================  ======================================

Registry: :data:`SAMPLER_REGISTRY` maps the names users know from web UIs and diffusers
("DPM++ 2M Karras", "Euler a", "UniPC", …) to a :class:`SamplerSpec` (function, σ-grid,
keyword arguments, diffusers equivalent); :func:`resolve_sampler` accepts those names and
the function names, case-insensitively. docs/samplers.md has the table and the benchmark.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .discretization import T_SPACINGS, check_sigmas, get_sigmas
from .errors import ConfigError, TorchDiffusionError
from .schedules import NoiseSchedule


class SamplingError(TorchDiffusionError):
    """The denoiser returned NaN or inf during sampling (diverged model, fp16 overflow, …)."""


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _noise_like(x: Tensor, generator) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the CPU from ``generator``: a
    ``torch.Generator`` or a list of one generator per sample (so that a seed gives the
    same image whatever the batch it is drawn in)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise ConfigError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        noise = torch.stack([torch.randn(x.shape[1:], generator=g, dtype=torch.float32) for g in generator])
    else:
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


class DenoiserWrapper(torch.nn.Module):
    """Base of denoiser wrappers: attributes it lacks (sigma_min, sigma_max, schedule, …) are
    those of the wrapped ``self.denoiser``."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "denoiser":
                raise
            return getattr(self.denoiser, name)


class CountingDenoiser(DenoiserWrapper):
    """Wraps a denoiser and counts its calls (NFE, one per batched call) in ``nfe``."""

    def __init__(self, denoiser):
        super().__init__(denoiser)
        self.nfe = 0

    def forward(self, x, sigma, **cond):
        self.nfe += 1
        return self.denoiser(x, sigma, **cond)


class _Run:
    """One sampling run: validated inputs, the denoiser call with its checks, the callback."""

    def __init__(self, denoiser, x: Tensor, sigmas, cond: dict | None, callback: Callable | None):
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] < 1:
            raise ConfigError("x must be a tensor with a batch dimension")
        if not bool(torch.isfinite(x).all()):
            raise ConfigError("the input x contains NaN or inf; start from finite noise (sigmas[0] * randn)")
        self.sigmas = check_sigmas(sigmas, denoiser)
        self.denoiser, self.cond, self.callback = denoiser, dict(cond or {}), callback
        self.steps = len(self.sigmas) - 1

    def sigma(self, i: int) -> float:
        return float(self.sigmas[i])

    def denoise(self, x: Tensor, sigma: float, i: int) -> Tensor:
        s = torch.full((x.shape[0],), sigma, device=x.device, dtype=x.dtype)
        out = self.denoiser(x, s, **self.cond)
        if not bool(torch.isfinite(out).all()):
            raise SamplingError(f"the denoiser returned NaN/inf at step {i} (σ = {sigma:.4g})")
        return out

    def report(self, i: int, x: Tensor, denoised: Tensor) -> None:
        if self.callback is not None:
            self.callback({"i": i, "x": x, "sigma": self.sigmas[i], "sigma_next": self.sigmas[i + 1],
                           "denoised": denoised})


def _phi(k: int, z: float) -> float:
    """φ_k(z) = Σ_{j≥0} z^j/(j+k)!: the series for |z| < 1, else the recursion
    φ_0 = e^z, φ_{j+1} = (φ_j - 1/j!)/z (stable for |z| ≥ 1)."""
    if abs(z) < 1.0:
        term, total = 1.0 / math.factorial(k), 0.0
        for j in range(30):
            total += term
            term *= z / (j + k + 1)
        return total
    value = math.exp(z)
    for j in range(k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def _interpolation_weights(nodes: list[float], moments: list[float]) -> list[float]:
    """Weights w_j with Σ_j w_j f(u_j) = Σ_m c_m · moments[m] for the polynomial
    p(u) = Σ_m c_m u^m interpolating f at ``nodes`` u_j (a quadrature rule: moments[m] is
    the integral of u^m against the rule's weight function)."""
    q = len(nodes)
    vander = torch.tensor([[u**m for m in range(q)] for u in nodes], dtype=torch.float64)
    mom = torch.tensor(moments[:q], dtype=torch.float64)
    # p's coefficients are V^{-1} f, so Σ_m c_m M_m = (V^{-T} M) · f.
    return torch.linalg.solve(vander.T, mom).tolist()


def _exp_weights(h: float, nodes: list[float]) -> list[float]:
    """Weights w_j with ∫_0^h e^{-(h-τ)} p(τ) dτ = Σ_j w_j D_j, for p interpolating D_j at
    τ = nodes[j]·h: exact exponential Adams integration (DPM-Solver++ multistep, Lu et al.
    2022b, §4; DEIS, Zhang & Chen 2023). With u = τ/h, ∫_0^h e^{-(h-τ)} u^m dτ = m! h φ_{m+1}(-h)."""
    moments = [math.factorial(m) * h * _phi(m + 1, -h) for m in range(len(nodes))]
    return _interpolation_weights(nodes, moments)


def _sigma_weights(ds: float, nodes: list[float]) -> list[float]:
    """Weights w_j with ∫_σ^{σ+ds} p(s) ds = Σ_j w_j f_j, p interpolating f_j at s = σ + nodes[j]·ds
    (variable-step Adams–Bashforth in σ; the LMS sampler)."""
    return _interpolation_weights(nodes, [ds / (m + 1) for m in range(len(nodes))])


def _lambda(sigma: float) -> float:
    return -math.log(sigma)


def _history_order(order: int, hs: list[float], max_ratio: float, final: bool = False) -> int:
    """The multistep order usable now: limited by the history available (``hs`` holds the
    steps so far, the current one last); 1 when the current step is more than ``max_ratio``
    times the previous one, or when ``final`` (the last step into σ_min of a short grid, see
    :func:`_is_stiff_final`): extrapolating the history that far amplifies its errors — the
    variance blow-up of 2nd-order corrections on a large final step, worst with strong
    classifier-free guidance (DPM-Solver++, Lu et al. 2022b, §6; diffusers' ``lower_order_final``)."""
    order = min(order, len(hs))
    if order > 1 and (final or hs[-1] > max_ratio * hs[-2]):
        return 1
    return order


def _limited(base: Tensor, increment: Tensor, correction: Tensor, limit: float) -> Tensor:
    """base + increment + correction, with the higher-order ``correction`` scaled down per
    sample so that its norm is at most ``limit`` times that of the first-order
    ``increment``. Smooth problems never reach the limit; it stops a multistep
    extrapolation from overshooting where the denoiser changes abruptly between steps (strong
    classifier-free guidance at low NFE), which is how multistep solvers inflate variance."""
    if limit == math.inf:
        return base + increment + correction
    dims = tuple(range(1, base.ndim))  # per sample, over every other dimension (images: C, H, W)
    inc = torch.linalg.vector_norm(increment, dim=dims, keepdim=True) if dims else increment.abs()
    cor = torch.linalg.vector_norm(correction, dim=dims, keepdim=True) if dims else correction.abs()
    scale = (limit * inc / cor.clamp(min=torch.finfo(cor.dtype).tiny)).clamp(max=1.0)
    return base + increment + scale * correction


LOWER_ORDER_FINAL_STEPS = 15
"""Grids with fewer steps than this take their last step into σ_min at first order."""


def _is_stiff_final(run: "_Run", i: int, lower_order_final: bool) -> bool:
    """True for the step i → i+1 that reaches the last positive σ of a grid ending in 0 with
    fewer than :data:`LOWER_ORDER_FINAL_STEPS` steps."""
    return (lower_order_final and run.steps < LOWER_ORDER_FINAL_STEPS and float(run.sigmas[-1]) == 0
            and i + 2 == run.steps)


# --------------------------------------------------------------------------------------
# first-order and Runge–Kutta samplers
# --------------------------------------------------------------------------------------


def _churn(run: _Run, x: Tensor, i: int, generator, s_churn: float, s_tmin: float, s_tmax: float,
           s_noise: float) -> tuple[Tensor, float]:
    """EDM's stochastic churn (Karras et al. 2022, Alg. 2, lines 4–6): raise σ_i to
    σ̂ = σ_i (1 + γ), γ = min(S_churn/N, √2 - 1) for σ_i ∈ [S_tmin, S_tmax], by adding fresh
    noise of std sqrt(σ̂² - σ_i²). σ̂ is kept ≤ the model's σ_max."""
    sigma = run.sigma(i)
    if s_churn <= 0 or not s_tmin <= sigma <= s_tmax:
        return x, sigma
    gamma = min(s_churn / run.steps, math.sqrt(2.0) - 1.0)
    sigma_hat = sigma * (1 + gamma)
    sigma_max = getattr(run.denoiser, "sigma_max", None)
    if sigma_max is not None:
        sigma_hat = min(sigma_hat, float(sigma_max))
    if sigma_hat > sigma:
        x = x + math.sqrt(sigma_hat**2 - sigma**2) * s_noise * _noise_like(x, generator)
    return x, sigma_hat


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
            x = x + sigma_up * s_noise * _noise_like(x, generator)
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
                x_vp = x_vp + sigma_eta * _noise_like(x, generator)
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
            x = (mean + std * _noise_like(x, generator)) / math.sqrt(ab_s)
        run.report(i, x, denoised)
    return x


# --------------------------------------------------------------------------------------
# multistep exponential integrators: DPM-Solver++ and UniPC
# --------------------------------------------------------------------------------------


@torch.no_grad()
def _sample_dpmpp_multistep(denoiser, x: Tensor, sigmas: Tensor, *, order: int, eta: float, solver_type: str,
                            s_noise: float, generator, callback, cond, max_step_ratio: float,
                            lower_order_final: bool) -> Tensor:
    run = _Run(denoiser, x, sigmas, cond, callback)
    if solver_type not in ("midpoint", "phi"):
        raise ConfigError(f"unknown solver_type {solver_type!r}; choose 'midpoint' or 'phi'")
    lambdas: list[float] = []
    history: list[Tensor] = []
    hs: list[float] = []
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        lambdas.append(_lambda(sigma))
        history = (history + [denoised])[-order:]
        if sigma_next == 0:
            # λ_{i+1} = ∞: every polynomial extrapolation diverges; the exact limit of the
            # first-order step is x̂₀ itself.
            x = denoised
        else:
            h = _lambda(sigma_next) - lambdas[-1]
            hs.append(h)
            q = _history_order(order, hs, max_step_ratio, _is_stiff_final(run, i, lower_order_final))
            h_eta = h * (1 + eta)
            if q == 2 and solver_type == "midpoint":
                r = hs[-2] / h
                w0 = -math.expm1(-h_eta)
                weights = [w0 * (1 + 0.5 / r), -w0 * 0.5 / r]
            else:
                nodes = [0.0] + [(lambdas[-1 - k] - lambdas[-1]) / h for k in range(1, q)]
                weights = _exp_weights(h_eta, nodes)
            x = math.exp(-h_eta) * x
            for w, d in zip(weights, reversed(history[-q:])):
                x = x + w * d
            if eta > 0:
                x = x + sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise * _noise_like(x, generator)
        run.report(i, x, denoised)
    return x


def sample_dpmpp_2m(denoiser, x: Tensor, sigmas: Tensor, *, generator=None, callback: Callable | None = None,
                    cond: dict | None = None, solver_type: str = "midpoint", max_step_ratio: float = 3.0,
                    lower_order_final: bool = True) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, "DPM-Solver++: Fast Solver for Guided Sampling of
    Diffusion Probabilistic Models", Alg. 2), in the σ-view:

        x_{i+1} = e^{-h} x_i + (1 - e^{-h}) [ (1 + 1/(2r)) D_i - 1/(2r) D_{i-1} ],   r = h_{i-1}/h_i.

    ``solver_type='phi'`` integrates the linear interpolant of D exactly instead
    (weights h φ_1 and h φ_2; diffusers' ``solver_type='heun'``). First order on the first
    step, on the step to σ = 0, and where h_i > ``max_step_ratio``·h_{i-1}. NFE = steps.
    """
    return _sample_dpmpp_multistep(denoiser, x, sigmas, order=2, eta=0.0, solver_type=solver_type, s_noise=1.0,
                                   generator=generator, callback=callback, cond=cond, max_step_ratio=max_step_ratio,
                                   lower_order_final=lower_order_final)


def sample_dpmpp_2m_sde(denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 1.0, s_noise: float = 1.0,
                        generator=None, callback: Callable | None = None, cond: dict | None = None,
                        solver_type: str = "midpoint", max_step_ratio: float = 3.0,
                        lower_order_final: bool = True) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022b, §5 and Appendix; η generalization as in
    k-diffusion). With h_η = (1 + η) h:

        x_{i+1} = (σ_{i+1}/σ_i) e^{-ηh} x_i + (1 - e^{-h_η}) [ D_i + (D_i - D_{i-1})/(2r) ]
                  + σ_{i+1} sqrt(1 - e^{-2ηh}) z.

    η = 1 is the reverse SDE's exact noise level (its first-order step is the DDPM
    posterior); η = 0 is DPM-Solver++(2M). NFE = steps.
    """
    return _sample_dpmpp_multistep(denoiser, x, sigmas, order=2, eta=eta, solver_type=solver_type, s_noise=s_noise,
                                   generator=generator, callback=callback, cond=cond, max_step_ratio=max_step_ratio,
                                   lower_order_final=lower_order_final)


def sample_dpmpp_3m_sde(denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 1.0, s_noise: float = 1.0,
                        generator=None, callback: Callable | None = None, cond: dict | None = None,
                        max_step_ratio: float = 3.0, lower_order_final: bool = True) -> Tensor:
    """DPM-Solver++(3M), SDE variant (Lu et al. 2022b, Appendix B multistep of order 3;
    k-diffusion's ``dpmpp_3m_sde``). D is interpolated by the quadratic through
    D_i, D_{i-1}, D_{i-2} and the exponential integral is taken exactly:

        x_{i+1} = (σ_{i+1}/σ_i) e^{-ηh} x_i + h_η φ_1 D_i + h_η² φ_2 D'_i + h_η³ φ_3 D''_i
                  + σ_{i+1} sqrt(1 - e^{-2ηh}) z,      φ_k = φ_k(-h_η), h_η = (1+η) h,

    with D', D'' the derivatives (per unit λ, rescaled to h_η) of the interpolant at λ_i.
    (The second-derivative term here is the full Taylor term; k-diffusion's and diffusers'
    3M use half of it.) η = 0 gives the deterministic DPM-Solver++(3M). NFE = steps.
    """
    return _sample_dpmpp_multistep(denoiser, x, sigmas, order=3, eta=eta, solver_type="phi", s_noise=s_noise,
                                   generator=generator, callback=callback, cond=cond, max_step_ratio=max_step_ratio,
                                   lower_order_final=lower_order_final)


def sample_dpmpp_3m(denoiser, x: Tensor, sigmas: Tensor, *, generator=None, callback: Callable | None = None,
                    cond: dict | None = None, max_step_ratio: float = 3.0, lower_order_final: bool = True) -> Tensor:
    """Deterministic DPM-Solver++(3M): :func:`sample_dpmpp_3m_sde` with η = 0 (exact
    exponential Adams–Bashforth of order 3 in λ). NFE = steps."""
    return sample_dpmpp_3m_sde(denoiser, x, sigmas, eta=0.0, generator=generator, callback=callback, cond=cond,
                               max_step_ratio=max_step_ratio, lower_order_final=lower_order_final)


def _unipc_update(x: Tensor, h: float, lambdas: list[float], history: list[Tensor], order: int, variant: str,
                  denoised_next: Tensor | None = None) -> Tensor:
    """One UniP (predictor; ``denoised_next`` None) or UniC (corrector) update of order
    ``order`` from λ_i = lambdas[-1] (D_i = history[-1]) to λ_i + h (Zhao et al. 2023,
    "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models",
    Alg. 2–3, data-prediction form with B(h) = h ('bh1') or e^h - 1 ('bh2')):

        x̃ = e^{-h} x_i + (1 - e^{-h}) D_i - B(-h) Σ_m ρ_m (D_{m} - D_i)/r_m,

    r_m = (λ_m - λ_i)/h over the previous points (and the new point r = 1 for UniC), with the
    ρ solving Σ_m ρ_m r_m^{k-1} = k! (-h) φ_{k+1}(-h)/B(-h), k = 1…(number of points);
    order-2 UniP and order-1 UniC use ρ = 1/2 (the paper's simplification).
    """
    d0 = history[-1]
    z = -h
    b_h = z if variant == "bh1" else math.expm1(z)
    x_next = math.exp(-h) * x - math.expm1(-h) * d0
    rks = [(lambdas[-1 - m] - lambdas[-1]) / h for m in range(1, order)]
    diffs = [(history[-1 - m] - d0) / rk for m, rk in zip(range(1, order), rks)]
    if denoised_next is not None:
        rks.append(1.0)
        diffs.append(denoised_next - d0)
    if not diffs:
        return x_next
    n = len(diffs)
    if n == 1 and (denoised_next is not None or order == 2):
        rhos = [0.5]
    else:
        b = torch.tensor([math.factorial(k) * z * _phi(k + 1, z) / b_h for k in range(1, n + 1)], dtype=torch.float64)
        vander = torch.tensor([[rk ** (k - 1) for rk in rks] for k in range(1, n + 1)], dtype=torch.float64)
        rhos = torch.linalg.solve(vander, b).tolist()
    for rho, diff in zip(rhos, diffs):
        x_next = x_next - b_h * rho * diff
    return x_next


@torch.no_grad()
def sample_unipc(denoiser, x: Tensor, sigmas: Tensor, *, order: int = 3, variant: str = "bh2",
                 use_corrector: bool = True, generator=None, callback: Callable | None = None,
                 cond: dict | None = None, max_step_ratio: float = 3.0, lower_order_final: bool = True) -> Tensor:
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
    Sampling of Diffusion Models", Alg. 2–3 with B(h) of eq. 11 — ``variant`` 'bh1' or 'bh2').

    The UniP-p predictor is an exponential multistep update of order p from D_i and its
    p-1 predecessors; after the model is evaluated at the predicted point, the UniC corrector
    redoes the step with that new value too (order p+1) — and the evaluation is reused by
    the next predictor, so the corrector costs no NFE. No corrector after the last step
    (it would need one more evaluation). NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    if variant not in ("bh1", "bh2"):
        raise ConfigError(f"unknown UniPC variant {variant!r}; choose 'bh1' or 'bh2'")
    if order < 1:
        raise ConfigError(f"order must be ≥ 1, got {order}")
    lambdas: list[float] = []
    history: list[Tensor] = []
    hs: list[float] = []
    x_prev, q = None, 1
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        if use_corrector and x_prev is not None:
            x = _unipc_update(x_prev, hs[-1], lambdas, history, q, variant, denoised_next=denoised)
        lambdas.append(_lambda(sigma))
        history = (history + [denoised])[-order:]
        if sigma_next == 0:
            x = denoised
        else:
            h = _lambda(sigma_next) - lambdas[-1]
            hs.append(h)
            q = _history_order(order, hs, max_step_ratio, _is_stiff_final(run, i, lower_order_final))
            x_prev, x = x, _unipc_update(x, h, lambdas, history, q, variant)
        run.report(i, x, denoised)
    return x


# --------------------------------------------------------------------------------------
# Adams–Bashforth–Moulton in the angle of the v-parameterization
# --------------------------------------------------------------------------------------


def _angle(sigma: float, sigma_data: float) -> float:
    return math.atan(sigma / sigma_data)


def _adams_update(u: Tensor, phis: list[float], i: int, history: list[Tensor], q: int,
                  v_next: Tensor | None = None, limit: float = math.inf) -> Tensor:
    """u_{i+1} = u_i + ∫_{φ_i}^{φ_{i+1}} p(φ) dφ, p interpolating the last ``q`` slopes at
    φ_i, φ_{i-1}, … (Adams–Bashforth) and, for the corrector, also ``v_next`` at φ_{i+1}
    (Adams–Moulton). The predictor's departure from the Euler step is limited to ``limit``
    times the Euler increment (see :func:`_limited`)."""
    dphi = phis[i + 1] - phis[i]
    nodes = [(phis[i - j] - phis[i]) / dphi for j in range(q)]
    values = [history[-1 - j] for j in range(q)]
    if v_next is not None:
        nodes, values = [1.0] + nodes, [v_next] + values
    increment = sum(w * v for w, v in zip(_sigma_weights(dphi, nodes), values))
    if v_next is not None:
        return u + increment
    euler = dphi * history[-1]
    return _limited(u, euler, increment - euler, limit)


def _abm_auto_order(steps: int) -> int:
    """Adams order for a grid of ``steps`` steps: high orders need short steps (the stability
    region of Adams–Bashforth shrinks as the order grows), so 2 up to 6 steps, 3 up to 14, then 4."""
    return 2 if steps <= 6 else 3 if steps <= 14 else 4


@torch.no_grad()
def sample_abm(denoiser, x: Tensor, sigmas: Tensor, *, order: int | None = None, sigma_data: float = 0.5,
               use_corrector: bool = True, predictor_limit: float = 2.0, max_step_ratio: float = 3.0,
               generator=None, callback: Callable | None = None, cond: dict | None = None) -> Tensor:
    """Adams–Bashforth–Moulton on the probability-flow ODE in the angle of the
    v-parameterization (our sampler; the angle and v are those of Salimans & Ho 2022,
    "Progressive Distillation", §4 and Appendix D, also the TrigFlow form of Lu & Song 2024,
    "Simplifying, Stabilizing and Scaling Continuous-Time Consistency Models", §3).

    With φ = arctan(σ/σ_d) and u = x cos φ / σ_d, the ODE dx/dσ = (x - D)/σ (EDM eq. 4) becomes

        du/dφ = v̂(u, φ) = cos φ ε̂ - sin φ D/σ_d,        ε̂ = (x - D)/σ,

    whose right-hand side is *constant* along trajectories when the data are Gaussian with
    standard deviation σ_d (then x(σ) = μ + c sqrt(σ_d² + σ²)), and slowly varying for data at
    that scale. φ runs over the finite interval [0, π/2), so the last step to σ = 0 is an
    ordinary high-order step: it does not blur. Each step (Hairer, Nørsett & Wanner, "Solving
    Ordinary Differential Equations I", §III.1 and §III.5):

        P:  u_{i+1} = u_i + Σ_{j<q} β_j v̂_{i-j}         (variable-step Adams–Bashforth, order q)
        E:  v̂_{i+1} = v̂(u_{i+1}, φ_{i+1})                (one network evaluation)
        C:  u_{i+1} = u_i + Σ_{j≤q} α_j v̂_{i+1-j}        (Adams–Moulton, order q+1)

    with β, α the integrals over [φ_i, φ_{i+1}] of the Lagrange basis through the nodes. As in
    UniPC (Zhao et al. 2023), v̂_{i+1} is kept from the predicted point and not re-evaluated
    after C, so the corrector costs no evaluation; none follows the last step.

    Safeguards: q = min(order, steps so far), 1 where a φ-step is more than
    ``max_step_ratio`` times the previous one; the predictor's departure from the Euler step
    is limited per sample to ``predictor_limit`` × the Euler increment, which smooth problems
    never reach but which stops the variance blow-up of multistep extrapolation under strong
    classifier-free guidance at low NFE. ``order=None`` picks 2/3/4 from the number of steps.
    Use it on the 'angle_clustered' σ-grid (its registered grid: nodes in φ between uniform
    and Chebyshev, :func:`~torchdiffusion.discretization.clustered_angle_sigmas`) or the
    'angle' grid (uniform in φ). NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    order = _abm_auto_order(run.steps) if order is None else int(order)
    if order < 1:
        raise ConfigError(f"order must be ≥ 1, got {order}")
    if sigma_data <= 0:
        raise ConfigError(f"sigma_data must be > 0, got {sigma_data}")
    phis = [_angle(run.sigma(i), sigma_data) for i in range(run.steps + 1)]
    u = x * (math.cos(phis[0]) / sigma_data)
    history: list[Tensor] = []
    dphis: list[float] = []
    u_prev, q = None, 1
    for i in range(run.steps):
        sigma, phi = run.sigma(i), phis[i]
        x = u * (sigma_data / math.cos(phi))
        denoised = run.denoise(x, sigma, i)
        v = math.cos(phi) * (x - denoised) / sigma - math.sin(phi) / sigma_data * denoised
        if use_corrector and u_prev is not None:
            u = _adams_update(u_prev, phis, i - 1, history, q, v_next=v)
        history = (history + [v])[-order:]
        dphis.append(phi - phis[i + 1])
        q = _history_order(order, dphis, max_step_ratio)
        u_prev, u = u, _adams_update(u, phis, i, history, q, limit=predictor_limit)
        run.report(i, u * (sigma_data / math.cos(phis[i + 1])), denoised)
    return u * (sigma_data / math.cos(phis[-1]))


# --------------------------------------------------------------------------------------
# linear multistep in σ: LMS and PLMS
# --------------------------------------------------------------------------------------


@torch.no_grad()
def sample_lms(denoiser, x: Tensor, sigmas: Tensor, *, order: int = 4, generator=None,
               callback: Callable | None = None, cond: dict | None = None) -> Tensor:
    """Linear multistep (Adams–Bashforth) on dx/dσ = ε̂ with exact variable-step weights
    (k-diffusion's ``sample_lms``; Hairer, Nørsett & Wanner, "Solving ODEs I", §III.1):

        x_{i+1} = x_i + Σ_{j<q} w_j ε̂_{i-j},   w_j = ∫_{σ_i}^{σ_{i+1}} ℓ_j(σ) dσ,

    ℓ_j the Lagrange basis through σ_i … σ_{i-q+1}, q = min(order, i+1). NFE = steps.
    """
    run = _Run(denoiser, x, sigmas, cond, callback)
    derivs: list[Tensor] = []
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        derivs = (derivs + [(x - denoised) / sigma])[-order:]
        q = len(derivs)
        ds = sigma_next - sigma
        nodes = [(run.sigma(i - j) - sigma) / ds for j in range(q)]
        for w, d in zip(_sigma_weights(ds, nodes), reversed(derivs)):
            x = x + w * d
        run.report(i, x, denoised)
    return x


_AB_COEFFICIENTS = ([1.0], [1.5, -0.5], [23 / 12, -16 / 12, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -9 / 24])


@torch.no_grad()
def sample_plms(denoiser, x: Tensor, sigmas: Tensor, *, order: int = 4, generator=None,
                callback: Callable | None = None, cond: dict | None = None) -> Tensor:
    """PLMS: pseudo linear multistep (Liu et al. 2022, "Pseudo Numerical Methods for
    Diffusion Models on Manifolds", eq. 12), with the lower-order warm-up of iPNDM (Zhang &
    Chen 2023, "DEIS", §5) instead of pseudo Runge–Kutta steps. The fixed Adams–Bashforth
    combination of the last q noise predictions drives a DDIM step:

        ε' = (55 ε̂_i - 59 ε̂_{i-1} + 37 ε̂_{i-2} - 9 ε̂_{i-3})/24   (q = 4; AB1–AB3 before),
        x_{i+1} = x_i + (σ_{i+1} - σ_i) ε'                          (DDIM with ε', σ-view).

    NFE = steps.
    """
    if not 1 <= order <= 4:
        raise ConfigError(f"PLMS order must be 1–4, got {order}")
    run = _Run(denoiser, x, sigmas, cond, callback)
    eps_history: list[Tensor] = []
    for i in range(run.steps):
        sigma, sigma_next = run.sigma(i), run.sigma(i + 1)
        denoised = run.denoise(x, sigma, i)
        eps_history = (eps_history + [(x - denoised) / sigma])[-order:]
        coefficients = _AB_COEFFICIENTS[len(eps_history) - 1]
        eps = sum(c * e for c, e in zip(coefficients, reversed(eps_history)))
        x = x + (sigma_next - sigma) * eps
        run.report(i, x, denoised)
    return x


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: its function, its σ-grid and fixed keyword arguments.

    ``spec(denoiser, x, sigmas, **kw)`` runs it (``kw`` override ``kwargs``);
    ``spec.sigmas(model, steps)`` gives its grid; ``spec.nfe(steps)`` the network evaluations.
    ``diffusers`` names the equivalent diffusers scheduler configuration.
    """

    name: str
    fn: Callable
    grid: str
    kwargs: dict = field(default_factory=dict)
    diffusers: str = ""
    stochastic: bool = False

    def __call__(self, denoiser, x: Tensor, sigmas: Tensor, **kwargs) -> Tensor:
        return self.fn(denoiser, x, sigmas, **{**self.kwargs, **kwargs})

    def sigmas(self, model, steps: int, **grid_kwargs) -> Tensor:
        """This sampler's σ-grid with ``steps`` noise levels for ``model`` (see
        :func:`~torchdiffusion.discretization.get_sigmas`). Models without a discrete
        schedule (EDM-style) get the Karras grid where the sampler's grid is uniform in t."""
        grid = self.grid
        if grid in T_SPACINGS and not isinstance(model, NoiseSchedule) and \
                not isinstance(getattr(model, "schedule", None), NoiseSchedule):
            grid = "karras"
        return get_sigmas(model, grid, steps, **grid_kwargs)

    def nfe(self, steps: int, sigmas: Tensor | None = None) -> int:
        """Network evaluations on ``sigmas`` (default: this sampler's grid for a generic VP
        model would differ only for Heun, so pass the grid you sample on to count Heun exactly).
        One per step; Heun adds one per corrected step (:func:`sample_heun`)."""
        if self.fn is not sample_heun:
            return steps
        if sigmas is None:  # without a grid: Heun's usual count, 2·steps - 1 less the short-grid final
            return 2 * steps - 1 - int(self.kwargs.get("lower_order_final", True) and 2 <= steps < LOWER_ORDER_FINAL_STEPS)
        lof = self.kwargs.get("lower_order_final", True)
        ratio = self.kwargs.get("max_step_ratio", 10.0)
        return steps + sum(_heun_corrects(sigmas, i, lof, ratio) for i in range(len(sigmas) - 1))


SAMPLERS: dict[str, Callable] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "lms": sample_lms,
    "plms": sample_plms,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m": sample_dpmpp_3m,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "unipc": sample_unipc,
    "abm": sample_abm,
}
"""Our samplers by snake name (each also in :data:`SAMPLER_REGISTRY`, on its default grid)."""

_DPM = "DPMSolverMultistepScheduler"
_REGISTRY_ROWS = [
    # familiar name, snake function, grid, kwargs, diffusers equivalent
    ("DDPM", "ddpm", "trailing", {}, "DDPMScheduler(timestep_spacing='trailing')"),
    ("DDIM", "ddim", "trailing", {}, "DDIMScheduler(timestep_spacing='trailing', set_alpha_to_one=True)"),
    ("Euler", "euler", "linspace", {}, "EulerDiscreteScheduler()"),
    ("Euler Karras", "euler", "karras", {}, "EulerDiscreteScheduler(use_karras_sigmas=True)"),
    ("Euler a", "euler_ancestral", "linspace", {}, "EulerAncestralDiscreteScheduler()"),
    ("Heun", "heun", "linspace", {}, "HeunDiscreteScheduler()"),
    ("Heun Karras", "heun", "karras", {}, "HeunDiscreteScheduler(use_karras_sigmas=True)  (EDM's sampler)"),
    ("LMS", "lms", "linspace", {}, "LMSDiscreteScheduler()"),
    ("LMS Karras", "lms", "karras", {}, "LMSDiscreteScheduler(use_karras_sigmas=True)"),
    ("PLMS", "plms", "linspace", {}, "PNDMScheduler(skip_prk_steps=True)"),
    ("DPM++ 2M", "dpmpp_2m", "linspace", {}, f"{_DPM}()"),
    ("DPM++ 2M Karras", "dpmpp_2m", "karras", {}, f"{_DPM}(use_karras_sigmas=True)"),
    ("DPM++ 2M Exponential", "dpmpp_2m", "exponential", {}, f"{_DPM}(use_exponential_sigmas=True)"),
    ("DPM++ 2M logSNR", "dpmpp_2m", "logsnr", {}, f"{_DPM}(use_lu_lambdas=True)"),
    ("DPM++ 2M SDE", "dpmpp_2m_sde", "linspace", {}, f"{_DPM}(algorithm_type='sde-dpmsolver++')"),
    ("DPM++ 2M SDE Karras", "dpmpp_2m_sde", "karras", {},
     f"{_DPM}(algorithm_type='sde-dpmsolver++', use_karras_sigmas=True)"),
    ("DPM++ 2M SDE Exponential", "dpmpp_2m_sde", "exponential", {},
     f"{_DPM}(algorithm_type='sde-dpmsolver++', use_exponential_sigmas=True)"),
    ("DPM++ 3M", "dpmpp_3m", "linspace", {}, f"{_DPM}(solver_order=3)"),
    ("DPM++ 3M Karras", "dpmpp_3m", "karras", {}, f"{_DPM}(solver_order=3, use_karras_sigmas=True)"),
    ("DPM++ 3M SDE", "dpmpp_3m_sde", "linspace", {}, f"{_DPM}(solver_order=3, algorithm_type='sde-dpmsolver++')"),
    ("DPM++ 3M SDE Karras", "dpmpp_3m_sde", "karras", {},
     f"{_DPM}(solver_order=3, algorithm_type='sde-dpmsolver++', use_karras_sigmas=True)"),
    ("DPM++ 3M SDE Exponential", "dpmpp_3m_sde", "exponential", {},
     f"{_DPM}(solver_order=3, algorithm_type='sde-dpmsolver++', use_exponential_sigmas=True)"),
    ("UniPC", "unipc", "linspace", {"variant": "bh2"}, "UniPCMultistepScheduler(solver_order=3, solver_type='bh2')"),
    ("UniPC bh1", "unipc", "linspace", {"variant": "bh1"},
     "UniPCMultistepScheduler(solver_order=3, solver_type='bh1')"),
    ("UniPC Karras", "unipc", "karras", {"variant": "bh2"},
     "UniPCMultistepScheduler(solver_order=3, use_karras_sigmas=True)"),
    ("ABM", "abm", "angle_clustered", {}, "none (closest: UniPCMultistepScheduler, DEISMultistepScheduler)"),
]

# Our snake names run on the grid that suits each sampler best on benchmarks/samplers.py.
_SNAKE_GRIDS = {"ddpm": "trailing", "ddim": "trailing", "euler_ancestral": "linspace", "abm": "angle_clustered",
                "dpmpp_2m": "logsnr", "dpmpp_3m": "logsnr", "unipc": "logsnr"}
_DEFAULT_SNAKE_GRID = "karras"
_STOCHASTIC = {"ddpm", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde"}


def _key(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").replace("-", " ").split())


def _build_registry() -> dict[str, SamplerSpec]:
    """Familiar names first; a snake name that reads the same (``'euler'`` ~ "Euler") is an
    alias of the familiar entry, the others run on their best grid."""
    registry: dict[str, SamplerSpec] = {}
    for name, snake, grid, kwargs, diffusers in _REGISTRY_ROWS:
        registry[name] = SamplerSpec(name, SAMPLERS[snake], grid, kwargs, diffusers, snake in _STOCHASTIC)
    by_key = {_key(name): spec for name, spec in registry.items()}
    for snake, fn in SAMPLERS.items():
        registry[snake] = by_key.get(_key(snake)) or SamplerSpec(
            snake, fn, _SNAKE_GRIDS.get(snake, _DEFAULT_SNAKE_GRID), {}, "", snake in _STOCHASTIC)
    return registry


SAMPLER_REGISTRY: dict[str, SamplerSpec] = _build_registry()
"""Familiar names ("DPM++ 2M Karras", "Euler a", …) and snake names ('dpmpp_2m') → :class:`SamplerSpec`."""

DEFAULT_SAMPLER = "ABM"
"""What to use when a user does not choose (see docs/samplers.md for the benchmark behind it)."""


_LOOKUP = {_key(name): spec for name, spec in SAMPLER_REGISTRY.items()}


def resolve_sampler(name: str) -> SamplerSpec:
    """The :class:`SamplerSpec` for a familiar name ("DPM++ 2M Karras", "euler a") or a snake
    name ('dpmpp_2m'); case, '_' and '-' do not matter. Unknown names raise
    :class:`ConfigError` listing the valid ones."""
    if isinstance(name, SamplerSpec):
        return name
    spec = _LOOKUP.get(_key(name))
    if spec is None:
        familiar = [row[0] for row in _REGISTRY_ROWS]
        raise ConfigError(f"unknown sampler {name!r}; valid samplers: {', '.join(familiar)} "
                          f"(or the function names {', '.join(SAMPLERS)})")
    return spec


def get_sampler(name: str) -> SamplerSpec:
    """The sampler callable for ``name`` (see :func:`resolve_sampler`):
    ``get_sampler(name)(denoiser, x, sigmas, generator=…, callback=…, cond=…)``."""
    return resolve_sampler(name)


def sampler_sigmas(name: str, model, steps: int, **grid_kwargs) -> Tensor:
    """The σ-grid the sampler ``name`` is registered with, for ``model`` and ``steps``."""
    return resolve_sampler(name).sigmas(model, steps, **grid_kwargs)
