"""Training data for image-conditioned models: the ``cond_image`` of each training batch.

A model trained with ``--task inpaint`` or ``--task superres`` stores its image condition in
``ModelConfig.image_condition`` and takes ``cond_image`` (``UNetConfig.extra_in_channels``
extra input channels, concatenated to the noisy input):

* inpaint: ``[x ⊙ (1 - hole), hole]`` (C + 1 channels) with random hole masks mixing the
  shapes users paint (LaMa's recipe, Suvorov et al. 2022, §3: wide strokes and boxes; plus
  the outpainting borders and half-image masks of Saharia et al. 2022, "Palette", §4):
  a box (40 %), 1–4 thick random-walk strokes (30 %), an outpainting border (15 %), and a
  half of the image (15 %).
* superres ×f: ``[bicubic_f(A x + s ε), s·1]`` (C + 1 channels), A = f×f block averaging,
  with noise-conditioning augmentation s ~ U(0, aug_max) on half of the samples and s = 0 on
  the other half (Ho et al. 2021, "Cascaded Diffusion Models", §3.2).

Every random draw is made for the whole global batch from the trainer's generator (so DDP
ranks and resumed runs see the same batch) by :func:`draw`, then sliced per rank and turned
into the condition by :func:`build`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from torchdiffusion.errors import ConfigError

TASKS = ("inpaint", "superres")
DEFAULT_AUG_MAX = 0.5


def task_config(task: str, image_size: int, sr_factor: int = 4, aug_max: float = DEFAULT_AUG_MAX) -> dict:
    """The ``image_condition`` dict stored in the model config for a training task."""
    if task == "inpaint":
        return {"kind": "inpaint"}
    if task == "superres":
        if sr_factor < 2 or image_size % sr_factor:
            raise ConfigError(f"--sr-factor {sr_factor} does not divide the image size {image_size} "
                              "(e.g. 28 → ×2 or ×4, 32 → ×2, ×4 or ×8)")
        return {"kind": "superres", "factor": int(sr_factor), "aug_max": float(aug_max)}
    raise ConfigError(f"unknown --task {task!r}; choose one of {TASKS}")


def extra_channels(image_condition: dict, channels: int) -> int:
    """Condition channels: the image (C) plus a mask or an augmentation-level plane."""
    return channels + 1


# --------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------


def _box(size: int, g: torch.Generator) -> Tensor:
    m = torch.zeros(size, size)
    lo, hi = max(2, size // 5), max(3, size * 3 // 5)
    h, w = (int(v) for v in torch.randint(lo, hi + 1, (2,), generator=g))
    top = int(torch.randint(0, size - h + 1, (1,), generator=g))
    left = int(torch.randint(0, size - w + 1, (1,), generator=g))
    m[top:top + h, left:left + w] = 1
    return m


def _strokes(size: int, g: torch.Generator) -> Tensor:
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    m = torch.zeros(size, size)
    for _ in range(int(torch.randint(1, 5, (1,), generator=g))):
        p = torch.rand(2, generator=g) * size
        radius = float(1 + torch.rand(1, generator=g) * size / 10)
        angle = float(torch.rand(1, generator=g) * 2 * math.pi)
        for _ in range(int(torch.randint(3, 8, (1,), generator=g))):
            angle += float(torch.randn(1, generator=g)) * 0.8
            length = float(torch.rand(1, generator=g) * size / 3 + size / 10)
            q = (p + length * torch.tensor([math.sin(angle), math.cos(angle)])).clamp(0, size - 1)
            for u in torch.linspace(0, 1, 8):  # discs along the segment
                c = p + u * (q - p)
                m[(yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius**2] = 1
            p = q
    return m


def _border(size: int, g: torch.Generator) -> Tensor:
    m = torch.ones(size, size)
    widths = torch.randint(0, max(2, size // 3) + 1, (4,), generator=g)
    top, bottom, left, right = (int(v) for v in widths)
    if top + bottom + left + right == 0:
        top = max(1, size // 4)
    m[top:size - bottom, left:size - right] = 0
    return m


def _half(size: int, g: torch.Generator) -> Tensor:
    m = torch.zeros(size, size)
    side = int(torch.randint(0, 4, (1,), generator=g))
    h = size // 2
    if side == 0:
        m[:h] = 1
    elif side == 1:
        m[h:] = 1
    elif side == 2:
        m[:, :h] = 1
    else:
        m[:, h:] = 1
    return m


MASK_KINDS = {"box": _box, "strokes": _strokes, "border": _border, "half": _half}
_MASK_P = torch.tensor([0.4, 0.3, 0.15, 0.15])


def random_masks(n: int, size: int, generator: torch.Generator, kind: str | None = None) -> Tensor:
    """``n`` hole masks (n, 1, size, size) of 0/1 (1 = fill), of one ``kind`` or the mix above."""
    names = list(MASK_KINDS)
    if kind is not None and kind not in MASK_KINDS:
        raise ConfigError(f"unknown mask kind {kind!r}; choose one of {names}")
    picks = torch.multinomial(_MASK_P, n, replacement=True, generator=generator)
    return torch.stack([MASK_KINDS[kind or names[int(k)]](size, generator) for k in picks])[:, None]


# --------------------------------------------------------------------------------------
# the training hook
# --------------------------------------------------------------------------------------


def draw(image_condition: dict, shape: tuple[int, ...], generator: torch.Generator) -> dict:
    """Every random number the conditions of a global batch of ``shape`` need."""
    b, c, h, _ = shape
    kind = image_condition["kind"]
    if kind == "inpaint":
        return {"hole": random_masks(b, h, generator)}
    if kind == "superres":
        f = int(image_condition["factor"])
        s = torch.rand(b, generator=generator) * float(image_condition.get("aug_max", DEFAULT_AUG_MAX))
        s = torch.where(torch.rand(b, generator=generator) < 0.5, torch.zeros_like(s), s)
        return {"aug": s, "z": torch.randn(b, c, h // f, h // f, generator=generator)}
    raise ConfigError(f"unknown image condition {kind!r}")


def build(image_condition: dict, x: Tensor, draws: dict, rows: slice = slice(None)) -> Tensor:
    """``cond_image`` for the clean images ``x`` (this rank's ``rows`` of the global draws)."""
    kind = image_condition["kind"]
    if kind == "inpaint":
        return inpaint_cond_image(x, draws["hole"][rows].to(x))
    f = int(image_condition["factor"])
    return sr_cond_image(downsample(x, f), f, draws["aug"][rows].to(x), draws["z"][rows].to(x))


def apply_task(model_config, task: str, sr_factor: int = 4, latent: bool = False) -> None:
    """Make ``model_config`` (a new run's) an image-conditioned model for ``task``."""
    if latent:
        raise ConfigError("--task works on pixel-space models; drop --vae")
    u = model_config.unet
    model_config.image_condition = task_config(task, u.image_size, sr_factor)
    u.extra_in_channels = extra_channels(model_config.image_condition, u.in_channels)


def inpaint_cond_image(image: Tensor, hole: Tensor) -> Tensor:
    """The condition of a mask-conditioned model: [y ⊙ (1 - hole), hole] (C + 1 channels)."""
    return torch.cat([image * (1 - hole), hole], dim=1)


def downsample(images: Tensor, factor: int) -> Tensor:
    """A x: average over ``factor``×``factor`` blocks (sizes must be divisible)."""
    h, w = images.shape[-2:]
    if factor < 1 or h % factor or w % factor:
        raise ConfigError(f"a {h}×{w} image cannot be downsampled by {factor} (sizes must be multiples of it)")
    return F.avg_pool2d(images, factor)


def upsample_nearest(images: Tensor, factor: int) -> Tensor:
    """A† y: each low-resolution pixel repeated over its ``factor``×``factor`` block."""
    return F.interpolate(images, scale_factor=factor, mode="nearest")


def upsample_bicubic(images: Tensor, factor: int) -> Tensor:
    """The bicubic baseline (and SR3's conditioning input), clamped to [-1, 1]."""
    return F.interpolate(images, scale_factor=factor, mode="bicubic", align_corners=False).clamp(-1, 1)


def sr_cond_image(lowres: Tensor, factor: int, aug_level: Tensor | float, z: Tensor | None = None) -> Tensor:
    """SR3's condition [bicubic_f(y + s z), s·1] with per-sample augmentation level s."""
    s = torch.as_tensor(aug_level, dtype=lowres.dtype, device=lowres.device)
    s = s.expand(lowres.shape[0]) if s.ndim == 0 else s
    s4 = s.reshape(-1, 1, 1, 1)
    noisy = lowres if z is None else lowres + s4 * z
    up = upsample_bicubic(noisy, factor)
    return torch.cat([up, s4.expand(-1, 1, *up.shape[-2:])], dim=1)
