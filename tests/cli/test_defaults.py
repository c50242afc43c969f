"""One default per setting, one meaning of guidance, help text on every option, the README's
documented defaults equal to the parser's, paths and names checked before any work."""
import argparse
import math
import re
from pathlib import Path

import pytest
import torch

from helpers import make_models
from torchdiffusion.cli.main import build_parser, main
from torchdiffusion.denoiser.guidance import check_guidance
from torchdiffusion.errors import ConfigError
from torchdiffusion.pipeline import DiffusionPipeline
from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS, resolve_sampler
from torchdiffusion.tasks import inpaint, interpolate_seeds

README = Path(__file__).resolve().parents[2] / "README.md"
TINY = ["--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "8",
        "--sample-n", "4", "--sample-steps", "2", "--final-steps", "2", "--no-progress", "--precision", "fp32"]


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _default(command: str, dest: str):
    return _subparsers()[command].get_default(dest)


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_has_help_and_shows_its_default_once(command):
    p = _subparsers()[command]
    for action in p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help and action.help.strip(), f"{command} {action.option_strings[0]} has no help text"
    text = p.format_help()
    for line in re.split(r"\n  (?=-)", text):
        assert line.count("(default:") + line.lower().count("default:") <= 2 and line.count("(default") <= 1, line


def test_guidance_has_one_default_everywhere():
    for command in ("sample", "eval", "denoise", "inpaint", "upscale", "img2img", "interpolate"):
        assert _default(command, "guidance_scale") == DEFAULT_GUIDANCE, command
    import inspect

    from torchdiffusion import tasks
    for fn in (tasks.denoise, tasks.inpaint, tasks.upscale, tasks.img2img, tasks.interpolate_seeds,
               tasks.interpolate_conditions, DiffusionPipeline.generate, DiffusionPipeline.sample):
        assert inspect.signature(fn).parameters["guidance_scale"].default == DEFAULT_GUIDANCE, fn.__name__


@pytest.mark.parametrize("bad", [-3, -0.1, float("nan"), float("inf"), "two", None, True, 31])
def test_bad_guidance_is_refused_with_one_message(bad, tmp_path, capsys):
    with pytest.raises(ConfigError, match="guidance scale must be a number from 0 to 30"):
        check_guidance(bad)
    root = make_models(tmp_path)
    pipe = DiffusionPipeline.from_pretrained(root / "tiny-class")
    with pytest.raises(ConfigError, match="must be a number from 0 to 30"):
        pipe.generate(n=1, steps=1, guidance_scale=bad, progress=False)
    with pytest.raises(ConfigError, match="must be a number from 0 to 30"):
        inpaint(pipe, torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), steps=1, class_labels=0, guidance_scale=bad)
    if isinstance(bad, (int, float)) and not isinstance(bad, bool):
        for argv in (["sample", "--checkpoint", str(root / "tiny-class"), "--out", str(tmp_path / "s.png")],
                     ["interpolate", "--checkpoint", str(root / "tiny-class"), "--seeds", "0", "1"]):
            assert main([*argv, "--guidance-scale", str(bad), "--steps", "1"]) == 2
            err = capsys.readouterr().err
            assert "--guidance-scale must be a number from 0 to 30" in err and len(err.strip().splitlines()) == 1


def test_ui_refuses_bad_guidance_with_the_same_message(tmp_path):
    pytest.importorskip("gradio")
    from torchdiffusion.ui.backend import Backend, GenerateRequest
    from torchdiffusion.ui.models import ModelLibrary

    root = make_models(tmp_path)
    backend = Backend(ModelLibrary(root, root / "tiny-class"), outputs=tmp_path / "out")
    for bad in (-3, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="guidance scale must be a number from 0 to 30"):
            backend.generate(GenerateRequest(model="tiny-class", steps=1, batch_size=1, guidance_scale=bad))


def test_readme_defaults_match_the_parser():
    text = README.read_text()
    documented = [  # (README phrase with the value, command, dest)
        (r"batch (\d+), AdamW", "train", "batch_size"),
        (r"AdamW \(lr ([\d.e-]+)", "train", "lr"),
        (r"lr [\d.e-]+, (\d+) warm-up", "train", "warmup_steps"),
        (r"gradient clipping ([\d.]+)", "train", "grad_clip"),
        (r"(\d+)-step cosine schedule", "train", "timesteps"),
        (r"sample grids every (\d+) steps", "train", "sample_every"),
        (r"every ([\d,]+) steps and at the end", "train", "eval_every"),
        (r"\(MNIST-classifier features, (\d+) samples\)", "train", "eval_n"),
        (r"label dropped\s+(\d+) % of the time", "train", "cond_drop_prob"),
    ]
    for pattern, command, dest in documented:
        m = re.search(pattern, text)
        assert m, f"README no longer says {pattern!r}"
        value = float(m.group(1).replace(",", ""))
        default = _default(command, dest)
        if dest == "eval_every":
            from torchdiffusion.evaluation.evaluate import DEFAULT_EVAL_EVERY
            default = DEFAULT_EVAL_EVERY
        if dest == "cond_drop_prob":
            value /= 100
        assert math.isclose(value, float(default)), f"README: {dest} = {value}, parser: {default}"
    m = re.search(r"a column per digit \((\w+), (\d+) steps, guidance (\d+)", text)
    assert m and resolve_sampler(m.group(1)).name == DEFAULT_SAMPLER
    assert int(m.group(2)) == _default("train", "final_steps") == DEFAULT_STEPS
    assert float(m.group(3)) == DEFAULT_GUIDANCE
    assert "ADM-style U-Net" in text and _default("train", "base_channels") == 32
    m = re.search(r"for (\d+) minutes of wall time", text)
    from torchdiffusion.training.config import DEFAULT_MINUTES
    assert m and float(m.group(1)) == DEFAULT_MINUTES


