"""Datasets: the bundled MNIST digits and Twemoji, and any folder of images.

``load_dataset("mnist" | "twemoji" | PATH)`` gives an :class:`ImageDataset` of uint8 images
(N, C, H, W) with optional labels and captions.
"""
from __future__ import annotations

from pathlib import Path

from torchdiffusion.data.dataset import ImageDataset, resize_images, split_holdout
from torchdiffusion.data.image_folder import load_image_folder
from torchdiffusion.data.latents import LatentDataset
from torchdiffusion.data.mnist import MNIST_CLASS_NAMES, load_mnist
from torchdiffusion.data.twemoji import load_twemoji
from torchdiffusion.errors import ConfigError, DataError

BUNDLED = ("mnist", "twemoji")

__all__ = ["BUNDLED", "ImageDataset", "LatentDataset", "MNIST_CLASS_NAMES", "load_dataset", "load_image_folder",
           "load_mnist", "load_twemoji", "resize_images", "split_holdout"]


def load_dataset(spec: str | Path, image_size: int | None = None, channels: int | None = None,
                 split: str = "all") -> ImageDataset:
    """A bundled dataset by name (``"mnist"``) or an image folder by path."""
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image size must be a whole number ≥ 1, got {image_size!r}")
    if str(spec).lower() == "mnist":
        ds = load_mnist(image_size or 28, split=split)
        if channels not in (None, 1):
            ds.images = ds.images.expand(-1, channels, -1, -1).contiguous()
        return ds
    if str(spec).lower() == "twemoji":
        if channels not in (None, 3):
            raise DataError("twemoji is an RGB dataset: use --channels 3 (or leave it out)")
        return load_twemoji(image_size or 32)
    return load_image_folder(Path(spec), image_size=image_size or 32, channels=channels)
