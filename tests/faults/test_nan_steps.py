"""NaN/Inf losses: the step is skipped (no optimizer or EMA update) and counted in log.csv;
``--max-nan-steps`` in a row stop the run with a message naming the likely causes."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import torchdiffusion.training.diffusion as trainer_mod
from torchdiffusion.cli.main import main
from torchdiffusion.data.dataset import ImageDataset
from torchdiffusion.data.mnist import load_mnist
from torchdiffusion.errors import TorchDiffusionError
from torchdiffusion.training.config import TrainConfig
from torchdiffusion.io.runs import checkpoints_of
from torchdiffusion.training.run import prepare_run

from helpers import tiny_model_config

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def data():
    ds = load_mnist(image_size=8)
    return ImageDataset(ds.images[:128], ds.labels[:128], ds.class_names, name="mnist-8px")


def cfg(out, **kw):
    base = dict(out=str(out), steps=8, batch_size=8, checkpoint_every=2, sample_every=1000, log_every=1,
                sample_n=4, sample_steps=2, final_steps=2, progress=False, precision="fp32", warmup_steps=2)
    base.update(kw)
    return TrainConfig(**base)


def poison(monkeypatch, bad_calls: set[int], value=float("nan")):
    """Make the loss non-finite on the given (1-based) calls of diffusion_loss."""
    real = trainer_mod.diffusion_loss
    calls = {"n": 0}

    def loss(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * value if calls["n"] in bad_calls else out

    monkeypatch.setattr(trainer_mod, "diffusion_loss", loss)


def snapshot(t):
    return ({k: v.clone() for k, v in t.network.state_dict().items()},
            {k: v.clone() for k, v in t.ema.model.state_dict().items()},
            {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
             for i, s in t.optimizer.state_dict()["state"].items()})


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_step_is_skipped_without_any_update(tmp_path, data, monkeypatch, value):
    t = prepare_run(tiny_model_config(), cfg(tmp_path / "r"), dataset=data)
    poison(monkeypatch, {3}, value)
    t.train_step(), t.train_step()
    w, ema, opt = snapshot(t)
    loss, norm = t.train_step()  # poisoned
    assert math.isnan(loss) and math.isnan(norm) and t.step == 3
    w2, ema2, opt2 = snapshot(t)
    assert same(w, w2) and same(ema, ema2)
    assert all(torch.equal(opt[i]["exp_avg"], opt2[i]["exp_avg"]) and opt[i]["step"] == opt2[i]["step"] for i in opt)
    assert all(p.grad is None for p in t.network.parameters())
    loss, _ = t.train_step()  # the next step trains again
    assert math.isfinite(loss) and not same(w2, snapshot(t)[0])


def test_skips_are_counted_in_the_log_and_checkpoint(tmp_path, data, monkeypatch, caplog):
    poison(monkeypatch, {3, 5, 6})
    t = prepare_run(tiny_model_config(), cfg(tmp_path / "r"), dataset=data)
    t.train()
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    assert [int(r["nan_skipped"]) for r in rows] == [0, 0, 1, 1, 2, 3, 3, 3]
    assert rows[2]["loss"] == "nan" and math.isfinite(float(rows[3]["loss"]))
    state = json.loads((checkpoints_of(tmp_path / "r")[0][1] / "state.json").read_text())
    assert state["nan_skipped"] == 3 and state["step"] == 8
    assert "update skipped" in caplog.text
    # every weight of the exported model is finite
    from torchdiffusion.pipeline.folders import load_model

    den, _ = load_model(tmp_path / "r")
    assert all(torch.isfinite(p).all() for p in den.parameters())


def test_repeated_nans_stop_the_run_naming_the_causes(tmp_path, data, monkeypatch):
    poison(monkeypatch, set(range(5, 100)))
    t = prepare_run(tiny_model_config(), cfg(tmp_path / "r", max_nan_steps=3), dataset=data)
    with pytest.raises(TorchDiffusionError) as err:
        t.train()
    msg = str(err.value)
    for part in ("3 steps in a row", "--lr", "bf16", "--precision fp32", "--max-nan-steps"):
        assert part in msg, (part, msg)
    assert t.step == 7  # 4 good steps, then 3 skipped ones
    # step 6 was checkpointed during the skips: it holds step 4's weights, all finite
    (s6, c6), (s4, c4) = checkpoints_of(tmp_path / "r")
    assert (s6, s4) == (6, 4)
    from safetensors.torch import load_file

    w6, w4 = load_file(str(c6 / "model.safetensors")), load_file(str(c4 / "model.safetensors"))
    assert all(torch.equal(w6[k], w4[k]) and torch.isfinite(w6[k]).all() for k in w4)


def test_cli_real_divergence_stops_with_one_line(tmp_path, capsys):
    """No patching: a learning rate of 1e30 blows the weights up and every loss becomes NaN."""
    out = tmp_path / "r"
    rc = main(["train", "--out", str(out), "--steps", "40", "--lr", "1e30", "--warmup-steps", "1",
               "--max-nan-steps", "4", "--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2",
               "--batch-size", "8", "--sample-every", "1000", "--checkpoint-every", "1000", "--log-every", "1",
               "--no-progress", "--precision", "fp32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("torchdiffusion train: error: loss or gradients were NaN/Inf for 4 steps in a row")
    assert "--lr (now 1e+30)" in err[-1] and "Traceback" not in "\n".join(err)
    rows = list(csv.DictReader(open(out / "log.csv")))
    # the last row logged is the step before the 4th skip (which stops the run before its row)
    assert int(rows[-1]["nan_skipped"]) == 3 and int(rows[-1]["step"]) < 40


def test_max_nan_steps_is_validated(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), "--steps", "1", "--max-nan-steps", "0"]) == 2
    assert "--max-nan-steps must be ≥ 1" in capsys.readouterr().err
