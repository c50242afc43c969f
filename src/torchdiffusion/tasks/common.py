"""What every editing task shares: reading images and masks, binding conditions to a
denoiser, σ-grids that start below σ_max, seeded noise, and the result record.

A task takes a :class:`~torchdiffusion.pipeline.DiffusionPipeline` (or a bare denoiser
D(x, σ, **cond) → x̂₀, e.g. an exact one from :mod:`torchdiffusion.exact`) and composes
one of our samplers with a *denoiser wrapper*: a module D'(x, σ) that conditions or
projects the prediction. Wrapping the denoiser (instead of editing x between steps) is what
makes every task work with every sampler, including those whose state is not x (ABM
integrates u = x cos φ/σ_d).

Latent diffusion pipelines (:class:`~torchdiffusion.latent.LatentDiffusionPipeline`) run
the same tasks in their latent space: a task reads pixel images, maps them to the model's
space with :class:`ModelSpace` (``to_model`` = the VAE encoder's posterior mean times the
scale factor, masks max-pooled over each f×f block so a latent cell is regenerated when any
of its pixels is in the hole), samples there, and decodes with ``to_pixels``; for a pixel
model both maps are the identity (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", §4.3 and App. for inpainting/img2img in latent space).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..discretization import T_SPACINGS, get_sigmas
from ..errors import ConfigError, DataError
from ..samplers import DenoiserWrapper as Wrapper  # forwards sigma_min/sigma_max/schedule
from ..schedules import NoiseSchedule


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
    from ..pipeline import DiffusionPipeline

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


class ModelSpace:
    """Where a model samples: pixels (identity maps) or a VAE's latent space.

    ``to_model(y)``: pixel images → the model's space (E(y)·s for a latent pipeline, the
    posterior mean); ``to_pixels(x)``: back (D(x/s)); ``mask_to_model(hole)``: a pixel hole
    mask (N, 1, H, W) → the model's resolution, max-pooled over f×f blocks; ``factor`` f."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.latent = pipe is not None and hasattr(pipe, "vae")
        self.factor = int(pipe.vae.config.downsample_factor) if self.latent else 1

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of the model's state (latents for a latent pipeline)."""
        return tuple(self.pipe.latent_shape)

    def to_model(self, y: Tensor) -> Tensor:
        return self.pipe.encode(y).to(y.device) if self.latent else y

    def to_pixels(self, x: Tensor) -> Tensor:
        return self.pipe.decode(x).to(x.device) if self.latent else x

    def mask_to_model(self, hole: Tensor) -> Tensor:
        if not self.latent:
            return hole
        return torch.nn.functional.max_pool2d(hole, self.factor)


class Bound(Wrapper):
    """D'(x, σ) = D(x, σ, **cond) with the condition fixed (per-sample tensors, batch first)."""

    def __init__(self, denoiser, **cond):
        super().__init__(denoiser)
        self.cond = {k: v for k, v in cond.items() if v is not None}

    def forward(self, x: Tensor, sigma, **cond) -> Tensor:
        return self.denoiser(x, sigma, **{**self.cond, **cond})


def conditioned(denoiser, pipe, n: int, class_labels=None, prompt=None, negative_prompt=None,
                guidance_scale: float = 1.0, cond_image: Tensor | None = None):
    """The denoiser D'(x, σ) for ``n`` images with their class label or prompt (classifier-free
    guidance with scale w, :class:`~torchdiffusion.guidance.CFGDenoiser`) and an optional
    image condition. A class-conditional model without a label predicts unconditionally (its
    null class)."""
    from ..guidance import CFGDenoiser

    extra = {} if cond_image is None else {"cond_image": cond_image}
    if pipe is None:
        if class_labels is not None or prompt is not None:
            raise ConfigError("class labels and prompts need a DiffusionPipeline (a bare denoiser has no condition)")
        return Bound(denoiser, **extra) if extra else denoiser
    if prompt is not None and class_labels is not None:
        raise ConfigError("give a class label or a prompt, not both")
    device = pipe.device
    if prompt is not None:
        c, u = pipe._prompt_conditions(n, prompt, negative_prompt)
    elif class_labels is not None:
        labels, null = pipe._conditions(n, class_labels)
        c, u = {"class_labels": labels.to(device)}, {"class_labels": null.to(device)}
    else:
        if pipe.config.conditioning == "text":  # no prompt: the empty prompt (the unconditional branch)
            return Bound(denoiser, **pipe._prompt_conditions(n, "", None)[0], **extra)
        return Bound(denoiser, **extra) if extra else denoiser
    if extra:
        c, u = {**c, **extra}, {**u, **extra}
    return CFGDenoiser(denoiser, c, u, guidance_scale)


# --------------------------------------------------------------------------------------
# images and masks
# --------------------------------------------------------------------------------------

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601


def _read(item, name: str, mode: str | None = None):
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise DataError(f"{name} {path}: no such file")
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy()
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
            raise DataError(f"{name} {path}: not a readable image ({exc})") from None
    return item


