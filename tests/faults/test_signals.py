"""A signal stops a training run without losing work; a resumed run restores its options; one
trainer per run folder; hostile JSON and state files. Every fault comes from an exact event
(the N-th training step, the N-th checkpoint file: ``TORCHDIFFUSION_FAULT``), never from a
clock, so the suite gives the same result on a loaded machine."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess

import pytest

from torchdiffusion.io.runs import RunLock, checkpoints_of

from _faultkit import assert_bit_identical, check_invariants, run, train_cmd

pytestmark = pytest.mark.faults

# dropout and a periodic evaluation: both draw from the global RNG the checkpoint saves
EXTRA = ["--checkpoint-every", "4", "--sample-every", "3", "--dropout", "0.1", "--eval-every", "3",
         "--eval-n", "8", "--eval-steps", "1"]
STEPS = 8


def tensors_with_rng(folder):
    from safetensors.torch import load_file

    return {name: load_file(str(folder / f"{name}.safetensors")) for name in ("model", "ema", "optimizer", "rng")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = tmp_path_factory.mktemp("signals") / "reference"
    done = run(train_cmd(ref, STEPS, EXTRA))
    assert done.returncode == 0, done.stderr[-2000:]
    return ref


@pytest.mark.parametrize("name,code", [("TERM", 143), ("INT", 130), ("HUP", 129)])
def test_a_signal_finishes_the_step_saves_and_resumes_bit_identically(name, code, reference, tmp_path):
    out = tmp_path / "run"
    res = run(train_cmd(out, STEPS, EXTRA), fault=f"step:5:signal={name}")
    assert res.returncode == code, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if "stopped at step" in ln]
    assert lines == [f"torchdiffusion train: stopped at step 5 by SIG{name}; the checkpoint is saved: resume with "
                     f"--resume (torchdiffusion train --out {out} --resume)"], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert checkpoints_of(out)[0][0] == 5  # the steps since the last periodic checkpoint (4) are kept
    check_invariants(out)
    res = run(train_cmd(out, STEPS, EXTRA, resume=True))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed" in res.stderr and "with its saved options" in res.stderr
    a, b = tensors_with_rng(checkpoints_of(reference)[0][1]), tensors_with_rng(checkpoints_of(out)[0][1])
    assert_bit_identical(a, b)  # weights, EMA, Adam state and the saved random state
    rows = (out / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    first_after = dict(zip(header, rows[6].split(",")))  # step 6, the first row after the resume at 5
    assert first_after["step"] == "6" and first_after["resumed"] == "1" and first_after["window_steps"] == "1"


def test_a_second_signal_stops_at_once_and_loses_nothing_on_disk(reference, tmp_path):
    out = tmp_path / "run"
    # the first SIGTERM at step 6; the second while the stop checkpoint's first file is written
    res = run(train_cmd(out, STEPS, EXTRA), fault="step:6:signal=TERM,checkpoint-file:7:signal=TERM")
    assert res.returncode == -signal.SIGTERM, res.stderr[-2000:]
    check_invariants(out)
    assert checkpoints_of(out)[0][0] == 4  # the periodic checkpoint is intact; the torn one is not visible
    res = run(train_cmd(out, STEPS, EXTRA, resume=True))
    assert res.returncode == 0, res.stderr[-2000:]
    assert_bit_identical(tensors_with_rng(checkpoints_of(reference)[0][1]), tensors_with_rng(checkpoints_of(out)[0][1]))


def test_resume_keeps_saved_options_and_refuses_changed_ones(tmp_path):
    out = tmp_path / "run"
    assert run(train_cmd(out, 4, ["--grad-accum", "2", "--checkpoint-every", "2"])).returncode == 0
    res = run(train_cmd(out, 6, [], resume=True))  # --grad-accum not restated
    assert res.returncode == 0, res.stderr[-2000:]
    state = json.loads((checkpoints_of(out)[0][1] / "state.json").read_text())
    assert state["train_config"]["grad_accum"] == 2 and state["step"] == 6
    assert "grad_accum 2" in res.stderr and "changed: steps 4 → 6" in res.stderr
    for flag, value, message in (("--lr", "0.001", "--lr 0.001 differs from the resumed run's --lr 0.002"),
                                 ("--batch-size", "4", "--batch-size 4 differs from the resumed run's --batch-size 8"),
                                 ("--seed", "9", "--seed 9 differs from the resumed run's --seed 3"),
                                 ("--base-channels", "16", "--base-channels 16 differs from the resumed model's 8"),
                                 ("--image-size", "8", "--image-size 8 differs from the resumed model's 16")):
        res = run(train_cmd(out, 8, [], resume=True) + [flag, value])
        err = [ln for ln in res.stderr.splitlines() if "error" in ln]
        assert res.returncode == 2 and len(err) == 1 and message in err[0], res.stderr[-2000:]
    assert checkpoints_of(out)[0][0] == 6  # nothing ran
    res = run(train_cmd(out, 8, [], resume=True) + ["--lr", "0.001", "--override", "lr"])
    assert res.returncode == 0 and "changed: " in res.stderr and "lr 0.002 → 0.001" in res.stderr, res.stderr[-2000:]


def test_one_trainer_per_run_folder(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        res = run(train_cmd(out, 2, []))
    assert res.returncode == 2 and "is in use by another training process (PID" in res.stderr, res.stderr[-2000:]
    assert not checkpoints_of(out)
    assert run(train_cmd(out, 2, [])).returncode == 0  # the lock went with its holder


def _resign(folder):
    """Rewrite the manifest's digests after a file was edited (a forged but consistent checkpoint)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.pop("step"), "'step' is missing"),
    (lambda s: s.update(step="5"), "'step' must be a whole number"),
    (lambda s: s.update(step=-5), "'step' must be a whole number"),
    (lambda s: s.update(step=10**18), "'step' must be a whole number"),
    (lambda s: s.update(elapsed_s=float("nan")), "'elapsed_s' must be a finite number"),
    (lambda s: s.update(optimizer=[]), "'optimizer' must be an object"),
])
def test_a_forged_state_json_is_one_clear_line(edit, message, tmp_path):
    out = tmp_path / "run"
    assert run(train_cmd(out, 2, [])).returncode == 0
    folder = checkpoints_of(out)[0][1]
    state = json.loads((folder / "state.json").read_text())
    edit(state)
    (folder / "state.json").write_text(json.dumps(state))
    _resign(folder)
    res = run(train_cmd(out, 4, [], resume=True))
    err = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert res.returncode == 2 and len(err) == 1 and message in err[0] and "Traceback" not in res.stderr, \
        res.stderr[-2000:]


