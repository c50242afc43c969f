"""What every editing task shares: reading images and masks, binding conditions to a
denoiser, σ-grids that start below σ_max, seeded noise, and the result record.

A task takes a :class:`~torchdiffusion.pipeline.DiffusionPipeline` (or a bare denoiser
D(x, σ, **cond) → x̂₀, e.g. an exact one from :mod:`torchdiffusion.exact`) and composes
one of our samplers with a *denoiser wrapper*: a module D'(x, σ) that conditions or
projects the prediction. Wrapping the denoiser (instead of editing x between steps) is what
makes every task work with every sampler, including those whose state is not x (ABM
integrates u = x cos φ/σ_d).

Latent diffusion pipelines (``DiffusionPipeline`` with a ``LatentSpace``) run
the same tasks in their latent space: a task reads pixel images, maps them to the model's
space with the pipeline's space (``to_model`` = the VAE encoder's posterior mean times the
scale factor, masks max-pooled over each f×f block so a latent cell is regenerated when any
of its pixels is in the hole), samples there, and decodes with ``to_pixels``; for a pixel
model both maps are the identity (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", §4.3 and App. for inpainting/img2img in latent space).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from torchdiffusion.denoiser.guidance import guided
from torchdiffusion.denoiser.space import PixelSpace
from torchdiffusion.denoiser.wrappers import Bound
from torchdiffusion.denoiser.wrappers import DenoiserWrapper as Wrapper  # forwards sigma_min/sigma_max/schedule
from torchdiffusion.errors import ConfigError
from torchdiffusion.io.images import as_images, as_mask, check_size
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.sampling.grids import check_sigma, strength_to_sigma
from torchdiffusion.sampling.grids import task_sigmas as grid_task_sigmas
from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, resolve_sampler



@dataclass
class TaskResult:
    """A task's output: ``images`` (N, C, H, W) in [-1, 1] on the CPU, the exact number of
    batched network evaluations ``nfe`` (each call of the denoiser on the whole batch counts
    once; tiling and classifier-free guidance batch inside one call), and task-specific
    ``info`` (σ used, grid, latents, …)."""

    images: Tensor
    nfe: int
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------


def resolve(model):
    """(denoiser, pipeline or None) for a :class:`DiffusionPipeline` or a bare denoiser."""
    if isinstance(model, (str, Path)):
        model = DiffusionPipeline.from_pretrained(model)
    if isinstance(model, DiffusionPipeline):
        model.denoiser.eval()
        return model.denoiser, model
    if not callable(model):
        raise ConfigError(f"expected a DiffusionPipeline, a model folder or a denoiser, got {type(model).__name__}")
    return model, None


def image_condition(pipe) -> dict | None:
    """The model's image condition ({'kind': 'inpaint'} / {'kind': 'superres', 'factor': f, …})."""
    return None if pipe is None else getattr(pipe.config, "image_condition", None)


def model_channels(denoiser, pipe, images: Tensor | None = None) -> int | None:
    """Channels of the images the model makes (pixels; a latent model's VAE's)."""
    if pipe is not None:
        return int(pipe.image_shape[0])
    return None if images is None else images.shape[1]


def model_size(pipe) -> int | None:
    """Pixel size of the images the model makes (a latent model's: latent size × f)."""
    return None if pipe is None else int(pipe.image_shape[-1])


# --------------------------------------------------------------------------------------
# images and masks
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# noise levels and grids
# --------------------------------------------------------------------------------------


def run_sampler(sampler: str, denoiser, x: Tensor, sigmas: Tensor, gens, sampler_kwargs: dict | None = None) -> Tensor:
    """One of our samplers by name on ``sigmas`` from ``x``."""
    spec = resolve_sampler(sampler)
    return spec(denoiser, x, sigmas, generator=gens, **(sampler_kwargs or {}))


def check_strength(strength: float, name: str = "strength") -> float:
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in [0, 1], got {strength!r}") from None
    if not 0.0 <= s <= 1.0 or not math.isfinite(s):
        raise ConfigError(f"{name} must be in [0, 1], got {strength}")
    return s


def device_of(denoiser, pipe) -> torch.device:
    if pipe is not None:
        return pipe.device
    try:
        return next(denoiser.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def space_of(pipe):
    """The model's space (:class:`~torchdiffusion.denoiser.space.PixelSpace` for a bare denoiser)."""
    return PixelSpace() if pipe is None else pipe.space


def task_sigmas(denoiser, pipe, sampler: str, steps: int, sigma_start: float | None = None) -> Tensor:
    """The σ-grid of ``steps`` steps from ``sigma_start`` (default σ_max) to 0 on ``sampler``'s
    registered grid (:func:`torchdiffusion.sampling.grids.task_sigmas`); from σ_max it is the grid
    plain generation uses, so a task starting from pure noise reproduces ``generate`` exactly."""
    return grid_task_sigmas(denoiser, resolve_sampler(sampler).grid, steps, sigma_start)


def wants_class(pipe, class_labels=None, prompt=None) -> bool:
    """True when an editing task must infer the class: a class-conditional model given neither."""
    return pipe is not None and class_labels is None and prompt is None and pipe.config.conditioning == "class"


def task_classes(pipe, y: Tensor, class_labels=None, prompt=None, info: dict | None = None, *,
                 known: Tensor | None = None, factor: int = 1):
    """The class labels an editing task conditions on: ``class_labels`` as given; for a
    class-conditional model given neither a class nor a prompt, the class the model itself sees
    in the input ``y`` (pixels; :func:`torchdiffusion.tasks.classify.infer_class` with the task's
    ``known`` pixels or low-resolution ``factor``), recorded in ``info['class_inferred']`` (one
    index per image) and ``info['class_confidence']``. Anything else: None (no class)."""
    if not wants_class(pipe, class_labels, prompt):
        return class_labels
    from torchdiffusion.tasks.classify import describe_classes, infer_class

    labels, probs = infer_class(pipe, y, known=known, factor=factor)
    if info is not None:
        info["class_inferred"] = [int(c) for c in labels]
        info["class_described"] = describe_classes(labels, pipe.config.class_names)
        info["class_confidence"] = [round(float(p), 3) for p in probs.max(1).values]
    return labels


def conditioned(denoiser, pipe, n: int, class_labels=None, prompt=None, negative_prompt=None,
                guidance_scale: float = DEFAULT_GUIDANCE, cond_image: Tensor | None = None):
    """The denoiser D'(x, σ) for ``n`` images with their class label or prompt (classifier-free
    guidance with scale w, :class:`~torchdiffusion.denoiser.guidance.CFGDenoiser`) and an optional
    image condition. A class-conditional model without a label predicts unconditionally (its
    null class; the tasks pass the class :func:`task_classes` infers instead); a text model
    without a prompt gets the empty prompt."""
    extra = {"cond_image": cond_image}
    if pipe is None:
        if class_labels is not None or prompt is not None:
            raise ConfigError("class labels and prompts need a DiffusionPipeline (a bare denoiser has no condition)")
        return guided(denoiser, None, None, extra=extra)
    cond, uncond = pipe.conditions(n, class_labels, prompt, negative_prompt, default_class=False)
    return guided(denoiser, cond, uncond, guidance_scale, extra=extra)