def _pil_to_tensor(img, channels: int | None) -> Tensor:
    from ..images import from_pil

    if channels is None:
        channels = 1 if img.mode in ("L", "1", "I", "I;16", "F", "LA") else 3
    return from_pil(img, channels)


def as_images(images, channels: int | None = None, name: str = "image") -> Tensor:
    """Images as float (N, C, H, W) in [-1, 1] on the CPU.

    Accepts a path, a PIL image, a tensor (C, H, W)/(N, C, H, W) in [-1, 1] or uint8, or a
    list of those (same size). ``channels`` (the model's) converts: RGB → gray by BT.601
    luma, gray → RGB by repetition, RGBA drops alpha; other channel counts are an error.
    """
    from PIL import Image

    if isinstance(images, (list, tuple)):
        parts = [as_images(im, channels, f"{name}[{i}]") for i, im in enumerate(images)]
        if not parts:
            raise ConfigError(f"{name}: empty list of images")
        if len({p.shape[1:] for p in parts}) != 1:
            raise ConfigError(f"{name}: images differ in size: {sorted({tuple(p.shape[1:]) for p in parts})}")
        return torch.cat(parts)
    images = _read(images, name)
    if isinstance(images, Image.Image):
        return _pil_to_tensor(images, channels)[None]
    if not isinstance(images, Tensor):
        raise ConfigError(f"{name} must be a path, a PIL image or a tensor, got {type(images).__name__}")
    x = images.detach().cpu()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ConfigError(f"{name} must have shape (C, H, W) or (N, C, H, W), got {tuple(images.shape)}")
    x = x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x.float()
    if not bool(torch.isfinite(x).all()):
        raise ConfigError(f"{name} contains NaN or inf")
    if channels is None or x.shape[1] == channels:
        return x
    c = x.shape[1]
    if c == 4:
        x, c = x[:, :3], 3
        if channels == 3:
            return x
    if c == 3 and channels == 1:
        return (x * _LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1).clone()
    raise ConfigError(f"{name} has {images.shape[-3] if images.ndim >= 3 else 1} channels; the model takes "
                      f"{channels} (1 = grayscale, 3 = RGB; RGB/gray/RGBA are converted)")


def check_size(x: Tensor, size: int | None, name: str = "image") -> None:
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise ConfigError(f"{name} is {x.shape[-2]}×{x.shape[-1]} but the model works at {size}×{size} "
                          "(resize it first)")


def as_mask(mask, image: Tensor, name: str = "mask") -> Tensor:
    """A hole mask (N, 1, H, W) of 0/1 floats for ``image`` (N, C, H, W): **1 (white) marks
    pixels to fill**, 0 the known pixels (diffusers' convention).

    Accepts a path/PIL image (gray levels / 255), a tensor (H, W), (1, H, W), (N, 1, H, W)
    or with the image's channels (any channel counts), bool or in [0, 1]. A mask of another
    size than the image is an error; a non-binary mask is thresholded at 0.5 with a warning.
    """
    from PIL import Image

    mask = _read(mask, name)
    if isinstance(mask, Image.Image):
        m = torch.from_numpy(__import__("numpy").asarray(mask.convert("L"), dtype="float32").copy()) / 255.0
    elif isinstance(mask, Tensor):
        m = mask.detach().cpu()
        m = m.float() if m.dtype != torch.uint8 else m.float() / 255.0
    else:
        raise ConfigError(f"{name} must be a path, a PIL image or a tensor, got {type(mask).__name__}")
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[None] if m.shape[0] in (1, image.shape[1]) else m[:, None]
    if m.ndim != 4:
        raise ConfigError(f"{name} must be (H, W), (N, 1, H, W) or like the image, got shape {tuple(m.shape)}")
    if tuple(m.shape[-2:]) != tuple(image.shape[-2:]):
        raise ConfigError(f"{name} is {m.shape[-2]}×{m.shape[-1]} but the image is "
                          f"{image.shape[-2]}×{image.shape[-1]}; give a mask of the image's size")
    if m.shape[1] != 1:
        m = m.amax(dim=1, keepdim=True)  # a pixel is filled if any channel says so
    if m.shape[0] not in (1, image.shape[0]):
        raise ConfigError(f"{name} has {m.shape[0]} masks for {image.shape[0]} images")
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise ConfigError(f"{name} values must lie in [0, 1] (or 0–255 for an image file)")
    binary = (m == 0) | (m == 1)
    if not bool(binary.all()):
        warnings.warn(f"{name} is not binary ({int((~binary).sum())} pixels strictly between 0 and 1); "
                      "thresholded at 0.5", stacklevel=3)
    m = (m >= 0.5).float()
    return m.expand(image.shape[0], -1, -1, -1).contiguous()


# --------------------------------------------------------------------------------------
# noise levels and grids
# --------------------------------------------------------------------------------------


