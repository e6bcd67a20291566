"""The comparison's results: what the judge decided, which the reports render (pure).

``Comparison`` holds, for every statement, a ``StatementResult`` with one ``ParamSetResult``
per parameter set (both sides' ``Measurement``, the ``Call``, the plan changes, the generic
plans, the result check, the confirmation round), and for the whole workload the findings,
the verdict, the impact at production call rates, the coverage, the noise floor measured and
what planguard ran on each side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from planguard.budget import Budget
from planguard.calls import SEVERITY, Call
from planguard.checks.freshness import TableStats
from planguard.checks.readiness import ClusterSnapshot
from planguard.config import Thresholds
from planguard.diff import Change
from planguard.findings import SEVERITIES, Finding
from planguard.measure import Digest, Measurement
from planguard.plan import Plan
from planguard.recording import ServerInfo, Stopped
from planguard.safety import Policy
from planguard.timing import NoiseFloor
from planguard.verdict import Verdict
from planguard.workload import Statement, Workload


@dataclass(frozen=True)
class GenericResult:
    """The forced generic plan (what a prepared statement may switch to), both sides."""

    old: Measurement
    new: Measurement
    call: Call
    changes: tuple[Change, ...]
    auto_old: bool | None = None  # would plan_cache_mode=auto pick it for typical calls (PG 14+)
    auto_new: bool | None = None


@dataclass(frozen=True)
class ResultCheck:
    """Whether NEW returns what OLD returns for one parameter set (``--check-results``)."""

    old: Digest | str  # a digest, or why there is none
    new: Digest | str
    ordered: bool
    deterministic: bool

    @property
    def outcome(self) -> str:
        """same, different_count, different_rows, different_order, or not_compared."""
        if isinstance(self.old, str) or isinstance(self.new, str):
            return "not_compared"
        if self.old.rows != self.new.rows:
            return "different_count"
        if not self.deterministic:
            return "same"  # arbitrary rows (LIMIT without ORDER BY, now(), random()): counts only
        if self.old.unordered != self.new.unordered:
            return "different_rows"
        if self.ordered and self.old.ordered != self.new.ordered:
            return "different_order"
        return "same"


@dataclass(frozen=True)
class Round:
    """An independent second round of pairs, taken after every statement had run, to confirm
    a large same-plan slowdown before it may block."""

    old: Measurement
    new: Measurement
    call: Call


@dataclass(frozen=True)
class ParamSetResult:
    label: str
    values: tuple[str | None, ...]
    old: Measurement
    new: Measurement
    call: Call
    changes: tuple[Change, ...]
    generic: GenericResult | None = None
    results: ResultCheck | None = None
    confirmation: Round | None = None
    sources: tuple[str, ...] = ()  # where each value came from (planguard.workload.ParamSet)


@dataclass(frozen=True)
class PlanOnly:
    """Generic plans of a statement that could not be executed (no parameter values)."""

    old: Plan | None
    new: Plan | None
    changes: tuple[Change, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Impact:
    """A statement's latency change weighted by its production call rate (Little's law)."""

    calls_per_second: float | None
    old_ms: float
    new_ms: float

    @property
    def delta_ms(self) -> float:
        return self.new_ms - self.old_ms

    @property
    def extra_sessions(self) -> float | None:
        """Average active sessions added at production rates: calls/s x extra seconds per call."""
        if self.calls_per_second is None:
            return None
        return self.calls_per_second * self.delta_ms / 1000

    @property
    def extra_db_seconds_per_hour(self) -> float | None:
        extra = self.extra_sessions
        return None if extra is None else extra * 3600


@dataclass(frozen=True)
class WorkloadImpact:
    """The whole workload's database load at production rates, OLD against NEW."""

    old_sessions: float
    new_sessions: float
    statements: int  # statements with a known call rate
    without_rate: int

    @property
    def delta_sessions(self) -> float:
        return self.new_sessions - self.old_sessions


