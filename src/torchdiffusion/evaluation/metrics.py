"""Sample-quality metrics on feature vectors: FID, KID, and k-NN precision/recall.

All functions take features as (N, D) numpy arrays or torch tensors (any float dtype) and
compute in float64. Features come from a :class:`torchdiffusion.features.FeatureExtractor`
(Inception-v3 for numbers comparable with the literature, or the fast MNIST classifier's
penultimate layer for digit models); scores from different feature networks or different
sample counts are not comparable, so :class:`FeatureStats` records both.

* :func:`frechet_distance` — FID (Heusel et al. 2017) from two Gaussians.
* :func:`kid` — Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with the
  cubic polynomial kernel, mean and standard error over random subsets.
* :func:`precision_recall` — improved precision and recall (Kynkäänniemi et al. 2019) with
  k-nearest-neighbour hyperspheres.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torchdiffusion.errors import TorchDiffusionError

STATS_FORMAT = "torchdiffusion-feature-stats-v1"


class EvaluationError(TorchDiffusionError, ValueError):
    """Features or statistics that cannot be compared (dimension mismatch, too few samples,
    different feature networks, unreadable statistics file)."""


# -- helpers ----------------------------------------------------------------------------------
def _as_f64(x, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise EvaluationError(f"{what} contains NaN or infinite values")
    return a


def _features(x, what: str, min_n: int = 1) -> np.ndarray:
    a = _as_f64(x, what)
    if a.ndim != 2:
        raise EvaluationError(f"{what} must be a 2-D (N, D) array of feature vectors, got shape {a.shape}")
    if a.shape[0] < min_n:
        raise EvaluationError(f"{what} has {a.shape[0]} samples; at least {min_n} are needed")
    return a


def _check_same_dim(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise EvaluationError(f"feature dimensions differ: {names[0]} has {a.shape[-1]}, {names[1]} has "
                              f"{b.shape[-1]} (were they made with the same feature network?)")


def _sqrtm_psd(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


# -- FID --------------------------------------------------------------------------------------
def trace_sqrt_product(cov1, cov2) -> float:
    """Tr((C1 C2)^{1/2}) for covariance matrices, computed as the sum of the square roots of
    the eigenvalues of the symmetric PSD matrix C1^{1/2} C2 C1^{1/2} (which has the same
    spectrum as C1 C2), in float64. Tiny negative eigenvalues from rounding are clipped to 0."""
    c1, c2 = _as_f64(cov1, "cov1"), _as_f64(cov2, "cov2")
    s1 = _sqrtm_psd(c1)
    m = s1 @ c2 @ s1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2):
    ‖μ1-μ2‖² + Tr(C1 + C2 - 2 (C1 C2)^{1/2})  (Heusel et al. 2017).

    Agrees with the ``scipy.linalg.sqrtm`` formula of pytorch-fid where that one is accurate,
    and stays accurate for singular covariances (fewer samples than dimensions)."""
    mu1, mu2 = _as_f64(mu1, "mu1").ravel(), _as_f64(mu2, "mu2").ravel()
    c1, c2 = _as_f64(cov1, "cov1"), _as_f64(cov2, "cov2")
    d = mu1.shape[0]
    if mu2.shape[0] != d:
        raise EvaluationError(f"feature dimensions differ: mu1 has {d}, mu2 has {mu2.shape[0]}")
    for name, c in (("cov1", c1), ("cov2", c2)):
        if c.shape != (d, d):
            raise EvaluationError(f"{name} has shape {c.shape}; expected ({d}, {d}) to match the means")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * trace_sqrt_product(c1, c2))
    return max(value, 0.0)


