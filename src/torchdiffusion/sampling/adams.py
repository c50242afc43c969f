"""Adams–Bashforth–Moulton in the angle of the v-parameterization (ABM), and LMS/PLMS in σ."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.sampling.core import _Run, _history_order, _limited, _sigma_weights


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
