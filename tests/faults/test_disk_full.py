"""Disk full and read-only output folders while a checkpoint is written: the run stops with a
one-line message naming the folder and the fix, and the last good checkpoint stays intact.

Two ways: a patched writer (``OSError(ENOSPC / EROFS)`` from the safetensors writer, any
machine) and, where the test may mount one (root on Linux), a real 2-MiB tmpfs that fills up
and is then remounted read-only. ``chmod`` cannot simulate read-only here: root ignores it.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

import torchdiffusion.io.checkpoint as ckpt_mod
from torchdiffusion.io.checkpoint import verify_checkpoint
from torchdiffusion.cli.main import main
from torchdiffusion.io.runs import CHECKPOINT_KIND, checkpoints_of

pytestmark = pytest.mark.faults

TINY = ["--image-size", "8", "--base-channels", "8", "--channel-mult", "1,2", "--batch-size", "8",
        "--sample-every", "1000", "--log-every", "1", "--sample-n", "4", "--final-steps", "2", "--no-progress",
        "--precision", "fp32", "--checkpoint-every", "2"]


def failing_writer(monkeypatch, fail_from_call: int, code: int):
    real, calls = ckpt_mod.save_file, {"n": 0}

    def save_file(tensors, path, *a, **k):
        calls["n"] += 1
        if calls["n"] >= fail_from_call:
            # half a file reaches the disk first, as when a device fills up mid-write
            with open(path, "wb") as fh:
                fh.write(b"\0" * 100)
            raise OSError(code, os.strerror(code), path)
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ckpt_mod, "save_file", save_file)


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("torchdiffusion")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("code,hint", [(errno.ENOSPC, "free some disk space"),
                                       (errno.EROFS, "read-only: choose a writable folder"),
                                       (errno.EIO, "check the disk")])
def test_write_error_stops_with_message_and_keeps_last_checkpoint(tmp_path, monkeypatch, capsys, code, hint):
    out = tmp_path / "r"
    # a checkpoint writes 4 safetensors files (model, ema, optimizer, rng): the 2nd checkpoint fails
    failing_writer(monkeypatch, 6, code)
    assert main(["train", "--out", str(out), "--steps", "8", *TINY]) == 2
    line = one_error_line(capsys)
    assert "step-0000004" in line and os.strerror(code) in line and hint in line and "--resume" in line
    assert [s for s, _ in checkpoints_of(out)] == [2]
    verify_checkpoint(checkpoints_of(out)[0][1], CHECKPOINT_KIND)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")], "temporary folder left"
    monkeypatch.undo()  # space is back: the run resumes from step 2 and finishes
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert checkpoints_of(out)[0][0] == 8


def test_export_write_error_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r"
    failing_writer(monkeypatch, 9, errno.ENOSPC)  # steps 2 and 4 checkpoint, then the model export fails
    assert main(["train", "--out", str(out), "--steps", "4", *TINY]) == 2
    line = one_error_line(capsys)
    assert str(out / "model") in line and "No space left on device" in line
    assert checkpoints_of(out)[0][0] == 4 and not (out / "model").exists()


def _mount_tmpfs(path, size: str) -> bool:
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_real_full_then_read_only_tmpfs(tmp_path, capsys):
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission); the patched-writer tests cover it")
    try:
        out = mnt / "r"
        # about 840 kB per checkpoint: two fit in 2 MiB, the third does not
        rc = main(["train", "--out", str(out), "--steps", "40", *TINY])
        line = one_error_line(capsys)
        assert rc == 2 and "No space left on device" in line, line
        good = checkpoints_of(out)
        assert good, "no checkpoint fitted at all: the tmpfs is too small for this test"
        for _, folder in good:
            verify_checkpoint(folder, CHECKPOINT_KIND)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        assert main(["train", "--out", str(out), "--resume", "--steps", "60", "--no-progress"]) == 2
        line = one_error_line(capsys)
        assert "Read-only file system" in line and str(out) in line, line
        for _, folder in good:
            verify_checkpoint(folder, CHECKPOINT_KIND)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
