import csv

import pytest
import torch

from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.errors import CheckpointError, ConfigError, TorchDiffusionError
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.training.diffusion import Trainer
from torchdiffusion.training.run import prepare_run
from torchdiffusion.io.runs import checkpoints_of, latest_checkpoint

from helpers import tiny_model_config


@pytest.fixture(scope="module")
def tiny_data():
    ds = load_mnist(image_size=8)
    return ImageDataset(ds.images[:256], ds.labels[:256], ds.class_names, name="mnist-8px")


def train_cfg(out, **kw):
    base = dict(out=str(out), steps=6, batch_size=8, checkpoint_every=3, sample_every=1000, log_every=1,
                sample_n=4, sample_steps=3, final_steps=3, progress=False, precision="fp32", warmup_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def weights(trainer):
    return {k: v.clone() for k, v in trainer.network.state_dict().items()}, \
           {k: v.clone() for k, v in trainer.ema.model.state_dict().items()}


def test_training_reduces_loss_and_writes_outputs(tmp_path, tiny_data):
    t = prepare_run(tiny_model_config(), train_cfg(tmp_path / "run", steps=40, lr=3e-3), dataset=tiny_data)
    t.train()
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(rows) == 40
    assert sum(losses[-10:]) / 10 < sum(losses[:5]) / 5
    assert (tmp_path / "run" / "samples.png").is_file()
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert [s for s, _ in checkpoints_of(tmp_path / "run")] == [40, 39]


def test_resume_after_interruption_is_bit_identical(tmp_path, tiny_data, monkeypatch):
    ref = prepare_run(tiny_model_config(), train_cfg(tmp_path / "a"), dataset=tiny_data)
    ref.train()
    ref_w, ref_ema = weights(ref)

    # run B dies inside step 5: its last checkpoint is step 3
    b = prepare_run(tiny_model_config(), train_cfg(tmp_path / "b"), dataset=tiny_data)
    original = Trainer.train_step

    def dying_step(self):
        if self.step == 4:
            raise KeyboardInterrupt("killed")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        b.train()
    monkeypatch.setattr(Trainer, "train_step", original)
    assert latest_checkpoint(tmp_path / "b").name == "step-0000003"

    resumed = prepare_run(None, train_cfg(tmp_path / "b"), resume=True, dataset=tiny_data)
    assert resumed.step == 3
    resumed.train()
    w, ema = weights(resumed)
    for k in ref_w:
        assert torch.equal(w[k], ref_w[k]), k
        assert torch.equal(ema[k], ref_ema[k]), k
    # the log holds each step once
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "b" / "log.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_corrupt_latest_checkpoint_falls_back(tmp_path, tiny_data):
    t = prepare_run(tiny_model_config(), train_cfg(tmp_path / "r"), dataset=tiny_data)
    t.train()
    newest = checkpoints_of(tmp_path / "r")[0][1]
    (newest / "ema.safetensors").write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path / "r") == checkpoints_of(tmp_path / "r")[1][1]


def test_new_run_refuses_existing_output(tmp_path, tiny_data):
    prepare_run(tiny_model_config(), train_cfg(tmp_path / "r", steps=3), dataset=tiny_data).train()
    with pytest.raises(ConfigError, match="--resume"):
        prepare_run(tiny_model_config(), train_cfg(tmp_path / "r"), dataset=tiny_data)


def test_resume_refuses_checkpoint_of_another_model(tmp_path, tiny_data):
    t = prepare_run(tiny_model_config(), train_cfg(tmp_path / "r", steps=3), dataset=tiny_data)
    t.train()
    other = Trainer(tiny_model_config(base_channels=16), train_cfg(tmp_path / "r"), dataset=tiny_data)
    with pytest.raises(CheckpointError, match="another model"):
        other.load_checkpoint(latest_checkpoint(tmp_path / "r"))


def test_bad_train_configs(tmp_path, tiny_data):
    with pytest.raises(ConfigError, match="--steps"):
        prepare_run(tiny_model_config(), train_cfg(tmp_path / "x", steps=0), dataset=tiny_data)
    with pytest.raises(ConfigError, match="model expects 1×16×16"):
        prepare_run(tiny_model_config(image_size=16, attention_resolutions=(8,)), train_cfg(tmp_path / "x"), dataset=tiny_data)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        if torch.cuda.is_available():
            raise ConfigError("no CUDA GPU (skipped: a GPU exists)")
        prepare_run(tiny_model_config(), train_cfg(tmp_path / "x", device="cuda"), dataset=tiny_data)


def test_nan_loss_stops_with_message(tmp_path, tiny_data, monkeypatch):
    t = prepare_run(tiny_model_config(), train_cfg(tmp_path / "n"), dataset=tiny_data)
    monkeypatch.setattr(Trainer, "train_step", lambda self: (float("nan"), 0.0))
    with pytest.raises(TorchDiffusionError, match="lower --lr"):
        t.train()


def test_condition_dropout_rate_is_honoured(tmp_path, tiny_data):
    cfg = tiny_model_config(num_classes=10)
    cfg.conditioning = "class"
    t = prepare_run(cfg, train_cfg(tmp_path / "c", cond_drop_prob=0.25, batch_size=64), dataset=tiny_data)
    dropped = total = 0
    for _ in range(100):
        _, cond, _, _ = t._batch()
        dropped += int((cond["class_labels"] == 10).sum())
        total += len(cond["class_labels"])
    assert abs(dropped / total - 0.25) < 0.02


def test_class_conditioning_needs_labels(tmp_path, tiny_data):
    cfg = tiny_model_config(num_classes=10)
    cfg.conditioning = "class"
    unlabeled = ImageDataset(tiny_data.images, name="nolabels")
    with pytest.raises(ConfigError, match="needs class labels"):
        prepare_run(cfg, train_cfg(tmp_path / "c"), dataset=unlabeled)
