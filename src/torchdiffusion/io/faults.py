"""Fault-injection points, used by the fault suite (``tests/faults/``) to kill a real training
process at exact places: inside a step, between the files of a checkpoint, during a PNG write.

Inert unless the environment variable ``TORCHDIFFUSION_FAULT`` is set, as a comma-separated
list of ``NAME:N`` entries: the process sends itself SIGKILL (no clean-up, no ``finally``, no
flush, like the OOM killer or a pulled plug) the N-th time it reaches the point ``NAME``.
``NAME:N:sleep=S`` sleeps S seconds there instead, to hold a window open for a timed kill;
``NAME:N:signal=TERM`` (or INT, HUP) sends that signal instead, so a graceful stop is tested at
an exact step rather than at a moment. A ``rank=R`` option (``step:5:signal=TERM:rank=1``) limits
an entry to the process whose ``RANK`` is R, to fault one process of a torchrun job.

Points in the code (each reached once per occurrence):

* ``step`` — in ``Trainer.train_step``, after backward, before the optimizer step;
* ``checkpoint-file`` — after each file written into a checkpoint's temporary folder;
* ``checkpoint-commit`` — after the manifest is written, before the folder is renamed into place;
* ``checkpoint-prune`` — after an old checkpoint is moved aside, before it is deleted;
* ``png`` — after a PNG is written to its temporary name, before it is renamed into place.
"""
from __future__ import annotations

import os
import signal
import time

ENV = "TORCHDIFFUSION_FAULT"
POINTS = ("step", "checkpoint-file", "checkpoint-commit", "checkpoint-prune", "png")
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Count a visit to fault point ``name``; kill (or sleep) here if ``TORCHDIFFUSION_FAULT`` says so."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    _hits[name] = _hits.get(name, 0) + 1
    for entry in spec.split(","):
        parts = entry.strip().split(":")
        if len(parts) < 2 or parts[0] != name or not parts[1].isdigit() or int(parts[1]) != _hits[name]:
            continue
        options = dict(part.split("=", 1) for part in parts[2:] if "=" in part)
        if "rank" in options and options["rank"] != os.environ.get("RANK", "0"):
            continue  # meant for another process of a torchrun job
        if "sleep" in options:
            time.sleep(float(options["sleep"]))
        elif "signal" in options:
            os.kill(os.getpid(), getattr(signal, "SIG" + options["signal"].upper()))
        else:
            os.kill(os.getpid(), signal.SIGKILL)
