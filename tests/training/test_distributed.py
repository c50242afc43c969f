"""Two-process DDP training on CPU (gloo), launched by torchrun as a user would."""
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from torchdiffusion.training.distributed import check_batch
from torchdiffusion.errors import ConfigError

TINY = ["--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "8",
        "--sample-n", "2", "--sample-steps", "2", "--final-steps", "2", "--no-progress", "--precision", "fp32",
        "--checkpoint-every", "2", "--log-every", "1", "--warmup-steps", "1"]


def run(args, nproc=None, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    if nproc:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "torchdiffusion.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torchdiffusion.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def losses(run_dir):
    import csv

    return [float(r["loss"]) for r in csv.DictReader(open(run_dir / "log.csv"))]


def final_weights(run_dir):
    from torchdiffusion.io.runs import checkpoints_of

    return load_file(str(checkpoints_of(run_dir)[0][1] / "model.safetensors"))


def test_two_process_run_equals_single_process(tmp_path):
    out2 = run(["train", "--out", str(tmp_path / "ddp"), "--steps", "4", *TINY], nproc=2)
    diff = re.search(r"weights across 2 ranks: max \|difference\| = (\S+)", out2)
    assert diff is not None, out2
    assert float(diff.group(1)) == 0.0  # DDP keeps the replicas identical
    run(["train", "--out", str(tmp_path / "single"), "--steps", "4", *TINY])
    # the same global batches: the per-step losses agree to float precision …
    assert losses(tmp_path / "ddp") == pytest.approx(losses(tmp_path / "single"), rel=1e-5)
    # … and the weights within half of one Adam step (lr 2e-3): Adam's m/sqrt(v) amplifies
    # float-order differences of near-zero gradients in the first steps (the class embedding of
    # the default class-conditional MNIST model has many: 5e-4 measured)
    a, b = final_weights(tmp_path / "ddp"), final_weights(tmp_path / "single")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-3), (k, (a[k] - b[k]).abs().max())
    # resume the distributed run from its checkpoint and continue
    out = run(["train", "--out", str(tmp_path / "ddp"), "--resume", "--steps", "6", "--no-progress"], nproc=2)
    assert "trained 6 steps" in out


def test_a_signal_to_one_rank_stops_every_rank_with_a_checkpoint(tmp_path):
    """SIGTERM reaching only rank 1 (``rank=1`` fault point, inside step 3) stops both processes
    after that step: one checkpoint at step 3, the one-line message, a non-zero exit, and the run
    resumes from it on two processes."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCHDIFFUSION_FAULT="step:3:signal=TERM:rank=1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "torchdiffusion.cli", "train", "--out", str(tmp_path / "ddp"), "--steps", "8", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "stopped at step 3 by SIGTERM; the checkpoint is saved" in out, out
    from torchdiffusion.io.runs import checkpoints_of

    assert [step for step, _ in checkpoints_of(tmp_path / "ddp")][0] == 3
    out = run(["train", "--out", str(tmp_path / "ddp"), "--resume", "--steps", "5", "--no-progress"], nproc=2)
    assert "trained 5 steps" in out


def test_batch_must_split_over_ranks():
    assert check_batch(64, 2, 2) == 16
    with pytest.raises(ConfigError, match="does not divide over 3 processes"):
        check_batch(64, 3, 1)
