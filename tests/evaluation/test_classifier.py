"""The packaged MNIST classifier and the fast MNIST feature network."""
import numpy as np
import pytest
import torch

from torchdiffusion.evaluation.classifier import (ClassifierConfig, MnistClassifier, classify, load_classifier,
                                       load_mnist_classifier, packaged_weights_path, save_classifier,
                                       train_classifier)
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.errors import CheckpointError, ConfigError
from torchdiffusion.evaluation.features import MnistFeatures, extract_features, get_feature_extractor
from torchdiffusion.evaluation.metrics import fid


@pytest.fixture(scope="module")
def test_split():
    return load_mnist(split="test")


@pytest.fixture(scope="module")
def clf():
    return load_mnist_classifier()


def test_packaged_weights_small():
    path = packaged_weights_path()
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert path.stat().st_size < 2_000_000


def test_packaged_classifier_accuracy(clf, test_split):
    # the held-out split (last 10% of each class); the classifier was trained on 'train' only
    x = test_split.batch(torch.arange(len(test_split)))
    labels, probs = classify(x, clf)
    acc = float((labels == test_split.labels).float().mean())
    assert acc >= 0.97, acc
    assert probs.shape == (len(test_split), 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(test_split)))
    # uint8 input is accepted and means the same thing
    labels_u8, _ = clf.classify(test_split.images[:50])
    assert torch.equal(labels_u8, labels[:50])


def test_classify_other_shapes(clf, test_split):
    x = test_split.batch(torch.arange(40))
    ref, _ = clf.classify(x)
    rgb32 = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear").expand(-1, 3, -1, -1)
    pred, _ = clf.classify(rgb32)
    assert float((pred == ref).float().mean()) >= 0.9
    with pytest.raises(ConfigError, match="channels"):
        clf.classify(torch.zeros(2, 2, 28, 28))
    with pytest.raises(ConfigError, match="shape"):
        clf.classify(torch.zeros(2, 28))


def test_mnist_features(test_split):
    ext = get_feature_extractor("mnist", batch_size=64)
    assert isinstance(ext, MnistFeatures) and (ext.name, ext.dim) == ("mnist-classifier", 128)
    x = test_split.batch(torch.arange(150))
    f = ext(x)
    assert f.shape == (150, 128) and f.dtype == np.float64 and np.isfinite(f).all()
    ext_big = MnistFeatures(batch_size=1000, classifier=ext.model)
    np.testing.assert_allclose(ext_big(x), f, rtol=1e-4, atol=1e-4)  # batching does not matter (eval mode)
    np.testing.assert_allclose(extract_features(ext, test_split.subset(torch.arange(150))), f, rtol=1e-4, atol=1e-4)
    assert ext.stats(x).feature == "mnist-classifier"


def test_mnist_fid_orders_distributions(test_split):
    ext = MnistFeatures()
    train = load_mnist(split="train")
    g = torch.Generator().manual_seed(0)
    a = ext(train.images[torch.randperm(len(train), generator=g)[:500]])
    b = ext(test_split.images[:500])
    noise = ext(torch.rand(500, 1, 28, 28, generator=g) * 2 - 1)
    assert fid(a, b) < 0.1 * fid(a, noise)


def test_train_save_load_roundtrip(tmp_path, test_split):
    small = test_split.subset(torch.arange(64))
    model, info = train_classifier(small, steps=3, seed=0, batch_size=16, log=None,
                                   config=ClassifierConfig(channels=(4, 8, 8), feature_dim=8))
    assert info["steps"] == 3 and not model.training
    path = save_classifier(model, tmp_path / "c.safetensors", info)
    loaded = load_classifier(path)
    x = small.batch(torch.arange(8))
    torch.testing.assert_close(loaded(loaded.prepare(x)), model(model.prepare(x)))
    assert loaded.meta["training"]["steps"] == 3


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_classifier(tmp_path / "none.safetensors")
    model = MnistClassifier(ClassifierConfig(channels=(4, 8, 8), feature_dim=8))
    path = save_classifier(model, tmp_path / "c.safetensors")
    path.with_suffix(".json").write_text('{"config": {"channels": [4, 8, 16], "feature_dim": 8}}')
    with pytest.raises(CheckpointError, match="do not match"):
        load_classifier(path)
    with pytest.raises(ConfigError, match="needs labels"):
        train_classifier(ImageDataset(torch.zeros(4, 1, 28, 28, dtype=torch.uint8)), steps=1, log=None)
