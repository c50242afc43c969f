"""Super-resolution ×f of a low-resolution image (e.g. 7×7 → 28×28 for f = 4).

Degradation model: A = average pooling over f×f blocks (what :func:`downsample` computes, and
what the benchmark feeds in). Two methods:

* ``sr3``: a model trained to denoise the high-resolution image given the low-resolution
  one (Saharia et al. 2021, "Image Super-Resolution via Iterative Refinement", §2: the
  bicubic-upsampled low-resolution image is concatenated to the network input). With noise
  conditioning augmentation (Ho et al. 2021, "Cascaded Diffusion Models", §3.2): in
  training the low-resolution image is corrupted as ŷ = y + s ε with s drawn per sample, and
  the network is told s through one extra constant input plane; at sampling a small s
  (``aug_level``) makes the model robust to the mismatch between its training degradation and
  real inputs. ``cond_image = [bicubic_f(y + s ε), s·1]``. Train with
  ``torchdiffusion train --task superres --sr-factor 4``.
* ``projection``: zero-shot, for any unconditional model (DDNM, Wang et al. 2023,
  "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space Model", eq. 10): every
  prediction is projected onto the solutions of A x = y,

      D'(x, σ) = D(x, σ) + A†(y - A D(x, σ)),     A† = nearest-neighbour upsampling by f,

  (A† is the pseudo-inverse of block averaging: A A† = I), so only the null space of A (the
  detail inside each block) comes from the model; the output is finally made to satisfy both
  A x = y and x ∈ [-1, 1] by alternating projections (:func:`project_in_range`). Limits:
  exact only for the block-average degradation (a bicubic or blurred downsampling breaks
  A x = y and leaves ringing), noise-free y (noise in y is copied into the output; DDNM⁺
  would handle it), and the model's resolution fixed (×f of the model's image size over f).
* ``sdedit``: bicubic-upsample y, then SDEdit it at ``strength`` (:func:`~.img2img.img2img`)
  and project the result onto A x = y (:func:`project_in_range`): the model adds detail the
  bicubic image lacks while the output keeps y's block averages exactly. The default for
  latent models, whose denoiser sees latents and cannot be projected in pixel space at every
  step (a decode per step would cost more than the U-Net); any model can use it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, EDIT_STEPS, UPSCALE_SAMPLER
from torchdiffusion.denoiser.image_conditions import downsample, sr_cond_image, upsample_bicubic, upsample_nearest
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.tasks.common import (TaskResult, Wrapper, conditioned, image_condition, model_channels, model_size, resolve, run_sampler, space_of, task_classes, task_sigmas)
from torchdiffusion.io.images import as_images
from torchdiffusion.tasks.img2img import img2img


class ProjectionDenoiser(Wrapper):
    """DDNM's range-space projection D'(x, σ) = D + A†(y - A D) (see the module docstring)."""

    def __init__(self, denoiser, lowres: Tensor, factor: int):
        super().__init__(denoiser)
        self.lowres, self.factor = lowres, int(factor)

    def forward(self, x: Tensor, sigma, **cond) -> Tensor:
        return project(self.denoiser(x, sigma, **cond), self.lowres, self.factor)


def project(x: Tensor, lowres: Tensor, factor: int) -> Tensor:
    """x + A†(y - A x): the closest image to x (in L2) whose block averages are y."""
    return x + upsample_nearest(lowres - downsample(x, factor), factor)


def project_in_range(x: Tensor, lowres: Tensor, factor: int, iters: int = 100) -> Tensor:
    """An image in [-1, 1] with block averages y, near x: alternating projections onto
    {A x = y} and the box [-1, 1] (POCS, Youla & Webb 1982), which converge to a point of
    their intersection when it is not empty (it is for a y made from a valid image). A plain
    clamp after :func:`project` breaks A x = y in blocks near black or white."""
    for _ in range(iters):
        x = project(x, lowres, factor).clamp(-1, 1)
    return x




@torch.no_grad()
def upscale(model, lowres, factor: int | None = None, *, steps: int = EDIT_STEPS, sampler: str = UPSCALE_SAMPLER,
            seed: int = 0, method: str = "auto", aug_level: float = 0.0, strength: float = 0.5, class_labels=None,
            prompt=None, guidance_scale: float = DEFAULT_GUIDANCE, sampler_kwargs: dict | None = None,
            average: int = 1) -> TaskResult:
    """Super-resolve ``lowres`` by ``factor``; ``average`` > 1 returns the mean of that many
    posterior samples (seeds seed + 10⁶ j), an estimate of the posterior mean E[x | y]: the
    best PSNR (4 samples: +2 dB over one on MNIST ×4) and smoother detail; every sample keeps
    y's block averages, so their mean does too. NFE × ``average``. See :func:`upscale_sample`."""
    if isinstance(average, bool) or not isinstance(average, int) or not 1 <= average <= 64:
        raise ConfigError(f"average must be a whole number of samples from 1 to 64, got {average!r}")
    kw = dict(steps=steps, sampler=sampler, method=method, aug_level=aug_level, strength=strength, prompt=prompt,
              guidance_scale=guidance_scale, sampler_kwargs=sampler_kwargs)
    first = upscale_sample(model, lowres, factor, seed=seed, class_labels=class_labels, **kw)
    if average == 1:
        return first
    labels = class_labels if class_labels is not None else first.info.get("class_inferred")
    images, nfe = [first.images], first.nfe
    for j in range(1, average):
        r = upscale_sample(model, lowres, factor, seed=seed + 10**6 * j, class_labels=labels, **kw)
        images.append(r.images)
        nfe += r.nfe
    return TaskResult(torch.stack(images).mean(0), nfe, {**first.info, "average": average})


