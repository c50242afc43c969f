"""Inpainting: fill the masked pixels of an image (mask 1/white = fill, 0 = known).

Zero-shot, any model (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion
Probabilistic Models", Alg. 1). With m the known-pixel mask (1 - hole) and y the image, the
denoiser is wrapped as

    D'(x, σ) = m ⊙ y + (1 - m) ⊙ D(m ⊙ (y + σ z) + (1 - m) ⊙ x, σ),     z ~ N(0, I) fresh per call,

i.e. the network always sees the known region noised to the current level by the forward
process q(x_σ | y) (RePaint's "known" branch), the unknown region from the sampler's own
trajectory, and its prediction is replaced by y where y is known. Because it is a denoiser
wrapper, any of our samplers runs it unchanged.

Resampling (RePaint §4.2, "jump length" j and "resample count" r): the σ-grid is cut into
segments of j steps; each segment is sampled, re-noised back to its start with the forward
process x_{σ_a} = x_{σ_b} + sqrt(σ_a² - σ_b²) z, and sampled again, r times in all. This
harmonizes the filled region with the known one (the seam) at r× the network evaluations.

Mask-conditioned models (trained with ``--task inpaint``, as production inpainting models
are) see ``cond_image = [y ⊙ m, 1 - m]`` as extra input channels and need no resampling;
replacement can still be combined with them.

The output equals y *exactly* where the mask is 0: the final image is composited as
m ⊙ y + (1 - m) ⊙ clamp(x, -1, 1).

A latent model inpaints its latents: y → E(y)·s, the hole max-pooled to the latent grid
(a latent cell is regenerated when any pixel of its f×f block is in the hole), RePaint
replacement on the latents, then the decoded result is blended into y *in pixels* with the
pixel mask, so unmasked pixels stay exact there too (the VAE's reconstruction error only
touches the filled region).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, EDIT_SAMPLER, EDIT_STEPS
from torchdiffusion.denoiser.image_conditions import inpaint_cond_image
from torchdiffusion.errors import ConfigError
from torchdiffusion.denoiser.wrappers import CountingDenoiser
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators
from torchdiffusion.tasks.common import (TaskResult, Wrapper, conditioned, image_condition, model_channels, model_size, resolve, run_sampler, space_of, task_classes, task_sigmas)
from torchdiffusion.io.images import as_images, as_mask, check_size


class ReplacementDenoiser(Wrapper):
    """D'(x, σ) of RePaint's replacement (see the module docstring); ``known`` is m (1 = known)."""

    def __init__(self, denoiser, image: Tensor, known: Tensor, gens: list[torch.Generator] | None = None,
                 fresh_noise: bool = True):
        super().__init__(denoiser)
        self.image, self.known = image, known
        self.gens, self.fresh_noise = gens, fresh_noise

    def forward(self, x: Tensor, sigma, **cond) -> Tensor:
        s = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        s = s.expand(x.shape[0]) if s.ndim == 0 else s
        s = s.reshape(-1, *([1] * (x.ndim - 1)))
        if self.fresh_noise:
            z = initial_noise(x.shape[1:], self.gens).to(x) if self.gens is not None else torch.randn_like(x)
            x = self.known * (self.image + s * z) + (1 - self.known) * x
        out = self.denoiser(x, sigma, **cond)
        return self.known * self.image + (1 - self.known) * out


def repaint_schedule(sigmas: Tensor, jump: int, resample: int) -> list[tuple[Tensor, bool]]:
    """The segments of RePaint's resampling: (sub-grid, re-noise after it?) in order."""
    if jump < 1:
        raise ConfigError(f"jump length must be ≥ 1, got {jump}")
    if resample < 1:
        raise ConfigError(f"resample count must be ≥ 1, got {resample}")
    out = []
    n = len(sigmas) - 1
    for i in range(0, n, jump):
        seg = sigmas[i:min(i + jump, n) + 1]
        for r in range(resample):
            out.append((seg, r < resample - 1))
    return out


@torch.no_grad()
def inpaint(model, images, mask, *, steps: int = EDIT_STEPS, sampler: str = EDIT_SAMPLER, seed: int = 0,
            jump: int = 10, resample: int = 1, method: str = "auto", class_labels=None, prompt=None,
            negative_prompt=None, guidance_scale: float = DEFAULT_GUIDANCE, sampler_kwargs: dict | None = None) -> TaskResult:
    """Fill the pixels where ``mask`` is 1 in ``images`` (N, C, H, W in [-1, 1], model size).

    ``method``: 'replace' (zero-shot RePaint replacement, any model), 'model' (a
    mask-conditioned model, no replacement), 'both', or 'auto' (= 'model' for a
    mask-conditioned model, else 'replace'). ``resample`` r ≥ 1 passes over each segment of
    ``jump`` steps (r = 1: plain replacement). NFE ≈ r × the sampler's NFE, reported exactly.
    """
    denoiser, pipe = resolve(model)
    y = as_images(images, model_channels(denoiser, pipe), "image")
    check_size(y, model_size(pipe), "image")
    hole = as_mask(mask, y, "mask")
    kind = (image_condition(pipe) or {}).get("kind")
    if method == "auto":
        method = "model" if kind == "inpaint" else "replace"
    if method not in ("replace", "model", "both"):
        raise ConfigError(f"unknown inpainting method {method!r}; choose auto, replace, model or both")
    if method in ("model", "both") and kind != "inpaint":
        raise ConfigError("method 'model' needs a mask-conditioned model (trained with --task inpaint); "
                          "use method 'replace' for this model")
    if kind is not None and kind != "inpaint":
        raise ConfigError(f"this model is a {kind} model; inpaint with an unconditional, class, text or "
                          "mask-conditioned (--task inpaint) model")
    dev = pipe.device if pipe is not None else torch.device("cpu")
    y, hole = y.to(dev), hole.to(dev)
    space = space_of(pipe)
    y_m, hole_m = space.to_model(y), space.mask_to_model(hole)  # the model's space (latents for a latent model)
    n = y.shape[0]
    cond_image = inpaint_cond_image(y_m, hole_m) if method in ("model", "both") else None
    info = {"method": method, "jump": jump, "resample": resample}
    class_labels = task_classes(pipe, y, class_labels, prompt, info, known=1 - hole)
    d = conditioned(denoiser, pipe, n, class_labels, prompt, negative_prompt, guidance_scale, cond_image)
    gens = seeded_generators(seed, n)
    if method in ("replace", "both"):
        d = ReplacementDenoiser(d, y_m, 1 - hole_m, gens)
    d = CountingDenoiser(d)
    sigmas = task_sigmas(denoiser, pipe, sampler, steps)
    x = (initial_noise(y_m.shape[1:], gens) * float(sigmas[0])).to(dev)
    for seg, renoise in repaint_schedule(sigmas, jump, resample if method != "model" else 1):
        x = run_sampler(sampler, d, x, seg, gens, sampler_kwargs)
        if renoise:
            a, b = float(seg[0]), float(seg[-1])
            x = x + math.sqrt(a * a - b * b) * initial_noise(y_m.shape[1:], gens).to(dev)
    out = (1 - hole) * y + hole * space.to_pixels(x).clamp(-1, 1)
    return TaskResult(out.cpu(), d.nfe, {**info, "sigmas": sigmas})
