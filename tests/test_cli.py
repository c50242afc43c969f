import subprocess
import sys

import pytest
from PIL import Image

from torchdiffusion.cli import main

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
    from torchdiffusion.samplers import DEFAULT_SAMPLER, _REGISTRY_ROWS, resolve_sampler

    assert main(["samplers"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(_REGISTRY_ROWS)
    for (name, *_), line in zip(_REGISTRY_ROWS, lines):
        assert line.startswith(name + " ") and "diffusers:" in line
        assert resolve_sampler(name).grid in line
    assert any(line.startswith(DEFAULT_SAMPLER + " ") and line.endswith("(default)") for line in lines)
