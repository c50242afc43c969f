"""Checkpoints of every wrong kind are refused with a CheckpointError/ConfigError naming the
file, and nothing is ever unpickled: a pickle whose ``__reduce__`` would create a marker file,
renamed to ``model.safetensors`` (with a manifest whose checksum matches, as an attacker who
controls the whole folder would write), leaves no marker."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchdiffusion.io.checkpoint import FORMAT_VERSION, _sha256
from torchdiffusion.cli.main import main
from torchdiffusion.errors import CheckpointError, ConfigError, TorchDiffusionError
from torchdiffusion.denoiser.model import build_denoiser
from torchdiffusion.pipeline.folders import load_model, save_model

from helpers import tiny_model_config

pytestmark = pytest.mark.faults


class _Marker:
    """Unpickling this creates the file ``path``: proof that something was unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def rehash(folder: Path) -> None:
    """Rewrite the manifest's checksums so only the content checks can refuse the folder."""
    man = json.loads((folder / "manifest.json").read_text())
    man["files"] = {n: _sha256(folder / n) for n in man["files"]}
    (folder / "manifest.json").write_text(json.dumps(man))


@pytest.fixture
def model_dir(tmp_path):
    cfg = tiny_model_config()
    return save_model(tmp_path / "m", build_denoiser(cfg), cfg)


def refused(folder, capsys, *expected) -> str:
    with pytest.raises((CheckpointError, ConfigError)) as err:
        load_model(folder)
    assert str(folder) in str(err.value) or any(str(folder) in str(a) for a in err.value.args)
    assert main(["sample", "--checkpoint", str(folder), "--n", "1", "--steps", "1", "--no-progress",
                 "--out", str(folder.parent / "x.png")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("torchdiffusion sample: error: "), err_lines
    for e in expected:
        assert e in err_lines[0], (e, err_lines[0])
    return err_lines[0]


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_pickle_renamed_to_safetensors_is_never_unpickled(model_dir, tmp_path, capsys, how):
    marker = tmp_path / "UNPICKLED"
    payload = {"weight": _Marker(marker)}
    target = model_dir / "model.safetensors"
    if how == "pickle":
        target.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, target)
    pickle.loads(pickle.dumps(_Marker(tmp_path / "control")))  # the payload works when unpickled ...
    assert (tmp_path / "control").exists()
    rehash(model_dir)
    refused(model_dir, capsys, "model.safetensors", "not a readable safetensors file")
    assert not marker.exists()  # ... and was never unpickled


def test_checkpoint_of_another_size(model_dir, tmp_path, capsys):
    big = tiny_model_config(base_channels=16)
    other = save_model(tmp_path / "big", build_denoiser(big), big)
    (model_dir / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    rehash(model_dir)
    refused(model_dir, capsys, "weights are from another model", "of another shape")


def test_weights_of_another_architecture(model_dir, capsys):
    from torchdiffusion.evaluation.classifier import packaged_weights_path

    (model_dir / "model.safetensors").write_bytes(Path(packaged_weights_path()).read_bytes())
    rehash(model_dir)
    refused(model_dir, capsys, "weights are from another model", "missing")


def test_diffusers_style_folder_without_manifest(tmp_path, capsys):
    folder = tmp_path / "diffusers"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 32}))
    from safetensors.torch import save_file

    save_file({"conv_in.weight": torch.zeros(4, 3, 3, 3)}, str(folder / "model.safetensors"))
    refused(folder, capsys, "not a torchdiffusion checkpoint (no manifest.json)")


@pytest.mark.parametrize("manifest,expected", [
    ("{not json", "manifest is not valid JSON"),
    ("[1, 2]", "not a torchdiffusion manifest"),
    (json.dumps({"format": "torchdiffusion", "format_version": FORMAT_VERSION + 1, "kind": "model", "files": {}}),
     "upgrade torchdiffusion"),
    (json.dumps({"format": "torchdiffusion", "format_version": "1", "kind": "model", "files": {}}),
     "invalid checkpoint format version"),
    (json.dumps({"format": "torchdiffusion", "format_version": 1, "kind": "model", "files": ["model.safetensors"]}),
     "lists no files"),
    (json.dumps({"format": "torchdiffusion", "format_version": 1, "kind": "model",
                 "files": {"../../etc/passwd": "0" * 64}}), "points outside"),
    (json.dumps({"format": "torchdiffusion", "format_version": 1, "kind": "model", "files": {}}), "lists no files"),
    (json.dumps({"format": "torchdiffusion", "format_version": 1, "kind": "model",
                 "files": {"model.safetensors": 5}}), "invalid sha256"),
])
def test_broken_manifests(model_dir, capsys, manifest, expected):
    (model_dir / "manifest.json").write_text(manifest)
    refused(model_dir, capsys, expected)


def test_missing_and_truncated_files(model_dir, capsys):
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(data[:100])
    refused(model_dir, capsys, "checksum mismatch")
    (model_dir / "model.safetensors").unlink()
    refused(model_dir, capsys, "expected model.safetensors + config.json")


WRONG_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([10**12, 2**63]),
                         st.floats(allow_nan=True), st.text(max_size=5), st.lists(st.integers(-2, 4), max_size=3),
                         st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_config_json_with_wrong_types(model_dir, data):
    """Any field of config.json replaced by a value of a wrong type (or removed): the model
    loads, or our own error is raised; never a TypeError/KeyError/... from deep inside."""
    cfg = json.loads((model_dir / "config.json").read_text())
    original = json.dumps(cfg)
    paths = sorted(_paths(cfg))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = cfg
        for k in path[:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and path[-1] in node:
            if data.draw(st.booleans()) and len(path) > 0:
                node[path[-1]] = data.draw(WRONG_VALUES)
            else:
                del node[path[-1]]
    (model_dir / "config.json").write_text(json.dumps(cfg))
    rehash(model_dir)
    try:
        load_model(model_dir)
    except TorchDiffusionError as exc:
        assert str(exc)
    finally:
        (model_dir / "config.json").write_text(original)
        rehash(model_dir)