@dataclass
class FeatureStats:
    """Mean and covariance of a set of feature vectors: what FID needs from a reference set.

    ``feature`` names the feature network (e.g. ``"mnist-classifier"``,
    ``"inception-v3-tf"``) so statistics from different networks are never compared; ``n``
    is the number of samples (FID is biased upwards for small ``n``; compare equal ``n``)."""

    mean: np.ndarray
    cov: np.ndarray
    n: int
    feature: str = "unknown"

    def __post_init__(self) -> None:
        self.mean = _as_f64(self.mean, "mean").ravel()
        self.cov = _as_f64(self.cov, "cov")
        d = self.mean.shape[0]
        if self.cov.shape != (d, d):
            raise EvaluationError(f"FeatureStats: cov has shape {self.cov.shape}, expected ({d}, {d})")
        self.n = int(self.n)
        self.feature = str(self.feature)

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` (plain arrays, no pickle)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format=np.array(STATS_FORMAT), mean=self.mean, cov=self.cov,
                 n=np.array(self.n, dtype=np.int64), feature=np.array(self.feature))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        """Read statistics written by :meth:`save` (never unpickles)."""
        path = Path(path)
        if not path.is_file():
            raise EvaluationError(f"feature statistics file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z.files or str(z["format"]) != STATS_FORMAT:
                    raise EvaluationError(f"{path} is not a torchdiffusion feature statistics file "
                                          f"(expected format {STATS_FORMAT!r})")
                return cls(mean=z["mean"], cov=z["cov"], n=int(z["n"]), feature=str(z["feature"]))
        except EvaluationError:
            raise
        except (OSError, ValueError, KeyError) as e:
            raise EvaluationError(f"cannot read feature statistics {path}: {e}") from e

    def frechet_distance(self, other: "FeatureStats") -> float:
        """FID between two sets of statistics from the same feature network."""
        return fid_from_stats(self, other)


def compute_stats(features, feature: str = "unknown") -> FeatureStats:
    """Mean and (unbiased, ddof=1 like pytorch-fid's ``np.cov``) covariance of (N, D)
    features."""
    f = _features(features, "features", min_n=2)
    return FeatureStats(mean=f.mean(axis=0), cov=np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1]),
                        n=f.shape[0], feature=feature)


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two :class:`FeatureStats`; refuses stats from different feature networks."""
    if a.feature != b.feature:
        raise EvaluationError(f"cannot compare statistics of feature network {a.feature!r} with {b.feature!r}")
    if a.dim != b.dim:
        raise EvaluationError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def fid(features1, features2) -> float:
    """FID between two sets of feature vectors (N1, D) and (N2, D)."""
    f1 = _features(features1, "features1", min_n=2)
    f2 = _features(features2, "features2", min_n=2)
    _check_same_dim(f1, f2, ("features1", "features2"))
    return fid_from_stats(compute_stats(f1), compute_stats(f2))


# -- KID --------------------------------------------------------------------------------------
@dataclass
class KIDResult:
    """KID estimate: ``mean`` over subsets of the unbiased MMD², its standard deviation
    ``std`` across subsets and the standard error ``stderr = std / sqrt(subsets)``."""

    mean: float
    std: float
    stderr: float
    subsets: int
    subset_size: int

    def __float__(self) -> float:
        return self.mean

    def __str__(self) -> str:
        return f"{self.mean:.5f} ± {self.stderr:.5f}"


def _poly_kernel_sums(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD² with k(a, b) = (aᵀb / d + 1)³ for batches of equal-size subsets
    x, y (S, m, d) → (S,)."""
    _, m, d = x.shape
    kxx = (x @ x.transpose(1, 2) / d + 1) ** 3
    kyy = (y @ y.transpose(1, 2) / d + 1) ** 3
    kxy = (x @ y.transpose(1, 2) / d + 1) ** 3
    sxx = (kxx.sum((1, 2)) - kxx.diagonal(dim1=1, dim2=2).sum(1)) / (m * (m - 1))
    syy = (kyy.sum((1, 2)) - kyy.diagonal(dim1=1, dim2=2).sum(1)) / (m * (m - 1))
    return sxx + syy - 2 * kxy.sum((1, 2)) / (m * m)


def kid(feats1, feats2, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KIDResult:
    """Kernel Inception Distance (Bińkowski et al. 2018) between two feature sets.

    For each of ``subsets`` rounds, ``subset_size`` vectors are drawn without replacement from
    each set and the unbiased MMD² with the cubic polynomial kernel
    k(x, y) = (xᵀy / d + 1)³ is computed (float64). KID is unbiased: its expectation is 0 for
    two samples of the same distribution, so small negative values are normal. Returns mean,
    std and standard error over the subsets.
    """
    f1 = _features(feats1, "feats1", min_n=2)
    f2 = _features(feats2, "feats2", min_n=2)
    _check_same_dim(f1, f2, ("feats1", "feats2"))
    if subsets < 1:
        raise EvaluationError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise EvaluationError(f"subset_size must be >= 2, got {subset_size}")
    n1, n2 = len(f1), len(f2)
    if subset_size > min(n1, n2):
        raise EvaluationError(f"KID subset_size={subset_size} but feats1 has {n1} and feats2 has {n2} "
                              f"samples; pass subset_size <= {min(n1, n2)} or use more samples")
    rng = np.random.default_rng(seed)
    t1, t2 = torch.from_numpy(f1), torch.from_numpy(f2)
    idx = [(rng.choice(n1, subset_size, replace=False), rng.choice(n2, subset_size, replace=False))
           for _ in range(subsets)]
    values = np.empty(subsets)
    chunk = max(1, 2 ** 23 // subset_size ** 2)  # subsets per batched call: ≤ 64 MB per kernel matrix
    for s in range(0, subsets, chunk):
        a = torch.from_numpy(np.stack([i for i, _ in idx[s:s + chunk]]))
        b = torch.from_numpy(np.stack([j for _, j in idx[s:s + chunk]]))
        values[s:s + chunk] = _poly_kernel_sums(t1[a], t2[b]).numpy()
    std = float(values.std(ddof=1)) if subsets > 1 else float("nan")
    return KIDResult(mean=float(values.mean()), std=std, stderr=std / np.sqrt(subsets),
                     subsets=subsets, subset_size=subset_size)


# -- precision / recall -----------------------------------------------------------------------
@dataclass
class PrecisionRecall:
    """``precision``: fraction of fake samples inside the real manifold; ``recall``: fraction
    of real samples inside the fake manifold (Kynkäänniemi et al. 2019)."""

    precision: float
    recall: float
    k: int

    def __iter__(self):
        return iter((self.precision, self.recall))


def _pairwise_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2 * a @ b.T
    return d.clamp_(min=0)


def knn_radii(feats: torch.Tensor, k: int, batch_size: int = 1024) -> torch.Tensor:
    """Squared distance from each vector to its k-th nearest neighbour in the same set
    (itself excluded)."""
    out = torch.empty(len(feats), dtype=feats.dtype)
    for s in range(0, len(feats), batch_size):
        d = _pairwise_sq(feats[s:s + batch_size], feats)
        out[s:s + batch_size] = d.kthvalue(k + 1, dim=1).values  # k+1: the point itself is at 0
    return out


def _coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    inside = torch.zeros(len(queries), dtype=torch.bool)
    for s in range(0, len(queries), batch_size):
        d = _pairwise_sq(queries[s:s + batch_size], support)
        inside[s:s + batch_size] = (d <= radii[None]).any(dim=1)
    return float(inside.double().mean())


def precision_recall(real, fake, k: int = 3, batch_size: int = 1024) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its vectors with radius the distance to
    the k-th nearest neighbour in the same set. Precision is the fraction of ``fake`` vectors in
    the real manifold, recall the fraction of ``real`` vectors in the fake manifold. Distances
    are computed in float64 in row batches of ``batch_size`` (memory ~ batch_size × N)."""
    r = _features(real, "real")
    f = _features(fake, "fake")
    _check_same_dim(r, f, ("real", "fake"))
    if k < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    for name, a in (("real", r), ("fake", f)):
        if len(a) <= k:
            raise EvaluationError(f"precision/recall with k={k} needs more than {k} {name} samples, got {len(a)}")
    tr, tf = torch.from_numpy(r), torch.from_numpy(f)
    rr, rf = knn_radii(tr, k, batch_size), knn_radii(tf, k, batch_size)
    return PrecisionRecall(precision=_coverage(tf, tr, rr, batch_size),
                           recall=_coverage(tr, tf, rf, batch_size), k=k)


__all__ = ["EvaluationError", "FeatureStats", "KIDResult", "PrecisionRecall", "compute_stats", "fid",
           "fid_from_stats", "frechet_distance", "kid", "knn_radii", "precision_recall", "trace_sqrt_product"]


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB of images in [-1, 1], measured on the [0, 1] scale:
    10·log10(1/MSE)."""
    mse = (((x.float() - y.float()) / 2) ** 2).mean(dim=tuple(range(1, x.ndim)))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-12))


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image SSIM (Wang et al. 2004, eq. 13) of images in [-1, 1] on the [0, 1] scale:
    local means, variances and covariance under an 11×11 Gaussian window (σ = 1.5, 'valid'
    positions only), C1 = (0.01)², C2 = (0.03)², averaged over positions and channels."""
    x = (x.float() + 1) / 2
    y = (y.float() + 1) / 2
    c = x.shape[1]
    window = min(window, x.shape[-1], x.shape[-2])
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx**2
    syy = blur(y * y) - my**2
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3))
