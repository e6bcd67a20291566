"""Progress of capture, compare and check: a pure event, and how a terminal or a log shows it.

The library emits ``Step`` events through a callback (``OnStep``) and knows nothing of
terminals; the command line picks a ``Reporter`` for where its output goes (``reporter``):

- on a terminal, a live progress bar (``rich``): statements done, ETA, regressions so far;
- in CI (the ``CI`` environment variable) or when stderr is piped, a quiet line now and then
  (every ``EVERY_S`` seconds or ``EVERY_FRACTION`` of the work, and at the end);
- with ``-q/--quiet``, nothing.

Messages (a replica noticed, a pause, a reconnect) go through the same reporter, above the
bar on a terminal and as lines otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

EVERY_S = 10.0
EVERY_FRACTION = 0.1


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` units of work (statements) finished, ``regressions`` found so far,
    ``what`` the unit just finished (a statement's short id, a phase)."""

    done: int
    total: int
    regressions: int = 0
    what: str = ""

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(self.done / self.total, 1.0)


OnStep = Callable[[Step], None]


def eta_s(step: Step, elapsed_s: float) -> float | None:
    """Seconds left at the pace so far (None before the first unit is done)."""
    if step.done <= 0 or step.total <= 0:
        return None
    return max(elapsed_s * (step.total - step.done) / step.done, 0.0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def line(step: Step, elapsed_s: float, title: str, noun: str = "regression") -> str:
    """One line of progress: ``compare: 12/40 (30%), 2 regressions, ETA 1m20s, 0m36s elapsed``
    (``noun``: what ``Step.regressions`` counts, e.g. ``blocker`` for check)."""
    regressions = f", {_count(step.regressions, noun)}"
    eta = "" if step.done >= step.total else f", ETA {_duration(eta_s(step, elapsed_s))}"
    return (f"{title}: {step.done}/{step.total} ({step.fraction:.0%}){regressions}{eta}, "
            f"{_duration(elapsed_s)} elapsed")


class Reporter(Protocol):
    def step(self, step: Step) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class Silent:
    """``--quiet``: nothing at all."""

    def step(self, step: Step) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class Lines:
    """Line-oriented progress for CI logs and pipes: when the first unit is done, then at most
    every ``every_s`` seconds or each ``every_fraction`` of the work, and at the end."""

    def __init__(self, stream: TextIO, title: str, *, every_s: float = EVERY_S,
                 every_fraction: float = EVERY_FRACTION, clock: Callable[[], float] = time.monotonic,
                 noun: str = "regression") -> None:
        self.stream, self.title, self.clock, self.noun = stream, title, clock, noun
        self.every_s, self.every_fraction = every_s, every_fraction
        self.started = clock()
        self._last_at: float | None = None
        self._last_fraction = 0.0
        self._last: Step | None = None
        self._printed: Step | None = None

    def step(self, step: Step) -> None:
        if step.done <= 0:
            return  # nothing done yet: a run that fails before its first statement stays one line
        now = self.clock()
        due = (self._last_at is None or step.done >= step.total
               or now - self._last_at >= self.every_s
               or step.fraction - self._last_fraction >= self.every_fraction)
        self._last = step
        if due and step != self._printed:
            self._print(step, now)

    def _print(self, step: Step, now: float) -> None:
        self.stream.write(f"  {line(step, now - self.started, self.title, self.noun)}\n")
        self.stream.flush()
        self._last_at, self._last_fraction, self._printed = now, step.fraction, step

    def message(self, text: str) -> None:
        self.stream.write(f"  {text}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._last is not None and self._last != self._printed:
            self._print(self._last, self.clock())


class Bar:
    """A live progress bar on a terminal (``rich``): done/total, regressions so far, ETA."""

    def __init__(self, stream: TextIO, title: str, console: Any = None, noun: str = "regression") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console or Console(file=stream)
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[regressions]}"), TextColumn("ETA"),
                                  TimeRemainingColumn(), TimeElapsedColumn(), console=self.console,
                                  transient=False)
        self._task: Any = None
        self.title, self.noun = title, noun

    def step(self, step: Step) -> None:
        regressions = _count(step.regressions, self.noun)
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=step.total, regressions=regressions)
        self._progress.update(self._task, completed=step.done, total=step.total, regressions=regressions)

    def message(self, text: str) -> None:
        self.console.print(f"  {text}", markup=False, highlight=False)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()


def is_ci(env: Mapping[str, str]) -> bool:
    """``CI`` set to anything but empty, 0 or false (GitHub Actions, GitLab, ... set it)."""
    return env.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def reporter(title: str, *, quiet: bool = False, stream: TextIO | None = None,
             env: Mapping[str, str] | None = None, noun: str = "regression") -> Reporter:
    """The reporter for ``stream`` (default stderr): nothing when ``quiet``, a bar on a terminal,
    throttled lines in CI or when piped."""
    if quiet:
        return Silent()
    stream = stream or sys.stderr
    env = os.environ if env is None else env
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if tty and not is_ci(env):
        return Bar(stream, title, noun=noun)
    return Lines(stream, title, noun=noun)
