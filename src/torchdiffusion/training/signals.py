"""Stopping a training run on a signal without losing work.

SIGTERM (``kill``, a scheduler's pre-emption, ``docker stop``, torchrun forwarding it), SIGINT
(Ctrl-C) and SIGHUP (the terminal closed) ask the run to stop: the step in progress finishes,
the trainer writes an atomic checkpoint at that step and raises :class:`TrainingStopped`,
which the CLI reports in one line (``stopped at step N by SIGTERM; resume with --resume``) and
turns into the exit status 128 + signal number (130 for SIGINT, 143 for SIGTERM, 129 for
SIGHUP). A second signal while the checkpoint is written stops at once (SIGINT raises
KeyboardInterrupt, the others take their default action) — the checkpoint write is atomic, so
the previous checkpoint is still there. Handlers are installed only in the main thread, and
the previous handlers are put back when the run ends.
"""
from __future__ import annotations

import os
import signal
import threading

from torchdiffusion.errors import TorchDiffusionError

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class TrainingStopped(TorchDiffusionError):
    """The run was asked to stop by a signal; a checkpoint at ``step`` has been written."""

    def __init__(self, step: int, signum: int, out):
        self.step, self.signum, self.out = int(step), int(signum), out
        super().__init__(f"stopped at step {self.step} by {signal.Signals(signum).name}; the checkpoint is saved: "
                         f"resume with --resume (torchdiffusion train --out {out} --resume)")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopOnSignal:
    """Context manager: while active, the first stop signal sets :attr:`signum` (checked by the
    training loop between steps); a second one stops the process at once."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: stop now
            self._restore()
            if signum == getattr(signal, "SIGINT", None):
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        self.signum = signum

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except (OSError, ValueError):  # not settable here (embedded interpreter)
                    pass
        return self

    def _restore(self) -> None:
        for sig, old in self._previous.items():
            try:
                signal.signal(sig, old if old is not None else signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        self._previous.clear()

    def __exit__(self, *exc) -> None:
        self._restore()

    @property
    def requested(self) -> bool:
        return self.signum is not None
