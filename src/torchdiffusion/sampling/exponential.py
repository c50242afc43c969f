"""Multistep exponential integrators: DPM-Solver++ (2M, 3M, SDE variants) and UniPC."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.sampling.core import _Run, _exp_weights, _history_order, _is_stiff_final, _lambda, _phi
from torchdiffusion.sampling.seeds import noise_like


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
                x = x + sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) * s_noise * noise_like(x, generator)
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
