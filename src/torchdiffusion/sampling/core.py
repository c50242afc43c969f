"""The shared machinery of the samplers: one run's checks and callback, the φ-functions of the
exponential integrators, interpolation weights, history orders and the churn of EDM's stochastic sampler."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from torchdiffusion.diffusion.schedules import NoiseSchedule
from torchdiffusion.errors import ConfigError, TorchDiffusionError
from torchdiffusion.sampling.grids import check_sigmas


class SamplingError(TorchDiffusionError):
    """The denoiser returned NaN or inf during sampling (diverged model, fp16 overflow, …)."""


from torchdiffusion.sampling.seeds import noise_like as _noise_like


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
