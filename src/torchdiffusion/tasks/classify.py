"""Which class does an image show? The model's own answer: a diffusion classifier.

A class-conditional denoiser D(x, σ, c) is also a classifier (Li et al. 2023, "Your Diffusion
Model is Secretly a Zero-Shot Classifier"; Clark & Jaini 2023, "Text-to-Image Diffusion Models
are Zero-Shot Classifiers"): the class whose conditional denoiser best explains the image,

    ĉ(y) = argmin_c  Σ_{σ, ε}  w(σ) ‖A D(x̃ + σ ε, σ, c) − y‖²,

is an approximation of argmax_c p(y | c) (the denoising error bounds −log p, the ELBO). The
same noises ε and levels σ are used for every class, so their errors differ only by the
class (paired differences: far less variance than independent draws). Here y is what the task
observes, through its measurement operator A:

* a clean (or denoised) image: A = I;
* an image with a hole (inpainting): A keeps the known pixels only (the error is summed over them),
  and x̃ is the image with the hole filled by the mean of the known pixels;
* a low-resolution image (super-resolution by f): A = average over f×f blocks and x̃ is y
  upsampled, so the class is the one whose predictions have y's block averages.

Errors are summed with weight w(σ) = 1 over the levels σ = 0.5, 1, 2 (four draws each) (pixels in [-1, 1]):
below them every class denoises alike, above them the prediction forgets y. The editing tasks
call :func:`infer_class` when a class model gets no class (``info['class_inferred']``), so an
inpainted 7 stays a 7 and guidance pushes toward the right digit instead of the weak
unconditional branch.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdiffusion.denoiser.image_conditions import downsample
from torchdiffusion.errors import ConfigError
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.sampling.seeds import initial_noise, seeded_generators

CLASSIFIER_SIGMAS = (0.5, 1.0, 2.0)  # noise levels of the class decision (pixels in [-1, 1])
CLASSIFIER_NOISES = 4  # noise draws per level (shared by every class)


@torch.no_grad()
def class_errors(denoiser, y: Tensor, num_classes: int, *, known: Tensor | None = None, factor: int = 1,
                 sigmas=CLASSIFIER_SIGMAS, noises: int = CLASSIFIER_NOISES, seed: int = 0,
                 batch_size: int = 512) -> Tensor:
    """(N, K) mean squared errors Σ ‖A D(x̃ + σ ε, σ, c) − y‖² / (levels · draws · |A|) of every
    class c for the N observations ``y`` (see the module docstring); ``known`` (N or 1, 1, H, W)
    = 1 where a pixel is observed, ``factor`` the block size of a low-resolution ``y``."""
    n = y.shape[0]
    dev = y.device
    if factor > 1:
        x_fill = F.interpolate(y, scale_factor=factor, mode="nearest")
    elif known is not None:
        known = known.to(y).expand(n, 1, *y.shape[-2:])
        mean = (y * known).sum((1, 2, 3), keepdim=True) / known.sum((1, 2, 3), keepdim=True).clamp(min=1) \
            / y.shape[1]
        x_fill = known * y + (1 - known) * mean
    else:
        x_fill = y
    levels = torch.tensor([float(s) for s in sigmas], dtype=x_fill.dtype)
    draws = len(levels) * int(noises)
    # every image's draws come from its own seeded stream, the same for every class
    eps = initial_noise((draws, *x_fill.shape[1:]), seeded_generators(seed, n))
    sig = levels.repeat_interleave(int(noises)).to(dev)  # (draws,)
    noisy = x_fill[:, None] + sig.reshape(1, -1, 1, 1, 1) * eps.to(dev)  # (N, draws, C, H, W)
    errors = torch.zeros(n, num_classes, dtype=torch.float64)
    flat_x = noisy.reshape(n * draws, *x_fill.shape[1:])
    flat_s = sig.repeat(n)
    weight = None if known is None else known.repeat_interleave(draws, 0)
    for c in range(num_classes):
        for start in range(0, n * draws, batch_size):
            part = slice(start, start + batch_size)
            x0 = denoiser(flat_x[part], flat_s[part],
                          class_labels=torch.full((flat_x[part].shape[0],), c, dtype=torch.long, device=dev)).float()
            idx = torch.arange(start, start + x0.shape[0], device=dev) // draws
            target = y[idx].float()
            if factor > 1:
                err = (downsample(x0, factor) - target).pow(2).mean((1, 2, 3))
            elif weight is not None:
                w = weight[part].float()
                err = ((x0 - target).pow(2) * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * x0.shape[1]).clamp(min=1)
            else:
                err = (x0 - target).pow(2).mean((1, 2, 3))
            errors[:, c].index_add_(0, idx.cpu(), err.double().cpu())
    return errors / draws


@torch.no_grad()
def infer_class(model, y: Tensor, *, known: Tensor | None = None, factor: int = 1, seed: int = 0,
                sigmas=CLASSIFIER_SIGMAS, noises: int = CLASSIFIER_NOISES) -> tuple[Tensor, Tensor]:
    """(labels (N,), probabilities (N, K)) of the classes a class-conditional model sees in ``y``
    (N, C, H, W in [-1, 1], pixels of a pixel model; see :func:`class_errors` for ``known`` and
    ``factor``). The probabilities are softmax(−error / T) with T the mean spread of the errors,
    a confidence to show, not a calibrated posterior."""
    pipe = DiffusionPipeline.from_pretrained(model) if isinstance(model, (str, Path)) else model
    if not isinstance(pipe, DiffusionPipeline) or pipe.config.conditioning != "class":
        raise ConfigError("inferring a class needs a class-conditional model")
    k = int(pipe.config.unet.num_classes)
    space = pipe.space
    if space.latent:  # the latent model judges latents: encode, pool the known mask, no block operator
        y_m = space.to_model(y.to(pipe.device))
        known = None if known is None else 1 - space.mask_to_model(1 - known.to(pipe.device))
        if factor > 1:
            y_m = space.to_model(F.interpolate(y.to(pipe.device), scale_factor=factor, mode="bicubic",
                                               align_corners=False).clamp(-1, 1))
        factor, y = 1, y_m
    denoiser = pipe.denoiser.eval()
    errors = class_errors(denoiser, y.to(pipe.device), k, known=known, factor=factor, sigmas=sigmas, noises=noises,
                          seed=seed)
    spread = (errors - errors.mean(1, keepdim=True)).abs().mean().clamp(min=1e-12)
    probs = torch.softmax(-(errors - errors.min(1, keepdim=True).values) / spread, dim=1).float()
    return errors.argmin(1), probs


def describe_classes(labels: Tensor, names: list[str] | None) -> str:
    """'7' / 'seven' for one image, '3 × seven, 1 × one' for several (most common first)."""
    names = names or []
    counts: dict[int, int] = {}
    for c in labels.tolist():
        counts[c] = counts.get(c, 0) + 1

    def name(c):
        return names[c] if c < len(names) else str(c)
    if len(labels) == 1:
        return name(int(labels[0]))
    return ", ".join(f"{m} × {name(c)}" for c, m in sorted(counts.items(), key=lambda kv: -kv[1]))

