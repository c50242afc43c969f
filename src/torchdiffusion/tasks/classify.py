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

Errors are summed with weight w(σ) = 1 over the levels σ = 0.7, 1.5, 3 (pixels in [-1, 1]; chosen on
training digits, benchmarks/editing_defaults.py):
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

CLASSIFIER_SIGMAS = (0.7, 1.5, 3.0)  # noise levels of the class decision (pixels in [-1, 1])
CLASSIFIER_NOISES = 4  # noise draws per level in the first round (shared by every class)
FINAL_CANDIDATES = 3  # classes kept for the second round …
FINAL_NOISES = 8  # … with this many more draws per level


@torch.no_grad()
def class_errors(denoiser, y: Tensor, num_classes: int | Tensor, *, known: Tensor | None = None, factor: int = 1,
                 sigmas=CLASSIFIER_SIGMAS, noises: int = CLASSIFIER_NOISES, seed: int = 0,
                 batch_size: int = 512) -> Tensor:
    """(N, K) mean squared errors Σ ‖A D(x̃ + σ ε, σ, c) − y‖² / (levels · draws · |A|) of every
    class c for the N observations ``y`` (see the module docstring); ``known`` (N or 1, 1, H, W)
    = 1 where a pixel is observed, ``factor`` the block size of a low-resolution ``y``.
    ``num_classes`` may instead be an (N, k) tensor of candidate classes per image: the result
    is then (N, k), column j the error of candidate j."""
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
    if isinstance(num_classes, Tensor):
        candidates = num_classes.to(torch.long)
    else:
        candidates = torch.arange(int(num_classes)).expand(n, -1)
    levels = torch.tensor([float(s) for s in sigmas], dtype=x_fill.dtype)
    draws = len(levels) * int(noises)
    # every image's draws come from its own seeded stream, the same for every class
    eps = initial_noise((draws, *x_fill.shape[1:]), seeded_generators(seed, n))
    sig = levels.repeat_interleave(int(noises)).to(dev)  # (draws,)
    noisy = x_fill[:, None] + sig.reshape(1, -1, 1, 1, 1) * eps.to(dev)  # (N, draws, C, H, W)
    errors = torch.zeros(n, candidates.shape[1], dtype=torch.float64)
    flat_x = noisy.reshape(n * draws, *x_fill.shape[1:])
    flat_s = sig.repeat(n)
    weight = None if known is None else known.repeat_interleave(draws, 0)
    for j in range(candidates.shape[1]):
        labels = candidates[:, j].repeat_interleave(draws).to(dev)
        for start in range(0, n * draws, batch_size):
            part = slice(start, start + batch_size)
            x0 = denoiser(flat_x[part], flat_s[part], class_labels=labels[part]).float()
            idx = torch.arange(start, start + x0.shape[0], device=dev) // draws
            target = y[idx].float()
            if factor > 1:
                err = (downsample(x0, factor) - target).pow(2).mean((1, 2, 3))
            elif weight is not None:
                w = weight[part].float()
                err = ((x0 - target).pow(2) * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * x0.shape[1]).clamp(min=1)
            else:
                err = (x0 - target).pow(2).mean((1, 2, 3))
            errors[:, j].index_add_(0, idx.cpu(), err.double().cpu())
    return errors / draws


@torch.no_grad()
def infer_class(model, y: Tensor, *, known: Tensor | None = None, factor: int = 1, seed: int = 0,
                sigmas=CLASSIFIER_SIGMAS, noises: int = CLASSIFIER_NOISES, final_candidates: int = FINAL_CANDIDATES,
                final_noises: int = FINAL_NOISES) -> tuple[Tensor, Tensor]:
    """(labels (N,), probabilities (N, K)) of the classes a class-conditional model sees in ``y``
    (N, C, H, W in [-1, 1], pixels; see :func:`class_errors` for ``known`` and ``factor``).

    Two rounds (successive elimination, as in Li et al. 2023 §3.3): every class with ``noises``
    draws per level, then the ``final_candidates`` best with ``final_noises`` more; the decision
    is the lowest error over all draws. Cost per image: levels × (K · noises + candidates ·
    final_noises) network evaluations (3 × (40 + 24) = 192 for MNIST). The probabilities are
    softmax(−error / T) with T the mean spread of the first-round errors: a confidence to show,
    not a calibrated posterior."""
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
    y = y.to(pipe.device)
    errors = class_errors(denoiser, y, k, known=known, factor=factor, sigmas=sigmas, noises=noises, seed=seed)
    spread = (errors - errors.mean(1, keepdim=True)).abs().mean().clamp(min=1e-12)
    probs = torch.softmax(-(errors - errors.min(1, keepdim=True).values) / spread, dim=1).float()
    labels = errors.argmin(1)
    m = min(int(final_candidates), k)
    if m >= 2 and final_noises > 0:
        top = errors.topk(m, dim=1, largest=False).indices
        more = class_errors(denoiser, y, top, known=known, factor=factor, sigmas=sigmas, noises=final_noises,
                            seed=seed + 1_000_003)
        total = (errors.gather(1, top) * noises + more * final_noises) / (noises + final_noises)
        labels = top.gather(1, total.argmin(1, keepdim=True)).squeeze(1)
        probs = torch.zeros_like(probs)
        probs.scatter_(1, top, torch.softmax(-(total - total.min(1, keepdim=True).values) / spread, dim=1).float())
    return labels, probs


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

