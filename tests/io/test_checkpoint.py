import json

import pytest
import torch

from torchdiffusion.io.checkpoint import verify_checkpoint, write_checkpoint
from torchdiffusion.errors import CheckpointError
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.folders import load_model, save_model
from torchdiffusion.pipeline.pipeline import DiffusionPipeline

from helpers import tiny_model_config


def test_save_load_identical_outputs(tmp_path, tiny_config):
    den = build_denoiser(tiny_config)
    for p in den.network.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_model(tmp_path / "m", den, tiny_config)
    loaded, cfg = load_model(tmp_path / "m")
    assert cfg.to_dict() == tiny_config.to_dict()
    x = torch.randn(3, 1, 8, 8)
    s = torch.tensor([0.1, 1.0, 10.0])
    den.eval()
    assert torch.equal(den(x, s), loaded(x, s))
    a = DiffusionPipeline(den, tiny_config).generate(n=4, steps=5, progress=False)
    b = DiffusionPipeline.from_pretrained(tmp_path / "m", precision="fp32").generate(n=4, steps=5, progress=False)
    assert torch.equal(a, b)


def test_atomic_overwrite_leaves_no_temp(tmp_path):
    write_checkpoint(tmp_path / "c", {"w": {"a": torch.ones(3)}}, {"meta": {"x": 1}}, kind="test")
    write_checkpoint(tmp_path / "c", {"w": {"a": torch.zeros(3)}}, {"meta": {"x": 2}}, kind="test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert verify_checkpoint(tmp_path / "c", "test")["kind"] == "test"
    assert json.loads((tmp_path / "c" / "meta.json").read_text()) == {"x": 2}


def test_corruption_detected(tmp_path, tiny_config):
    save_model(tmp_path / "m", build_denoiser(tiny_config), tiny_config)
    f = tmp_path / "m" / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_model(tmp_path / "m")


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a torchdiffusion model"):
        load_model(tmp_path / "empty")


def test_pickle_renamed_to_safetensors_is_refused(tmp_path, tiny_config):
    import pickle

    save_model(tmp_path / "m", build_denoiser(tiny_config), tiny_config)
    (tmp_path / "m" / "model.safetensors").write_bytes(pickle.dumps({"evil": 1}))
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "m")


def test_checkpoint_from_another_model(tmp_path):
    small, big = tiny_model_config(), tiny_model_config(base_channels=16)
    save_model(tmp_path / "m", build_denoiser(big), big)
    (tmp_path / "m" / "config.json").write_text(json.dumps(small.to_dict()))
    # config and weights disagree: rewrite the manifest so only the shape check can catch it
    from torchdiffusion.io.checkpoint import _sha256

    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    man["files"]["config.json"] = _sha256(tmp_path / "m" / "config.json")
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="another model"):
        load_model(tmp_path / "m")


def test_malformed_config(tmp_path, tiny_config):
    from torchdiffusion.io.checkpoint import _sha256
    from torchdiffusion.errors import ConfigError

    save_model(tmp_path / "m", build_denoiser(tiny_config), tiny_config)
    bad = tiny_config.to_dict()
    bad["unet"]["image_size"] = "big"
    (tmp_path / "m" / "config.json").write_text(json.dumps(bad))
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    man["files"]["config.json"] = _sha256(tmp_path / "m" / "config.json")
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises((ConfigError, CheckpointError)):
        load_model(tmp_path / "m")