@pytest.mark.parametrize("name,expected", [("dpm++ sde", "DPM++ 2M SDE"), ("DPM++ 2M Karras", "DPM++ 2M Karras"),
                                           ("uni_pc", "UniPC bh1"), ("k_euler_a", "Euler a"),
                                           ("sample_euler", "Euler"), ("euler_ancestral", "Euler a")])
def test_familiar_sampler_spellings_are_aliases(name, expected):
    assert resolve_sampler(name).name == expected


def test_samplers_of_other_tools_are_refused_naming_the_nearest():
    with pytest.raises(ConfigError, match="not in torchdiffusion; the nearest we have is 'Euler a'"):
        resolve_sampler("DPM2 a")


@pytest.mark.parametrize("command", ["sample", "inpaint", "interpolate"])
def test_output_path_inside_a_file_fails_before_any_work(command, tmp_path, capsys, monkeypatch):
    root = make_models(tmp_path)
    blocker = tmp_path / "file.png"
    blocker.write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"")

    def no_work(*a, **k):
        raise AssertionError("the model was loaded before the output path was checked")
    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(no_work))
    argv = {"sample": ["sample"], "inpaint": ["inpaint", "--image", str(tmp_path / "a.png"), "--mask",
                                             str(tmp_path / "a.png")],
            "interpolate": ["interpolate", "--seeds", "0", "1"]}[command]
    assert main([*argv, "--checkpoint", str(root / "tiny"), "--out", str(blocker / "out.png")]) == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file, not a folder" in err and len(err.strip().splitlines()) == 1


def test_train_prints_one_summary_and_evaluates_at_the_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--steps", "3", "--eval-every", "1000", "--eval-n", "8",
                 "--eval-steps", "1", *TINY]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("trained")]
    assert len(lines) == 1 and lines[0].startswith("trained 3 steps in ")
    rows = (out / "eval.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("3,")  # the final weights, though 3 < --eval-every
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].endswith("window_steps,resumed")


def test_interpolate_takes_a_class_per_end(tmp_path, capsys):
    root = make_models(tmp_path)
    pipe = DiffusionPipeline.from_pretrained(root / "tiny-class")
    r = interpolate_seeds(pipe, 0, 1, 3, steps=2, class_labels=("zero", "two"))
    assert r.images.shape == (3, 1, 8, 8)
    assert main(["interpolate", "--checkpoint", str(root / "tiny-class"), "--seeds", "0", "1", "--class", "0", "2",
                 "--frames", "3", "--steps", "2", "--out", str(tmp_path / "w.png")]) == 0
    assert main(["interpolate", "--checkpoint", str(root / "tiny-class"), "--seeds", "0", "1", "--frames", "3",
                 "--steps", "2", "--out", str(tmp_path / "w2.png")]) == 0
    assert "no --class given; the walk is of class" in capsys.readouterr().out


def test_editing_without_class_says_which_class_it_used(tmp_path, capsys):
    from PIL import Image

    root = make_models(tmp_path)
    Image.new("L", (8, 8), 30).save(tmp_path / "a.png")
    mask = Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 4, 8, 8))
    mask.save(tmp_path / "m.png")
    assert main(["inpaint", "--checkpoint", str(root / "tiny-class"), "--image", str(tmp_path / "a.png"), "--mask",
                 str(tmp_path / "m.png"), "--steps", "2", "--out", str(tmp_path / "o.png")]) == 0
    out = capsys.readouterr().out
    assert "no --class given; used the class the model sees in the input:" in out
    assert re.search(r"input: (zero|one|two) \(pass --class", out)


def test_generation_defaults_are_written_once(tmp_path):
    """ABM 10 steps guided for σ > 1 everywhere generation happens; the editing tasks keep DDIM 50."""
    import inspect

    from torchdiffusion import tasks
    from torchdiffusion.denoiser.guidance import check_guidance_interval
    from torchdiffusion.sampling.registry import DEFAULT_GUIDANCE_INTERVAL, EDIT_SAMPLER, EDIT_STEPS
    from torchdiffusion.training.config import TrainConfig

    for command in ("sample", "eval"):
        assert _default(command, "steps") is None and _default(command, "sampler") is None  # the model's default
        assert check_guidance_interval(_default(command, "guidance_interval")) == DEFAULT_GUIDANCE_INTERVAL
    pipe = DiffusionPipeline.from_pretrained(make_models(tmp_path) / "tiny-class")
    assert pipe.default_sampling() == (DEFAULT_SAMPLER, DEFAULT_STEPS)
    assert inspect.signature(DiffusionPipeline.generate).parameters["guidance_interval"].default \
        == DEFAULT_GUIDANCE_INTERVAL
    t = TrainConfig()
    assert (t.sampler, t.final_steps, t.sample_steps, t.eval_steps) == (DEFAULT_SAMPLER,) + (DEFAULT_STEPS,) * 3
    for command in ("inpaint", "img2img", "interpolate"):
        assert (_default(command, "sampler"), _default(command, "steps")) == (EDIT_SAMPLER, EDIT_STEPS), command
    for fn in (tasks.inpaint, tasks.img2img, tasks.interpolate_seeds):
        params = inspect.signature(fn).parameters
        assert (params["sampler"].default, params["steps"].default) == (EDIT_SAMPLER, EDIT_STEPS), fn.__name__
    pytest.importorskip("gradio")
    from torchdiffusion.ui.backend import GenerateRequest

    r = GenerateRequest(model="m")
    assert (r.sampler, r.steps) == (DEFAULT_SAMPLER, DEFAULT_STEPS)