def test_a_wrong_random_state_is_one_clear_line(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    out = tmp_path / "run"
    assert run(train_cmd(out, 2, [])).returncode == 0
    folder = checkpoints_of(out)[0][1]
    rng = load_file(str(folder / "rng.safetensors"))
    rng["generator"] = torch.zeros(7, dtype=torch.uint8)
    save_file(rng, str(folder / "rng.safetensors"))
    _resign(folder)
    res = run(train_cmd(out, 4, [], resume=True))
    assert res.returncode == 2 and "the random state 'generator' is not a CPU generator state" in res.stderr


@pytest.mark.parametrize("target", ["config.json", "model_index.json"])
def test_deeply_nested_json_is_one_clear_line(target, tmp_path):
    import sys

    from helpers import make_models

    root = make_models(tmp_path)
    folder = root / "tiny"
    if target == "model_index.json":
        (folder / "model_index.json").write_text('{"_class_name": "LatentDiffusionPipeline", "components": '
                                                 + "[" * 100_000 + "]" * 100_000 + "}")
    else:
        (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
        _resign(folder)  # the checksum matches: only the parser stands between the file and a RecursionError
    res = subprocess.run([sys.executable, "-m", "torchdiffusion.cli", "sample", "--checkpoint", str(folder),
                          "--out", str(tmp_path / "s.png"), "--steps", "1", "--n", "1", "--no-progress"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "nests deeper than 32 levels" in res.stderr, res.stderr[-2000:]
    assert len(res.stderr.strip().splitlines()) == 1