def _schedule(denoiser) -> NoiseSchedule | None:
    s = getattr(denoiser, "schedule", None)
    return s if isinstance(s, NoiseSchedule) else None


def check_sigma(denoiser, sigma: float, name: str = "sigma") -> float:
    """σ must be finite, > 0 and inside the model's trained range [σ_min, σ_max]."""
    sigma = float(sigma)
    lo, hi = float(denoiser.sigma_min), float(denoiser.sigma_max)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {sigma}")
    if not lo * (1 - 1e-4) <= sigma <= hi * (1 + 1e-4):
        raise ConfigError(f"{name} = {sigma:.4g} is outside the model's trained noise range [{lo:.4g}, {hi:.4g}]")
    return min(max(sigma, lo), hi)


def strength_to_sigma(denoiser, strength: float) -> float:
    """The noise level of SDEdit strength s ∈ (0, 1]: σ(s · t_max) on the model's VP
    schedule (diffusers' convention: strength is the fraction of the diffusion time), or
    log-linear between σ_min and σ_max for a denoiser without a schedule."""
    schedule = _schedule(denoiser)
    if schedule is not None:
        return float(schedule.sigma(torch.tensor(strength * (schedule.num_timesteps - 1), dtype=torch.float64)))
    lo, hi = float(denoiser.sigma_min), float(denoiser.sigma_max)
    return math.exp(math.log(lo) + strength * (math.log(hi) - math.log(lo)))


def task_sigmas(denoiser, pipe, sampler: str, steps: int, sigma_start: float | None = None) -> Tensor:
    """The σ-grid of ``steps`` steps from ``sigma_start`` (default σ_max) down to 0.

    From σ_max it is the grid plain generation uses (``pipe.sigmas``, or the sampler's
    registered grid for a bare denoiser), so a task starting from pure noise reproduces
    :meth:`DiffusionPipeline.generate` exactly. From a lower σ it is the sampler's own grid
    narrowed to [σ_min, sigma_start] where that grid is defined in σ (karras, logsnr, angle, …),
    and for the grids uniform in the timestep (DDIM's trailing, DDPM's, Euler's linspace) the
    timesteps uniform in [t(sigma_start), 0] of the model's schedule. Always ``steps`` steps:
    a lower start does not silently cut the number of network evaluations.
    """
    from .. import samplers

    spec = samplers.resolve_sampler(sampler)
    hi = float(denoiser.sigma_max)
    if sigma_start is None or sigma_start >= hi * (1 - 1e-6):
        if pipe is not None:
            return pipe.sigmas(steps, sampler).to(torch.float64)
        return spec.sigmas(denoiser, steps)
    sigma_start = check_sigma(denoiser, sigma_start, "starting noise level")
    schedule = _schedule(denoiser)
    if spec.grid in T_SPACINGS and schedule is not None:
        if isinstance(steps, bool) or int(steps) < 1:
            raise ConfigError(f"steps must be an integer ≥ 1, got {steps!r}")
        t0 = float(schedule.t(torch.tensor(sigma_start, dtype=torch.float64)))
        ts = torch.linspace(t0, 0.0, int(steps), dtype=torch.float64) if steps > 1 else torch.tensor([t0])
        sig = schedule.sigma(ts).to(torch.float64)
        sig[0] = sigma_start
        keep = torch.cat([torch.tensor([True]), sig[1:] < sig[:-1]])  # a near-zero t0 can repeat σ_min
        return torch.cat([sig[keep], torch.zeros(1, dtype=torch.float64)])
    grid = "karras" if spec.grid in T_SPACINGS else spec.grid
    if sigma_start <= float(denoiser.sigma_min) * (1 + 1e-6):
        return torch.tensor([sigma_start, 0.0], dtype=torch.float64)
    return get_sigmas(denoiser, grid, steps, sigma_max=sigma_start)


def generators(seed: int, n: int) -> list[torch.Generator]:
    """One CPU generator per image, seeded ``seed + i`` (the pipeline's convention)."""
    from ..pipeline import seeded_generators

    return seeded_generators(seed, n)


def noise(shape: tuple[int, ...], gens: list[torch.Generator]) -> Tensor:
    """Standard normal (N, *shape) drawn per image from its generator (CPU)."""
    return torch.stack([torch.randn(shape, generator=g) for g in gens])


class Counter(Wrapper):
    """Counts batched calls of the denoiser (NFE)."""

    def __init__(self, denoiser):
        super().__init__(denoiser)
        self.nfe = 0

    def forward(self, x, sigma, **cond):
        self.nfe += 1
        return self.denoiser(x, sigma, **cond)


def run_sampler(sampler: str, denoiser, x: Tensor, sigmas: Tensor, gens, sampler_kwargs: dict | None = None) -> Tensor:
    """One of our samplers by name on ``sigmas`` from ``x``."""
    from .. import samplers

    spec = samplers.resolve_sampler(sampler)
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
