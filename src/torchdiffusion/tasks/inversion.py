"""Deterministic DDIM inversion: the noise x_{σ_max} that DDIM maps to a given image.

DDIM (η = 0; Song et al. 2021, eq. 13) is the Euler step of the probability-flow ODE in the
σ-view (EDM §3): from σ_b to σ_a < σ_b,

    x_a = D_b + (σ_a/σ_b)(x_b - D_b),      D_b = D(x_b, σ_b),                     (1)

and into σ_a = 0, x_0 = D(x_1, σ_1). Inversion walks the same grid backwards, solving (1)
for x_b given x_a:

    x_b = D_b + (σ_b/σ_a)(x_a - D_b),                                             (2)

which is implicit (D_b depends on x_b). The classical DDIM inversion (Dhariwal & Nichol
2021, App. F; the "null-text"/diffusers ``DDIMInverseScheduler`` recipe) replaces D_b by
D(x_a, σ_a), the prediction at the point already known (at the image itself, σ_a = 0,
it starts with x_1 = y). ``fixed_point_iters`` k > 0 then refines D_b by fixed-point
iteration of (2) (Pan et al. 2023, "Effective Real Image Editing with Accelerated Iterative
Diffusion Inversion", §3): D_b ← D(x_b, σ_b), x_b ← (2), and for the step out of σ = 0,
x_1 ← x_1 + (y - D(x_1, σ_1)), keeping per image the iterate whose forward DDIM step lands
closest to the known point, or the last iterate while the residual still falls (:func:`_refine`). When the iterations converge, DDIM on the same
grid (:func:`reconstruct`) returns the image exactly. NFE = steps × (1 + k) - 1 (the step
out of σ = 0 needs no explicit evaluation).
"""
from __future__ import annotations

import torch
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.tasks.common import (TaskResult, conditioned, image_condition, model_channels, model_size, resolve, space_of, task_sigmas)
from torchdiffusion.io.images import as_images, check_size
from torchdiffusion.sampling.registry import sample_ddim


def _full(x: Tensor, sigma: float) -> Tensor:
    return torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)


def _refine(d, x_a: Tensor, x_b: Tensor, a: float, b: float, iters: int) -> Tensor:
    """Safeguarded fixed-point iteration of (2): each evaluation D_b = D(x_b, σ_b) gives both
    the residual of the forward step, |DDIM(x_b) - x_a|, and the next iterate; per image the
    iterate with the smallest residual seen is kept (large steps make the plain iteration
    diverge: its contraction factor is about (σ_b/σ_a - 1)·|∂D/∂x|)."""
    best, best_res, better = x_b, None, None
    for _ in range(iters):
        d_b = d(x_b, _full(x_b, b))
        forward = d_b if a == 0.0 else d_b + (a / b) * (x_b - d_b)
        res = (forward - x_a).flatten(1).norm(dim=1)
        if best_res is None:
            best, best_res = x_b, res
            better = torch.ones_like(res, dtype=torch.bool).reshape(-1, *([1] * (x_b.ndim - 1)))
        else:
            better = (res < best_res).reshape(-1, *([1] * (x_b.ndim - 1)))
            best, best_res = torch.where(better, x_b, best), torch.minimum(res, best_res)
        x_b = x_b + (x_a - d_b) if a == 0.0 else d_b + (b / a) * (x_a - d_b)
    # the last iterate is unverified: take it where the iteration was still improving
    return best if better is None else torch.where(better, x_b, best)


@torch.no_grad()
def invert(model, images, *, steps: int = 50, fixed_point_iters: int = 0, class_labels=None, prompt=None,
           guidance_scale: float = 1.0) -> TaskResult:
    """The DDIM latents x_{σ_max} of ``images``: ``TaskResult.images`` holds them (not
    clamped; they are σ_max-scale noise), ``info['sigmas']`` the DDIM grid to decode them with."""
    denoiser, pipe = resolve(model)
    if image_condition(pipe):
        raise ConfigError("inversion needs a model without an image condition")
    if fixed_point_iters < 0:
        raise ConfigError(f"fixed_point_iters must be ≥ 0, got {fixed_point_iters}")
    y = as_images(images, model_channels(denoiser, pipe), "image")
    check_size(y, model_size(pipe), "image")
    dev = pipe.device if pipe is not None else torch.device("cpu")
    y = space_of(pipe).to_model(y.to(dev))  # a latent model inverts E(y)·s
    d = CountingDenoiser(conditioned(denoiser, pipe, y.shape[0], class_labels, prompt, guidance_scale=guidance_scale))
    sigmas = task_sigmas(denoiser, pipe, "ddim", steps)
    levels = [float(s) for s in sigmas.flip(0)]  # 0, σ_{n-1}, …, σ_max
    x = y.clone()
    for a, b in zip(levels[:-1], levels[1:]):
        if a == 0.0:  # out of the image: x_1 with D(x_1, σ_1) = y; explicit guess x_1 = y
            x_b = x.clone()
        else:
            d_a = d(x, _full(x, a))
            x_b = d_a + (b / a) * (x - d_a)
        x = _refine(d, x, x_b, a, b, fixed_point_iters)
    return TaskResult(x.cpu(), d.nfe, {"sigmas": sigmas, "fixed_point_iters": fixed_point_iters})


@torch.no_grad()
def reconstruct(model, latents: Tensor, sigmas: Tensor, *, class_labels=None, prompt=None,
                guidance_scale: float = 1.0) -> TaskResult:
    """Decode DDIM latents with DDIM (η = 0) on ``sigmas`` (the grid :func:`invert` used)."""
    denoiser, pipe = resolve(model)
    dev = pipe.device if pipe is not None else torch.device("cpu")
    d = CountingDenoiser(conditioned(denoiser, pipe, latents.shape[0], class_labels, prompt, guidance_scale=guidance_scale))
    out = space_of(pipe).to_pixels(sample_ddim(d, latents.to(dev), sigmas))
    return TaskResult(out.cpu().clamp(-1, 1), d.nfe, {"sigmas": sigmas})
