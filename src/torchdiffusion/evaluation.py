"""Evaluate a trained model: FID, KID, precision/recall against a dataset, and class
accuracy of conditional samples — every number labelled with its feature network and N.

Reference statistics of a dataset are computed once per (dataset, feature network, N) and
cached as ``.npz`` under ``$TORCHDIFFUSION_CACHE`` (default ``~/.cache/torchdiffusion``).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from .datasets import ImageDataset
from .errors import ConfigError
from .metrics import EvaluationError, FeatureStats, compute_stats, fid_from_stats, kid, precision_recall


def cache_dir() -> Path:
    return Path(os.environ.get("TORCHDIFFUSION_CACHE", Path.home() / ".cache" / "torchdiffusion"))


def _reference_subset(dataset: ImageDataset, n: int, seed: int = 0) -> torch.Tensor:
    if len(dataset) < n:
        raise EvaluationError(f"dataset {dataset.name} has {len(dataset)} images, fewer than the requested "
                              f"n={n}; lower --n")
    g = torch.Generator().manual_seed(seed)
    return dataset.images[torch.randperm(len(dataset), generator=g)[:n]]


def reference_features(dataset: ImageDataset, extractor, n: int) -> np.ndarray:
    """Features of a fixed random n-subset of the dataset (cached beside the statistics)."""
    key = f"{dataset.name}-{len(dataset)}-{dataset.channels}x{dataset.image_size}-{extractor.name}-n{n}"
    path = cache_dir() / "reference" / f"{key}.npy"
    if path.is_file():
        try:
            feats = np.load(path, allow_pickle=False)
            if feats.shape == (n, extractor.dim):
                return feats
        except (OSError, ValueError):
            pass  # unreadable cache: recompute
    feats = extractor(_reference_subset(dataset, n))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}.npy")
    np.save(tmp, feats)
    os.replace(tmp, path)
    return feats


def sample_metrics(fake_images: torch.Tensor, dataset: ImageDataset, extractor, kid_subset: int = 1000) -> dict:
    """FID/KID/precision/recall of generated images (in [-1, 1]) against the dataset."""
    n = len(fake_images)
    real = reference_features(dataset, extractor, n)
    fake = extractor(fake_images)
    fid = fid_from_stats(compute_stats(real, extractor.name), compute_stats(fake, extractor.name))
    k = kid(real, fake, subsets=50, subset_size=min(kid_subset, n // 2))
    pr = precision_recall(real, fake, k=3)
    return {"features": extractor.name, "n": n, "fid": fid, "kid": k.mean, "kid_stderr": k.stderr,
            "precision": pr.precision, "recall": pr.recall}


def digit_scores(images: torch.Tensor, labels: torch.Tensor | None = None, confident: float = 0.9) -> dict:
    """The packaged MNIST classifier's view of generated digits: fraction it labels with
    probability ≥ ``confident`` ("recognizable"), and accuracy when labels were requested."""
    from .classifier import classify

    pred, probs = classify(images)
    out = {"recognizable": float((probs.max(dim=1).values >= confident).float().mean())}
    if labels is not None:
        out["class_accuracy"] = float((pred == labels).float().mean())
    return out


def evaluate_pipeline(pipe, dataset: ImageDataset, n: int = 2000, features: str = "mnist", steps: int = 50,
                      sampler: str = "ddim", seed: int = 0, guidance_scale: float = 2.0, batch_size: int = 256,
                      progress: bool = True) -> dict:
    """Generate n images and score them; conditional models are asked for every class/caption
    in turn (class k for image i = i mod K)."""
    from .features import get_feature_extractor

    if n < 2:
        raise ConfigError(f"--n must be ≥ 2, got {n}")
    extractor = get_feature_extractor(features)
    cfg = pipe.config
    if dataset.channels != cfg.unet.in_channels or dataset.image_size != cfg.unet.image_size:
        raise ConfigError(f"dataset {dataset.name} images are {dataset.channels}×{dataset.image_size}px but the "
                          f"model makes {cfg.unet.in_channels}×{cfg.unet.image_size}px")
    labels = prompts = None
    if cfg.conditioning == "class":
        labels = torch.arange(n) % cfg.unet.num_classes
    elif cfg.conditioning == "text":
        if dataset.name != "mnist":
            raise ConfigError("evaluating a text model needs prompts: only MNIST (digit prompts) is supported")
        from .captions import TRAIN_TEMPLATES, _fill

        labels = torch.arange(n) % 10
        prompts = [_fill(TRAIN_TEMPLATES[0], int(c)) for c in labels]
    t0 = time.perf_counter()
    images = pipe.generate(n=n, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, progress=progress,
                           class_labels=None if prompts is not None else labels, prompt=prompts,
                           guidance_scale=guidance_scale if labels is not None else 1.0)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = sample_metrics(images, dataset, extractor)
    result["seconds_sampling"], result["seconds_metrics"] = t_sample, time.perf_counter() - t0
    if dataset.name == "mnist":
        result.update(digit_scores(images, labels))
    return result
