"""The request queue: one generation at a time, a bounded number waiting, cancellation.

Concurrency 1 bounds memory to one request's worth (the limits bound a request); extra
requests wait in arrival order (``threading.Lock`` is not FIFO, so waiters take numbered
tickets) and beyond ``max_waiting`` are refused with :class:`QueueFull` instead of piling up.
A job is cancelled through its :class:`CancelToken`, which the sampler callback checks after
every step (:class:`Cancelled` unwinds the sampler). A refused request is logged in one line
(:func:`refusal`), never with a traceback.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

from torchdiffusion.errors import TorchDiffusionError
from torchdiffusion.io.images import safe_name

log = logging.getLogger("torchdiffusion.ui")

MAX_SHOWN = 80  # characters of a hostile value quoted in a message


def shown(value) -> str:
    """``repr(value)`` cut to :data:`MAX_SHOWN` characters, one printable line."""
    text = safe_name(repr(value))
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…"


def refusal(message: str, endpoint: str = "") -> str:
    """Log a refused request in one line (control characters escaped); return the message."""
    log.warning("web UI refused a request%s: %s", f" to /{endpoint}" if endpoint else "", safe_name(message))
    return message


class QueueFull(TorchDiffusionError):
    """Too many requests are waiting."""


class Cancelled(TorchDiffusionError):
    """The user pressed Cancel."""


class CancelToken:
    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


class RequestQueue:
    """FIFO admission with ``concurrency`` 1 and at most ``max_waiting`` requests in line."""

    def __init__(self, max_waiting: int = 64):
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._running = False
        self._skipped: set[int] = set()  # tickets of waiters that were cancelled
        self.completed = 0
        self.peak_waiting = 0

    def _waiting(self) -> int:
        return self._next_ticket - self._serving - int(self._running) - len(self._skipped)

    @property
    def waiting(self) -> int:
        with self._cond:
            return self._waiting()

    @contextmanager
    def slot(self, token: CancelToken | None = None):
        """Wait for our turn (or raise :class:`Cancelled` if cancelled while waiting), run, release."""
        with self._cond:
            waiting = self._waiting()
            if waiting >= self.max_waiting:
                raise QueueFull(f"the server is busy: {waiting} requests are waiting (limit {self.max_waiting}); "
                                "try again in a minute")
            ticket = self._next_ticket
            self._next_ticket += 1
            self.peak_waiting = max(self.peak_waiting, waiting + 1)
            while self._serving != ticket or self._running:
                if token is not None and token.cancelled:
                    self._skip(ticket)
                    raise Cancelled("cancelled while waiting in the queue")
                self._cond.wait(0.1)
            self._running = True
        try:
            yield
        finally:
            with self._cond:
                self._running = False
                self._serving += 1
                self.completed += 1
                self._advance()
                self._cond.notify_all()

    # a cancelled waiter leaves its ticket behind; the server skips it when it comes up
    def _skip(self, ticket: int) -> None:
        self._skipped.add(ticket)
        self._advance()
        self._cond.notify_all()

    def _advance(self) -> None:
        while not self._running and self._serving in self._skipped:
            self._skipped.discard(self._serving)
            self._serving += 1