@torch.no_grad()
def upscale_sample(model, lowres, factor: int | None = None, *, steps: int = EDIT_STEPS, sampler: str = UPSCALE_SAMPLER,
                   seed: int = 0, method: str = "auto", aug_level: float = 0.0, strength: float = 0.5,
                   class_labels=None, prompt=None, guidance_scale: float = DEFAULT_GUIDANCE,
                   sampler_kwargs: dict | None = None) -> TaskResult:
    """Super-resolve ``lowres`` (N, C, h, w in [-1, 1]) by ``factor`` to the model's size.

    ``method``: 'sr3' (a model trained with --task superres), 'projection' (zero-shot DDNM
    for any other pixel model), 'sdedit' (bicubic + SDEdit at ``strength`` + projection; any
    model) or 'auto' (sr3 for an SR model, sdedit for a latent model, else projection). ``factor``
    defaults to the SR model's, or model size / h; an SR model refuses another factor.
    """
    denoiser, pipe = resolve(model)
    y = as_images(lowres, model_channels(denoiser, pipe), "low-resolution image")
    cfg = image_condition(pipe) or {}
    kind = cfg.get("kind")
    latent = space_of(pipe).latent
    if method == "auto":
        method = "sr3" if kind == "superres" else "sdedit" if latent else "projection"
    if method not in ("sr3", "projection", "sdedit"):
        raise ConfigError(f"unknown upscaling method {method!r}; choose auto, sr3, projection or sdedit")
    if method == "projection" and latent:
        raise ConfigError("method 'projection' works on pixel-space models; a latent model upscales with "
                          "method 'sdedit' (the default)")
    h, w = y.shape[-2:]
    size = model_size(pipe)
    if method == "sr3":
        if kind != "superres":
            raise ConfigError("method 'sr3' needs a super-resolution model (trained with --task superres); "
                              "use method 'projection' for this model")
        trained = int(cfg["factor"])
        if factor is not None and int(factor) != trained:
            raise ConfigError(f"this super-resolution model was trained for ×{trained}, not ×{factor} "
                              f"(it takes {size // trained}×{size // trained} inputs)")
        factor = trained
    elif kind is not None:
        raise ConfigError(f"this model is a {kind} model (its input needs a condition image); projection "
                          "needs an unconditional, class or text model")
    if factor is None:
        if size is None:
            raise ConfigError("give the upscale factor (the denoiser has no image size)")
        if size % h:
            raise ConfigError(f"a {h}×{w} image cannot be upscaled to the model's {size}×{size} by an integer factor")
        factor = size // h
    factor = int(factor)
    if factor < 1:
        raise ConfigError(f"the upscale factor must be ≥ 1, got {factor}")
    if size is not None and (h * factor, w * factor) != (size, size):
        raise ConfigError(f"a {h}×{w} image upscaled ×{factor} is {h * factor}×{w * factor}, but the model works "
                          f"at {size}×{size}: give {size // factor}×{size // factor} inputs for ×{factor}")
    if method == "sr3" and not 0.0 <= float(aug_level) <= float(cfg.get("aug_max", 1.0)):
        raise ConfigError(f"aug_level must be in [0, {cfg.get('aug_max', 1.0)}] (the levels the model was trained "
                          f"on), got {aug_level}")
    info = {}
    if kind is None:  # a class model without a class: the class the model sees in y
        class_labels = task_classes(pipe, y.to(pipe.device if pipe is not None else y.device), class_labels, prompt,
                                    info, factor=factor)
    if method == "sdedit":

        r = img2img(pipe if pipe is not None else denoiser, upsample_bicubic(y, factor).clamp(-1, 1), strength,
                    steps=steps, sampler=sampler, seed=seed, class_labels=class_labels, prompt=prompt,
                    guidance_scale=guidance_scale, sampler_kwargs=sampler_kwargs)
        return TaskResult(project_in_range(r.images, y, factor), r.nfe,
                          {"method": method, "factor": factor, "strength": r.info["strength"],
                           "sigmas": r.info.get("sigmas"), "aug_level": None, **info})
    dev = pipe.device if pipe is not None else torch.device("cpu")
    y = y.to(dev)
    n = y.shape[0]
    gens = seeded_generators(seed, n)
    cond_image = None
    if method == "sr3":
        z = initial_noise(y.shape[1:], seeded_generators(seed + 10**6, n)).to(dev) if aug_level > 0 else None
        cond_image = sr_cond_image(y, factor, float(aug_level), z)
    d = conditioned(denoiser, pipe, n, class_labels, prompt, guidance_scale=guidance_scale, cond_image=cond_image)
    if method == "projection":
        d = ProjectionDenoiser(d, y, factor)
    d = CountingDenoiser(d)
    sigmas = task_sigmas(denoiser, pipe, sampler, steps)
    shape = (y.shape[1], h * factor, w * factor)
    x = (initial_noise(shape, gens) * float(sigmas[0])).to(dev)
    out = run_sampler(sampler, d, x, sigmas, gens, sampler_kwargs).clamp(-1, 1)
    if method == "projection":
        out = project_in_range(out, y, factor)
    return TaskResult(out.cpu(), d.nfe, {"method": method, "factor": factor, "sigmas": sigmas,
                                         "aug_level": float(aug_level) if method == "sr3" else None, **info})
