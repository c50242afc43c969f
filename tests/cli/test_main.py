import subprocess
import sys

import pytest
import torch
from PIL import Image

from torchdiffusion.cli.main import main

TINY = ["--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "8",
        "--sample-n", "4", "--sample-steps", "2", "--final-steps", "2", "--no-progress", "--precision", "fp32"]


def test_train_then_sample(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "3", *TINY]) == 0
    assert (out / "samples.png").is_file() and (out / "log.csv").is_file()
    grid = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(out), "--n", "6", "--steps", "3", "--out", str(grid),
                 "--individual", str(tmp_path / "each"), "--no-progress"]) == 0
    assert Image.open(grid).size[0] > 8
    assert sorted(p.name for p in (tmp_path / "each").iterdir())[:2] == ["00000.png", "00001.png"]
    # resume with a larger budget continues from step 3
    assert main(["train", "--out", str(out), "--resume", "--steps", "5", "--no-progress"]) == 0
    assert "trained 5 steps" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["sample", "--checkpoint", "/nonexistent/folder"], "no such file or folder"),
    (["train", "--data", "/nonexistent/images", "--steps", "1"], "/nonexistent/images"),
    (["train", "--attention-resolutions", "5", "--steps", "1"], "attention resolution 5 is never reached"),
    (["train", "--steps", "0"], "--steps must be ≥ 1"),
])
def test_errors_are_one_line(argv, message, tmp_path, capsys):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_unknown_sampler(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "1", *TINY]) == 0
    assert main(["sample", "--checkpoint", str(out), "--sampler", "magic", "--no-progress"]) == 2
    assert "ddim" in capsys.readouterr().err


def test_help_lists_every_command():
    text = subprocess.run([sys.executable, "-m", "torchdiffusion.cli", "--help"], capture_output=True, text=True).stdout
    for cmd in ("train", "sample"):
        assert cmd in text
    text = subprocess.run([sys.executable, "-m", "torchdiffusion.cli", "train", "--help"], capture_output=True,
                          text=True).stdout
    for flag in ("--data", "--minutes", "--steps", "--resume", "--schedule", "--parameterization", "--weighting"):
        assert flag in text


def test_samplers_command_lists_every_registered_name(capsys):
    from torchdiffusion.sampling.registry import DEFAULT_SAMPLER, _REGISTRY_ROWS, resolve_sampler

    assert main(["samplers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(_REGISTRY_ROWS)
    for (name, *_), line in zip(_REGISTRY_ROWS, lines):
        assert line.startswith(name + " ") and "diffusers:" in line
        assert resolve_sampler(name).grid in line
    assert any(line.startswith(DEFAULT_SAMPLER + " ") and line.endswith("(default)") for line in lines)


def test_condition_auto_uses_labels_when_the_data_has_them(tmp_path):
    """The default ``--condition auto``: MNIST (labelled) → class model whose plain ``sample``
    draws every class in rows; a folder without class sub-folders, or a --task run → unconditional."""
    import json

    import numpy as np

    from torchdiffusion import DiffusionPipeline

    out = tmp_path / "digits"
    assert main(["train", "--out", str(out), "--steps", "1", *TINY]) == 0
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["conditioning"] == "class" and cfg["unet"]["num_classes"] == 10
    grid = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(out), "--n", "20", "--steps", "2", "--scale", "1",
                 "--out", str(grid), "--no-progress"]) == 0
    assert Image.open(grid).size[0] > Image.open(grid).size[1]  # 10 classes per row, 2 rows
    pipe = DiffusionPipeline.from_pretrained(out)
    every = pipe.generate(n=12, steps=2, seed=3, progress=False, guidance_scale=2.0)
    cycled = pipe.generate(n=12, steps=2, seed=3, progress=False, guidance_scale=2.0,
                           class_labels=[i % 10 for i in range(12)])
    assert torch.equal(every, cycled)

    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(flat / f"{i}.png")
    assert main(["train", "--data", str(flat), "--out", str(tmp_path / "f"), "--steps", "1", *TINY]) == 0
    assert json.loads((tmp_path / "f" / "model" / "config.json").read_text())["conditioning"] == "none"
    assert main(["train", "--out", str(tmp_path / "t"), "--task", "inpaint", "--steps", "1", *TINY]) == 0
    assert json.loads((tmp_path / "t" / "model" / "config.json").read_text())["conditioning"] == "none"