def impact_of(stmt: Statement, p: ParamSetResult | None) -> Impact | None:
    if p is None or p.old.median_ms is None or p.new.median_ms is None:
        return None
    return Impact(stmt.calls_per_second, p.old.median_ms, p.new.median_ms)


def workload_impact(results: Sequence[StatementResult]) -> WorkloadImpact:
    """Average active sessions of the workload on each side (typical parameters, custom plans)."""
    old = new = 0.0
    counted = missing = 0
    for r in results:
        imp = impact_of(r.statement, r.param_sets[0] if r.param_sets else None)
        if imp is None:
            continue
        if imp.calls_per_second is None:
            missing += 1
            continue
        counted += 1
        old += imp.calls_per_second * imp.old_ms / 1000
        new += imp.calls_per_second * imp.new_ms / 1000
    return WorkloadImpact(old, new, counted, missing)


@dataclass(frozen=True)
class Coverage:
    """How much of OLD's captured workload the verdict rests on.

    Weighed by OLD's captured total time (by statements when no time was captured: a
    hand-written workload).  A statement is judged when some parameter set ran on both
    sides, or failed on NEW only; skipped ones and those failing on both are not.
    """

    judged_ms: float
    total_ms: float
    judged_calls: int
    total_calls: int
    judged: int
    statements: int
    unjudged: tuple[tuple[StatementResult, str], ...] = ()
    guessed_only: tuple[StatementResult, ...] = ()  # judged, but with no value from real data

    @property
    def by_time(self) -> bool:
        return self.total_ms > 0

    @property
    def share(self) -> float:
        """The share the verdict rests on: of OLD's captured time, else of the statements."""
        if self.by_time:
            return self.judged_ms / self.total_ms
        return self.judged / self.statements if self.statements else 1.0

    @property
    def calls_share(self) -> float | None:
        return self.judged_calls / self.total_calls if self.total_calls else None

    def text(self) -> str:
        """One line for the verdict: what it rests on."""
        head = (f"judged {self.share:.1%} of OLD's captured time" if self.by_time
                else f"judged {self.share:.1%} of the statements")
        parts = [f"{self.judged} of {self.statements} statements"]
        if self.calls_share is not None:
            parts.append(f"{self.calls_share:.1%} of calls")
        if self.guessed_only:
            parts.append(f"{len(self.guessed_only)} compared with guessed values only")
        return f"{head} ({', '.join(parts)})"

    def unjudged_items(self) -> list[str]:
        """What was not judged and why, heaviest first; the statements a stopped run did not
        reach are one item, not one each."""
        ranked = sorted(self.unjudged, key=lambda x: -x[0].statement.total_ms)
        items = [f"statement {r.statement.short_id} ({why})" for r, why in ranked if not r.not_reached]
        unreached = [why for r, why in ranked if r.not_reached]
        if unreached:
            n = len(unreached)
            items.append(f"{n} statement{'s' if n != 1 else ''} {unreached[0]}".replace(
                "the run stopped before it", "the run stopped before " + ("them" if n != 1 else "it")))
        return items


def _judged(r: StatementResult) -> str | None:
    """None when the verdict judged the statement, else why not."""
    if r.status == "skipped":
        return r.reason
    if any(p.old.ok and p.new.ok for p in r.param_sets):
        return None
    if any(p.new.error is not None and p.old.error is None and not p.new.not_measured
           for p in r.param_sets):
        return None  # it fails on NEW only: that is a judgement (a blocker)
    return r.reason or "did not run on either side"


