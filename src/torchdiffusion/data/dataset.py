"""Datasets as pre-decoded uint8 tensors in memory, so the training step never waits on
image decoding.

A dataset is a :class:`ImageDataset`: ``images`` (N, C, H, W) uint8, optional ``labels``
(N,) int64 with ``class_names``, and optional ``captions``. ``load_dataset("mnist")`` gives
the bundled digits; ``load_dataset(PATH)`` reads an image folder (see :mod:`image_folder`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from torchdiffusion.errors import ConfigError, DataError



@dataclass
class ImageDataset:
    """Images as a uint8 tensor (N, C, H, W) with optional labels and captions."""

    images: Tensor
    labels: Tensor | None = None
    class_names: list[str] | None = None
    captions: list[str] | None = None
    name: str = "dataset"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"{self.name}: images must be a uint8 (N, C, H, W) tensor")
        if len(self.images) == 0:
            raise DataError(f"{self.name}: the dataset holds no images")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{self.name}: {len(self.labels)} labels for {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def batch(self, index: Tensor, flip: Tensor | None = None) -> Tensor:
        """Float batch in [-1, 1] for the given indices; ``flip`` (bool per sample) mirrors."""
        x = self.images[index].float().div_(127.5).sub_(1.0)
        if flip is not None and bool(flip.any()):
            x[flip] = x[flip].flip(-1)
        return x

    def subset(self, index: Tensor) -> "ImageDataset":
        idx = index.tolist()
        return ImageDataset(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            class_names=self.class_names,
            captions=None if self.captions is None else [self.captions[i] for i in idx],
            name=self.name,
        )


def check_dataset_memory(n: int, channels: int, size: int, where: str) -> None:
    """Refuse, before allocating, a dataset that would not fit in half this machine's RAM when
    decoded at ``size`` (the resize also needs a float copy: 5 bytes per pixel in all)."""
    from torchdiffusion.io.memory import physical_memory

    need, ram = 5 * n * channels * size * size, physical_memory()
    if ram is not None and need > ram // 2:
        raise DataError(f"{where}: {n:,} images at {size}×{size} would need {need / 2**30:.1f} GiB decoded, more "
                        f"than half of this machine's {ram / 2**30:.1f} GiB; use a smaller --image-size")


def resize_images(images: Tensor, size: int) -> Tensor:
    """Resize uint8 (N, C, h, w) images to (N, C, size, size) with antialiased bilinear."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    check_dataset_memory(images.shape[0], images.shape[1], size, "the dataset")
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def split_holdout(dataset: ImageDataset, fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(train, held-out): a fixed seeded permutation puts ``fraction`` of the images aside."""
    n = len(dataset)
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise ConfigError(f"dataset {dataset.name} has {n} images: too few to hold out {fraction:.0%} for evaluation")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return dataset.subset(perm[k:].sort().values), dataset.subset(perm[:k].sort().values)
