"""Shared helpers of the fault suite: a tiny training command, real subprocesses, invariants.

Every run uses ``OMP_NUM_THREADS=1`` (and one intra-op thread): with a fixed thread count the
CPU kernels of this tiny U-Net are deterministic, so a resumed run can be compared with an
uninterrupted one bit for bit (no ``torch.use_deterministic_algorithms`` is needed on CPU).
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from torchdiffusion.io.checkpoint import verify_checkpoint
from torchdiffusion.io.faults import ENV
from torchdiffusion.io.runs import CHECKPOINT_KIND, checkpoints_of

REPO = Path(__file__).resolve().parents[2]

# 16 px images, widths 8/16, batch 8: a training step takes a few milliseconds.
TINY_TRAIN = ["--data", "mnist", "--image-size", "16", "--base-channels", "8", "--channel-mult", "1,2",
              "--batch-size", "8", "--warmup-steps", "2", "--log-every", "1", "--sample-n", "4",
              "--sample-steps", "2", "--final-steps", "2", "--precision", "fp32", "--no-progress", "--seed", "3"]


def env(fault: str | None = None) -> dict:
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = str(REPO / "src") + os.pathsep + e.get("PYTHONPATH", "")
    e.pop(ENV, None)
    if fault:
        e[ENV] = fault
    return e


def train_cmd(out: Path, steps: int, extra: list[str] = (), resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "torchdiffusion.cli", "train", "--out", str(out), "--steps", str(steps),
           *TINY_TRAIN, *extra]
    return cmd + (["--resume"] if resume else [])


def run(cmd: list[str], fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env(fault), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def run_and_kill_when(cmd: list[str], ready, delay: float, timeout: float = 300) -> tuple[int, str]:
    """Start ``cmd``; once ``ready()`` is true wait ``delay`` s and SIGKILL it (unless it ended)."""
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    t0 = time.monotonic()
    try:
        while proc.poll() is None and not ready():
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{cmd} not ready after {timeout} s")
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out


def logged_steps(run_dir: Path) -> list[int]:
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [int(r["step"]) for r in csv.DictReader(fh) if (r.get("step") or "").isdigit()]


def check_invariants(run_dir: Path) -> int:
    """Every checkpoint folder verifies, every visible PNG decodes, the log parses with each step
    at most once. Returns the number of checkpoints on disk."""
    ckpts = checkpoints_of(run_dir)
    for _, folder in ckpts:
        verify_checkpoint(folder, CHECKPOINT_KIND)
    for png in list(Path(run_dir).glob("samples/*.png")) + list(Path(run_dir).glob("samples.png")):
        with Image.open(png) as im:
            im.load()
    steps = logged_steps(run_dir)
    assert steps == sorted(set(steps)), f"log.csv repeats or reorders steps: {steps}"
    return len(ckpts)


def tensors_of(folder: Path) -> dict:
    return {name: load_file(str(folder / f"{name}.safetensors")) for name in ("model", "ema", "optimizer")}


def assert_bit_identical(a: dict, b: dict) -> None:
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for k in a[name]:
            x, y = a[name][k], b[name][k]
            assert x.dtype == y.dtype and x.shape == y.shape, (name, k)
            assert torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)), \
                f"{name}/{k} differs"
