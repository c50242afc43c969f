import pytest
import torch

from torchdiffusion.datasets import ImageDataset, load_mnist
from torchdiffusion.errors import ConfigError
from torchdiffusion.evaluation import evaluate_pipeline, reference_features
from torchdiffusion.features import get_feature_extractor
from torchdiffusion.metrics import EvaluationError
from torchdiffusion.model import build_denoiser
from torchdiffusion.pipeline import DiffusionPipeline

from conftest import tiny_model_config


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHDIFFUSION_CACHE", str(tmp_path / "cache"))


def test_evaluate_class_model_reports_every_metric():
    cfg = tiny_model_config(num_classes=10, image_size=28, attention_resolutions=(14,))
    cfg.conditioning = "class"
    pipe = DiffusionPipeline(build_denoiser(cfg).eval(), cfg)
    ds = load_mnist(split="test")
    r = evaluate_pipeline(pipe, ds, n=40, steps=2, progress=False)
    for key in ("fid", "kid", "kid_stderr", "precision", "recall", "recognizable", "class_accuracy"):
        assert key in r
    assert r["features"] == "mnist-classifier" and r["n"] == 40
    assert r["fid"] > 10  # an untrained model is far from MNIST
    assert r["class_accuracy"] < 0.5


def test_reference_features_are_cached():
    ds = load_mnist(split="test")
    ex = get_feature_extractor("mnist")
    a = reference_features(ds, ex, 50)
    b = reference_features(ds, ex, 50)
    assert a.shape == (50, ex.dim) and (a == b).all()


def test_too_few_images_and_wrong_size():
    ds = load_mnist(split="test")
    small = ImageDataset(ds.images[:10], name="small")
    with pytest.raises(EvaluationError, match="fewer than the requested n=20"):
        reference_features(small, get_feature_extractor("mnist"), 20)
    cfg = tiny_model_config()
    pipe = DiffusionPipeline(build_denoiser(cfg), cfg)
    with pytest.raises(ConfigError, match="the model makes 1×8px"):
        evaluate_pipeline(pipe, ds, n=4, steps=1, progress=False)