def coverage_of(results: Sequence[StatementResult]) -> Coverage:
    judged_ms = total_ms = 0.0
    judged_calls = total_calls = judged = 0
    unjudged: list[tuple[StatementResult, str]] = []
    guessed: list[StatementResult] = []
    for r in results:
        s = r.statement
        total_ms += s.total_ms
        total_calls += s.calls
        why = _judged(r)
        if why is not None:
            unjudged.append((r, why))
            continue
        judged += 1
        judged_ms += s.total_ms
        judged_calls += s.calls
        sets = [p for p in s.param_sets if p.values]
        if sets and all(p.sources and len(p.guessed) == len(p.values) for p in sets):
            guessed.append(r)
    return Coverage(judged_ms, total_ms, judged_calls, total_calls, judged, len(results),
                    tuple(unjudged), tuple(guessed))


NOT_REACHED = "not reached: the run stopped before it ("


@dataclass(frozen=True)
class StatementResult:
    statement: Statement
    status: str
    reason: str
    param_sets: tuple[ParamSetResult, ...] = ()
    plan_only: PlanOnly | None = None

    @property
    def not_reached(self) -> bool:
        """A partial run stopped before it."""
        return self.status == "skipped" and self.reason.startswith(NOT_REACHED)

    @property
    def generic_status(self) -> str | None:
        """Worst call over the parameter sets' generic plans, None when not measured."""
        calls = [p.generic.call.status for p in self.param_sets if p.generic]
        return min(calls, key=lambda c: SEVERITY[c]) if calls else None

    @property
    def decisive(self) -> ParamSetResult | None:
        """The parameter set whose call decided the statement's status (the worst)."""
        if not self.param_sets:
            return None
        return min(self.param_sets, key=lambda p: SEVERITY[p.call.status])


@dataclass(frozen=True)
class Load:
    """The statement executions planguard ran on one side, warm-ups included."""

    executions: int
    server_ms: float  # their planning plus execution time
    reconnects: int = 0  # sessions lost and opened again


@dataclass(frozen=True)
class ShardInfo:
    """Which slice a comparison ran (``compare --shard I/N``, ``planguard.shard``): shard
    ``index`` (1-based) of ``count``, of the workload whose identity is ``workload``
    (``planguard.shard.workload_id``); ``catalog_checks``: this shard read and judged the
    catalog checks (shard 1 only)."""

    index: int
    count: int
    workload: str

    @property
    def catalog_checks(self) -> bool:
        return self.index == 1


@dataclass(frozen=True)
class Comparison:
    old: ServerInfo
    new: ServerInfo
    workload: Workload
    statements: tuple[StatementResult, ...]
    findings: tuple[Finding, ...]
    verdict: Verdict
    thresholds: Thresholds
    repeat: int
    started_at: str
    duration_s: float
    tables: tuple[TableStats, ...] = ()
    redacted: bool = False
    impact: WorkloadImpact | None = None
    noise: NoiseFloor | None = None  # measured on the clusters during this comparison
    load: tuple[Load, Load] | None = None  # what planguard asked of OLD and of NEW
    coverage: Coverage | None = None
    stopped: Stopped | None = None  # the run ended early: a partial result
    retries: int = 0  # steps run again after a lost session or a cancel
    paused_s: float = 0.0  # waiting for a busy OLD (--polite)
    policy: Policy | None = None  # writes, max_query_ms, same cluster, as the run honoured them
    budget: Budget | None = None
    recording: str | None = None  # where what both clusters answered was saved (--resume reads it)
    kept: int = 0  # parameter sets taken from the recording a resumed run completed
    shard: ShardInfo | None = None  # compare --shard I/N: which slice this result judged

    @property
    def partial(self) -> bool:
        return self.stopped is not None



@dataclass(frozen=True)
class CheckResult:
    """What ``planguard check`` found: the catalog findings of OLD against NEW, and the verdict."""

    findings: tuple[Finding, ...]
    verdict: Verdict
    old: ClusterSnapshot
    new: ClusterSnapshot
    old_label: str  # a redacted DSN, or where OLD's recorded catalog came from
    new_label: str
    thresholds: Thresholds
    started_at: str
    duration_s: float

    def counts(self) -> dict[str, int]:
        return {sev: sum(1 for f in self.findings if f.severity == sev) for sev in SEVERITIES}
