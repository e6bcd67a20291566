"""Stopping a comparison cleanly: a stop request, and the signals that ask for one.

A ``Stop`` is asked for by a signal (Ctrl-C, SIGTERM), a budget running out, or a cluster
lost.  The runner polls it while both clusters work: it then cancels the statements running
on both servers (the protocol cancel), lets their transactions roll back, closes its
sessions, and returns what was measured so far, marked partial.

``signals(stop)`` routes SIGINT and SIGTERM to ``stop`` while a run is active; outside a
run (or on a second signal) they interrupt at once, as usual.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from planguard.recording import INTERRUPTED


class Interrupted(KeyboardInterrupt):
    """A signal arrived where nothing can be saved; ``str()`` says which."""


class Stop:
    """A request to stop, shared by the thread that asks and the runner that obeys."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.kind: str | None = None
        self.active = False  # a run is listening (set by the runner)

    def request(self, reason: str, kind: str = INTERRUPTED) -> None:
        if not self._event.is_set():
            self.reason, self.kind = reason, kind
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less when a stop is asked; whether one was."""
        return self._event.wait(timeout)


@contextlib.contextmanager
def signals(stop: Stop) -> Iterator[Stop]:
    """SIGINT and SIGTERM ask ``stop`` while a run listens; otherwise (and on a second
    signal) they raise ``Interrupted`` at once.  Only in the main thread; restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.active and not stop.requested:
            stop.request(f"interrupted by {name}")
            return
        raise Interrupted(f"interrupted by {name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
