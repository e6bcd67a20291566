"""What one side measured (pure: no database): runs, warm-ups, result digests, and the
per-parameter-set summary the calls are made on."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from planguard.plan import Plan, shape_fingerprint

# A warm-up runs until reads from outside shared buffers stop falling (WARM_ENOUGH: by less
# than 10 % since the previous run), within these bounds.
WARMUP_MAX_RUNS = 5
WARMUP_BUDGET_MS = 5_000.0
WARM_ENOUGH = 0.9

# Errors that say nothing about the statement on that cluster, only about the moment: it was
# not measured.  A lock another session held past lock_timeout, a run stopped before it
# finished (a signal, a budget, the other cluster lost).
LOCK_TIMEOUT = "gave up waiting for a lock another session holds (lock_timeout)"
NOT_FINISHED = "not finished: "


def not_measured(error: str | None) -> bool:
    """The error is about the moment, not the statement (see ``LOCK_TIMEOUT``)."""
    return error is not None and (error.startswith(NOT_FINISHED) or error.startswith(LOCK_TIMEOUT))


@dataclass(frozen=True)
class Run:
    """One measured execution."""

    execution_ms: float
    planning_ms: float | None
    shared_buffers: int
    temp_buffers: int
    plan: Plan
    shared_read: int = 0  # of shared_buffers, the blocks that were not in shared buffers yet
    # When the client sent it and had the answer (time.monotonic(), seconds): pairs overlap.
    started: float | None = field(default=None, compare=False)
    ended: float | None = field(default=None, compare=False)

    @classmethod
    def of(cls, plan: Plan) -> Run:
        return cls(float(plan.execution_ms or 0.0), plan.planning_ms, plan.shared_buffers,
                   plan.temp_buffers, plan, plan.shared_read)


@dataclass(frozen=True)
class Warmup:
    """The discarded runs before the measured ones: until reads from outside shared buffers
    stopped falling (a cold cache warming up), within a bound of runs and time."""

    runs: int
    first_read: int  # blocks the first execution read (not found in shared buffers)
    last_read: int  # ... the last warm-up execution
    reads_by_relation: tuple[tuple[str, int], ...] = ()  # the first execution's, largest first


@dataclass(frozen=True)
class Measurement:
    """One side's result for one parameter set: medians over the measured runs."""

    median_ms: float | None = None
    shared_buffers: int | None = None  # shared hit + read, median over runs
    temp_buffers: int | None = None  # temp read + written, median over runs
    runs: int = 0
    plan: Plan | None = None  # the run whose time is closest to the median
    error: str | None = None
    plan_fingerprints: tuple[str, ...] = ()  # distinct shapes seen across runs
    times_ms: tuple[float, ...] = ()  # every measured run's execution time, in the order they ran
    warmup: Warmup | None = None

    @property
    def plan_fingerprint(self) -> str | None:
        return shape_fingerprint(self.plan) if self.plan else None

    @property
    def buffers(self) -> int:
        """Shared plus temp buffers: what the regression call compares."""
        return (self.shared_buffers or 0) + (self.temp_buffers or 0)

    @property
    def ok(self) -> bool:
        return self.error is None and self.plan is not None

    @property
    def not_measured(self) -> bool:
        """It failed for a reason of the moment (a lock held, the run stopped): no call."""
        return not_measured(self.error)

    @property
    def samples(self) -> tuple[float, ...]:
        """The run times, or the median alone when only that is known."""
        if self.times_ms:
            return self.times_ms
        return () if self.median_ms is None else (self.median_ms,)


def summarize(runs: Sequence[Run], warmup: Warmup | None = None) -> Measurement:
    """One side's Measurement from its runs: medians, the run closest to the median time,
    the shapes seen, every run's time in order."""
    times = tuple(r.execution_ms for r in runs)
    median_ms = statistics.median(times)
    typical = min(runs, key=lambda r: abs(r.execution_ms - median_ms))
    return Measurement(
        median_ms=median_ms,
        shared_buffers=int(statistics.median(r.shared_buffers for r in runs)),
        temp_buffers=int(statistics.median(r.temp_buffers for r in runs)),
        runs=len(runs), plan=typical.plan,
        plan_fingerprints=tuple(sorted({shape_fingerprint(r.plan) for r in runs})),
        times_ms=times, warmup=warmup,
    )


@dataclass(frozen=True)
class Digest:
    """A statement's result, summarised on the server: no row leaves the cluster."""

    rows: int
    ordered: str  # md5 of the rows in the order the statement returned them
    unordered: str  # md5 of the rows sorted
