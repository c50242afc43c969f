"""img2img / style transfer by SDEdit (Meng et al. 2021, "SDEdit: Guided Image Synthesis and
Editing with Stochastic Differential Equations", §3).

Noise the input y to the level σ_s of strength s ∈ [0, 1] with the forward process and run
the reverse process from there, optionally conditioned on a class or prompt:

    x_{σ_s} = y + σ_s z,      x̂ = Sampler(D, x_{σ_s}, grid σ_s → 0),

with σ_s = σ(s · t_max) on the model's schedule (:func:`~.common.strength_to_sigma`). The
larger s, the less of y survives: s = 0 returns y unchanged (no network call), s = 1 starts
from pure noise σ_max z and is exactly plain generation with the same seed (y is ignored).

Network evaluations: the grid from σ_s to 0 always has ``steps`` steps, so NFE is the
sampler's NFE for ``steps`` (``steps`` for all samplers but Heun), whatever the strength —
unlike diffusers' img2img pipelines, where ``num_inference_steps=50, strength=0.3`` runs
only 15 steps. ``TaskResult.nfe`` reports the count.

A latent model runs SDEdit on its latents: x_{σ_s} = E(y)·s + σ_s z, decoded at the end
(Rombach et al. 2022; Stable Diffusion's img2img).
"""
from __future__ import annotations

import torch

from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, EDIT_SAMPLER, EDIT_STEPS
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.tasks.common import (TaskResult, check_strength, conditioned, model_channels, model_size, resolve, run_sampler, space_of, strength_to_sigma, task_classes, task_sigmas, image_condition)
from torchdiffusion.io.images import as_images, check_size
from torchdiffusion.errors import ConfigError


@torch.no_grad()
def img2img(model, images, strength: float = 0.5, *, steps: int = EDIT_STEPS, sampler: str = EDIT_SAMPLER, seed: int = 0,
            class_labels=None, prompt=None, negative_prompt=None, guidance_scale: float = DEFAULT_GUIDANCE,
            sampler_kwargs: dict | None = None) -> TaskResult:
    """SDEdit ``images`` (N, C, H, W in [-1, 1], model size) at ``strength``; see the module
    docstring. ``info['sigma_start']`` is σ_s."""
    denoiser, pipe = resolve(model)
    s = check_strength(strength)
    if image_condition(pipe):
        raise ConfigError(f"img2img needs a model without an image condition; this is a "
                          f"{image_condition(pipe)['kind']} model")
    y = as_images(images, model_channels(denoiser, pipe), "image")
    check_size(y, model_size(pipe), "image")
    n = y.shape[0]
    if s == 0.0:
        return TaskResult(y.clone(), 0, {"strength": 0.0, "sigma_start": 0.0})
    dev = pipe.device if pipe is not None else torch.device("cpu")
    space = space_of(pipe)
    info = {}
    class_labels = task_classes(pipe, y.to(dev), class_labels, prompt, info)
    y = space.to_model(y.to(dev))
    gens = seeded_generators(seed, n)
    z = initial_noise(y.shape[1:], gens).to(dev)
    if s == 1.0:
        sigmas = task_sigmas(denoiser, pipe, sampler, steps)
        x = z * float(sigmas[0])  # pure noise: the initial state of plain generation
    else:
        sigma = strength_to_sigma(denoiser, s)
        sigmas = task_sigmas(denoiser, pipe, sampler, steps, sigma_start=sigma)
        x = y + float(sigmas[0]) * z
    d = CountingDenoiser(conditioned(denoiser, pipe, n, class_labels, prompt, negative_prompt, guidance_scale))
    out = space.to_pixels(run_sampler(sampler, d, x.to(dev), sigmas, gens, sampler_kwargs))
    return TaskResult(out.cpu().clamp(-1, 1), d.nfe, {"strength": s, "sigma_start": float(sigmas[0]),
                                                       "sigmas": sigmas, **info})
