"""The post-cutover watch's judgement (pure: no database): NEW's statements, interval by
interval, against OLD's captured baseline, and the call.

Each interval (``planguard.statdelta.Delta``, its entries already matched to statements by
planguard's fingerprint) gives every statement its call rate, mean latency, buffers and rows
per call, its share of NEW's load (execution time per second: its average active sessions)
and, against the baseline, the **added active sessions** at the observed rate (Little's law,
as in compare: calls/s × extra seconds per call).

A statement is **bad** in an interval when it ran at least ``min_calls`` times and passes
compare's own thresholds: ``time_ratio`` times and ``min_time_delta_ms`` slower than OLD's
captured mean, adding ``impact_block_aas`` active sessions or more, and doing other work
(``buffers_ratio`` times and ``min_buffers_delta`` more buffers per call: ``regressed``) or,
with the same work, ``same_plan_block_ratio`` times and ``same_plan_block_ms`` slower
(``slower``).  A regression is **confirmed** only after ``confirm`` consecutive bad
intervals, so a single slow burst raises nothing; it **clears** after ``confirm``
consecutive intervals that ran and were not bad.

The call, worst first:

- ``ROLLBACK RECOMMENDED``: confirmed regressions add at least ``rollback_share`` of NEW's
  capacity in active sessions (its cores when given, else the connections the application may
  open) within ``rollback_window_s`` of the cutover;
- ``REGRESSION``: a confirmed regression, named with its cause and fix;
- ``RECOVERED``: every confirmed regression has cleared;
- ``OK``; ``STARTING`` before the first interval is counted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from planguard.checks.readiness import ClusterSnapshot
from planguard.config import Thresholds
from planguard.findings import (
    EXTRA_INDEX,
    HARMFUL_INDEX,
    MISSING_INDEX,
    NEVER_ANALYZED,
    SEQUENCE_BEHIND,
    STALE_STATS,
    Finding,
)
from planguard.statdelta import Counters
from planguard.workload import Statement, Workload

STARTING, OK, REGRESSION, RECOVERED = "STARTING", "OK", "REGRESSION", "RECOVERED"
ROLLBACK = "ROLLBACK RECOMMENDED"
CALLS = (ROLLBACK, REGRESSION, RECOVERED, OK, STARTING)
# A statement's state in an interval.
STATES = ("regressed", "slower", "suspect", "recovering", "ok", "new", "few_calls")
# Linked readiness findings, in the order their fixes should be applied: statistics first.
CAUSE_ORDER = (NEVER_ANALYZED, STALE_STATS, HARMFUL_INDEX, MISSING_INDEX, EXTRA_INDEX, SEQUENCE_BEHIND)

StatementKey = tuple[str, str]  # (database, fingerprint)


@dataclass(frozen=True)
class WatchOptions:
    """How the watch judges; thresholds are compare's (``planguard.config.Thresholds``)."""

    interval_s: float = 10.0
    confirm: int = 2  # consecutive bad intervals to confirm; good ones to clear
    min_calls: int = 3  # calls in an interval for its mean to count
    rollback_share: float = 0.5
    rollback_window_s: float = 900.0
    cores: int | None = None  # NEW's cores: the capacity for the rollback call, instead of connections
    explain_every_s: float = 300.0  # at most one plain EXPLAIN per statement this often
    top: int = 10  # statements shown in the live view and kept in the snapshot
    history: int = 360  # intervals kept for the HTML snapshot (bounded memory)


@dataclass(frozen=True)
class Baseline:
    """OLD's captured statements, found by database and planguard's fingerprint."""

    workload: Workload
    by_key: Mapping[StatementKey, Statement]
    by_fingerprint: Mapping[str, Statement]

    @classmethod
    def of(cls, workload: Workload) -> Baseline:
        by_key = {(s.database or workload.source.database, s.fingerprint): s for s in workload.statements}
        by_fp: dict[str, Statement] = {}
        for s in workload.statements:
            by_fp.setdefault(s.fingerprint, s)
        return cls(workload, by_key, by_fp)

    def find(self, key: StatementKey) -> Statement | None:
        return self.by_key.get(key) or self.by_fingerprint.get(key[1])

    @property
    def has_rates(self) -> bool:
        return any(s.calls_per_second for s in self.workload.statements)


@dataclass(frozen=True)
class Cause:
    """Why a statement regressed on NEW, and the SQL that fixes it (None: nothing to run)."""

    kind: str  # a finding kind (never_analyzed, harmful_index, ...) or plan_changed, waits
    text: str
    fix: str | None = None


@dataclass(frozen=True)
class Row:
    """One statement in one interval."""

    database: str
    fingerprint: str
    query: str
    in_baseline: bool
    calls: int
    rate: float  # calls per second in the interval
    mean_ms: float | None
    buffers_per_call: float | None
    rows_per_call: float | None
    load: float  # execution seconds per second: the statement's average active sessions
    share: float  # of NEW's load in the interval (0..1)
    base_rate: float | None = None
    base_mean_ms: float | None = None
    base_buffers_per_call: float | None = None
    base_rows_per_call: float | None = None
    added_sessions: float | None = None  # rate x (mean - baseline mean)
    state: str = "ok"
    streak: int = 0  # consecutive bad intervals
    reason: str = ""
    causes: tuple[Cause, ...] = ()
    plan_note: str | None = None  # what the last plain EXPLAIN on NEW said against OLD's plan

    @property
    def key(self) -> StatementKey:
        return (self.database, self.fingerprint)

    @property
    def ratio(self) -> float | None:
        if self.mean_ms is None or not self.base_mean_ms:
            return None
        return self.mean_ms / self.base_mean_ms

    @property
    def short_id(self) -> str:
        return self.fingerprint[:8]

    @property
    def confirmed(self) -> bool:
        return self.state in ("regressed", "slower")


@dataclass(frozen=True)
class Call:
    """The watch's call after an interval, and the evidence for it."""

    verdict: str
    summary: str  # one line: the statement, the cause, the fix
    fixes: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Interval:
    """What one interval showed: the statements ranked by load, the call, the events."""

    number: int
    at: str  # the server's time at the end of the interval
    seconds: float
    since_start_s: float
    rows: tuple[Row, ...]  # the top statements by load, then every other bad or confirmed one
    total_load: float  # average active sessions of all statements
    statements_seen: int
    call: Call
    events: tuple[str, ...] = ()
    counted: bool = True
    activity: Mapping[str, object] | None = None  # planguard.catalog.activity.Activity as a dict
    capacity: float | None = None
    watch_load: Mapping[str, float] | None = None  # the watch's own queries and their server time


@dataclass
class _Track:
    """What the watch remembers of one statement between intervals (bounded: see ``forget``)."""

    bad: int = 0
    good: int = 0
    confirmed: bool = False
    kind: str = "regressed"
    last_seen: int = 0
    row: Row | None = None  # the last interval it ran


@dataclass
class WatchState:
    """Everything carried from one interval to the next."""

    options: WatchOptions
    thresholds: Thresholds
    baseline: Baseline
    tracks: dict[StatementKey, _Track] = field(default_factory=dict)
    number: int = 0
    ever_confirmed: bool = False
    rollback: str | None = None  # why a rollback was recommended, while the regressions last
    history: deque[Interval] = field(default_factory=deque)

    def remember(self, interval: Interval) -> None:
        self.history.append(interval)
        while len(self.history) > self.options.history:
            self.history.popleft()

    def forget(self, horizon: int = 60) -> None:
        """Drop statements not seen for ``horizon`` intervals, unless confirmed: memory stays
        bounded by what ran recently, over hours of watching."""
        old = [k for k, t in self.tracks.items() if not t.confirmed and self.number - t.last_seen > horizon]
        for key in old:
            del self.tracks[key]


def _judge(row: Row, t: Thresholds) -> str | None:
    """``regressed``, ``slower`` or None (not bad) for one statement's interval, from the row's
    figures against its baseline's."""
    mean, base_mean = row.mean_ms or 0.0, row.base_mean_ms or 0.0
    added = row.added_sessions or 0.0
    slower = mean >= base_mean * t.time_ratio and mean - base_mean >= t.min_time_delta_ms
    if not slower or added < t.impact_block_aas:
        return None
    bpc, base_bpc = row.buffers_per_call or 0.0, row.base_buffers_per_call
    if base_bpc is not None and bpc >= base_bpc * t.buffers_ratio and bpc - base_bpc >= t.min_buffers_delta:
        return "regressed"
    if mean >= base_mean * t.same_plan_block_ratio and mean - base_mean >= t.same_plan_block_ms:
        return "slower"
    return None


def _reason(row: Row, kind: str | None) -> str:
    """The figures behind the judgement, in one line."""
    mean, base_mean = row.mean_ms or 0.0, row.base_mean_ms or 0.0
    text = f"{_ms(base_mean)} → {_ms(mean)} ({_ratio(mean / base_mean if base_mean else float('inf'))})"
    if row.base_buffers_per_call is not None:
        text += f", buffers/call {row.base_buffers_per_call:,.0f} → {row.buffers_per_call or 0:,.0f}"
    text += f", +{row.added_sessions or 0:.2f} active sessions at {row.rate:.1f} calls/s"
    return text + (" (same work per call)" if kind == "slower" else "")


def _ms(v: float) -> str:
    return f"{v:,.2f} ms" if v < 100 else f"{v:,.0f} ms"


def _ratio(r: float) -> str:
    return "∞×" if r == float("inf") else (f"{r:,.1f}×" if r < 100 else f"{r:,.0f}×")


def observe(state: WatchState, number_at: str, seconds: float, since_start_s: float,
            by_statement: Mapping[StatementKey, tuple[Counters, str]], *, counted: bool = True,
            events: Sequence[str] = (), activity: Mapping[str, object] | None = None,
            capacity: float | None = None, causes: Mapping[StatementKey, tuple[Cause, ...]] | None = None,
            plan_notes: Mapping[StatementKey, str] | None = None,
            watch_load: Mapping[str, float] | None = None) -> Interval:
    """Judge one interval (``by_statement``: each statement's counters and text) and carry the
    state forward; the interval, with the call."""
    o, t = state.options, state.thresholds
    state.number += 1
    causes = causes or {}
    plan_notes = plan_notes or {}
    if not counted:
        # No figures: the call stays what the confirmed regressions, as last seen, say.
        interval = Interval(state.number, number_at, seconds, since_start_s, (), 0.0, 0,
                            _call(state, _open(state, ()), capacity, since_start_s, activity), tuple(events),
                            False, activity, capacity, watch_load)
        state.remember(interval)
        return interval
    total = sum(c.exec_ms for c, _ in by_statement.values()) / 1000 / seconds
    rows: list[Row] = []
    for key, (c, text) in by_statement.items():
        base = state.baseline.find(key)
        track = state.tracks.setdefault(key, _Track())
        track.last_seen = state.number
        load = c.exec_ms / 1000 / seconds
        row = Row(key[0], key[1], text, base is not None, c.calls, c.calls / seconds, c.mean_ms,
                  c.buffers_per_call, c.rows_per_call, load, load / total if total else 0.0)
        if base is None:
            row = replace(row, state="new", reason="not in the baseline: new on NEW (or not captured on OLD)")
        else:
            row = replace(row, base_rate=base.calls_per_second, base_mean_ms=base.mean_ms,
                          base_buffers_per_call=base.buffers_per_call, base_rows_per_call=base.rows_per_call,
                          added_sessions=row.rate * ((c.mean_ms or 0) - base.mean_ms) / 1000)
            if c.calls < o.min_calls:
                row = replace(row, state="few_calls", reason=f"{c.calls} calls: too few to judge")
            else:
                bad = _judge(row, t)
                reason = _reason(row, bad)
                if bad:
                    track.bad += 1
                    track.good = 0
                    track.kind = bad
                    if track.bad >= o.confirm:
                        track.confirmed = True
                        state.ever_confirmed = True
                else:
                    track.bad = 0
                    if track.confirmed:
                        track.good += 1
                        if track.good >= o.confirm:
                            track.confirmed = False
                            track.good = 0
                state_name = (track.kind if track.confirmed and bad else
                              "recovering" if track.confirmed else "suspect" if bad else "ok")
                row = replace(row, state=state_name, streak=track.bad, reason=reason)
        row = replace(row, causes=causes.get(key, ()), plan_note=plan_notes.get(key))
        track.row = row
        rows.append(row)
    rows.sort(key=lambda r: (-r.load, r.fingerprint))
    shown = rows[:o.top] + [r for r in rows[o.top:] if r.state not in ("ok", "new", "few_calls")]
    interval = Interval(state.number, number_at, seconds, since_start_s, tuple(shown), total, len(rows),
                        _call(state, _open(state, rows), capacity, since_start_s, activity), tuple(events),
                        True, activity, capacity, watch_load)
    state.remember(interval)
    state.forget()
    return interval


def with_causes(state: WatchState, interval: Interval, causes: Mapping[StatementKey, tuple[Cause, ...]],
                plan_notes: Mapping[StatementKey, str]) -> Interval:
    """The interval with its statements' causes and plan notes attached, and the call made again
    with them (the causes are found after the figures: only bad statements are looked into)."""
    def attach(row: Row) -> Row:
        return replace(row, causes=causes.get(row.key, row.causes),
                       plan_note=plan_notes.get(row.key, row.plan_note))

    rows = tuple(attach(r) for r in interval.rows)
    for key, track in state.tracks.items():
        if track.row is not None and (key in causes or key in plan_notes):
            track.row = attach(track.row)
    call = _call(state, _open(state, rows), interval.capacity, interval.since_start_s, interval.activity)
    return replace(interval, rows=rows, call=call)


def _open(state: WatchState, rows: Sequence[Row]) -> list[Row]:
    """The confirmed regressions: those in ``rows``, and those that did not run this interval,
    as last seen (a regression does not clear by going quiet)."""
    ran = {r.key for r in rows}
    return [r for r in rows if r.confirmed or r.state == "recovering"] + [
        tr.row for k, tr in state.tracks.items() if tr.confirmed and k not in ran and tr.row]


def _call(state: WatchState, confirmed: Sequence[Row], capacity: float | None, since_start_s: float,
          activity: Mapping[str, object] | None) -> Call:
    o = state.options
    if not confirmed:
        state.rollback = None
        if state.number <= 1 and not state.ever_confirmed:
            return Call(OK if state.number >= 1 else STARTING, "no regression")
        return (Call(RECOVERED, "every confirmed regression has cleared: NEW is back at the baseline")
                if state.ever_confirmed else Call(OK, "no regression against the baseline"))
    confirmed = sorted(confirmed, key=lambda r: -(r.added_sessions or 0))
    worst = confirmed[0]
    added = sum(max(r.added_sessions or 0.0, 0.0) for r in confirmed)
    fixes = tuple(dict.fromkeys(c.fix for r in confirmed for c in r.causes if c.fix))
    cause = worst.causes[0].text if worst.causes else "cause not found in NEW's catalog or plan"
    summary = (f"statement {worst.short_id} ({short_query(worst.query)}) {worst.reason}; cause: {cause}"
               + (f"; fix: {' '.join(fixes)}" if fixes else ""))
    evidence = [f"{len(confirmed)} confirmed regression(s) add {added:.2f} active sessions"]
    if capacity:
        what = "cores" if o.cores else "connections the application may open"
        evidence.append(f"capacity {capacity:g} ({what}): {added / capacity:.0%} of it")
    if activity is not None:
        evidence.append(f"{activity.get('active')} client sessions active, {activity.get('waiting_lock')} "
                        f"waiting on locks, {activity.get('waiting_io')} on IO")
    if capacity and added >= o.rollback_share * capacity and since_start_s <= o.rollback_window_s:
        state.rollback = (f"the regressions added {added:.1f} active sessions, {added / capacity:.0%} "
                          f"of NEW's capacity ({capacity:g}), {since_start_s / 60:.0f} min after the cutover")
    if state.rollback:
        # Recommended once, it stands while the regression does: a rollback call that flickers
        # with each interval's rate helps nobody decide.
        return Call(ROLLBACK, f"{state.rollback}; {summary}", fixes, tuple(evidence))
    return Call(REGRESSION, summary, fixes, tuple(evidence))


def short_query(query: str, limit: int = 60) -> str:
    """A statement on one line, cut to ``limit`` characters."""
    one = " ".join(query.split())
    return one if len(one) <= limit else one[:limit - 1] + "…"


# -- root causes ---------------------------------------------------------------------


def _relations_of(snapshot: ClusterSnapshot | None) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Index name (qualified and as EXPLAIN prints it) -> table; sequence -> tables it serves."""
    index_table: dict[str, str] = {}
    seq_tables: dict[str, set[str]] = {}
    if snapshot and snapshot.indexes:
        for ix in snapshot.indexes.indexes:
            index_table[ix.name] = ix.table
            index_table[ix.relname] = ix.table
    if snapshot and snapshot.sequences:
        for seq in snapshot.sequences.sequences:
            seq_tables[seq.name] = {c.table for c in seq.columns}
    return index_table, seq_tables


def link_findings(tables: Iterable[str], findings: Sequence[Finding],
                  snapshots: Sequence[ClusterSnapshot | None],
                  used_on_new: Iterable[str] = ()) -> tuple[Cause, ...]:
    """The readiness findings about the tables a statement touches (and the indexes its NEW plan
    uses), as causes, statistics first; matched by their typed subjects, never by their text."""
    wanted = set(tables)
    used = set(used_on_new)
    index_table: dict[str, str] = {}
    seq_tables: dict[str, set[str]] = {}
    for snap in snapshots:
        i, s = _relations_of(snap)
        index_table.update(i)
        for k, v in s.items():
            seq_tables.setdefault(k, set()).update(v)
    out: list[tuple[int, Cause]] = []
    for f in findings:
        if f.kind not in CAUSE_ORDER or f.subject is None or f.severity == "info":
            continue
        name = f.subject.name
        if f.subject.type == "table":
            hit = name in wanted
        elif f.subject.type == "index":
            hit = index_table.get(name) in wanted or name in used or name.split(".")[-1] in used
        elif f.subject.type == "sequence":
            hit = bool(seq_tables.get(name, set()) & wanted)
        else:
            hit = False
        if hit:
            # The first statement of the remediation: what to run now (a harmful index's
            # "drop it if NEW still prefers it" comes after its ANALYZE, and only then).
            first = next((ln.strip() for ln in f.remediation.splitlines()
                          if ln.strip() and not ln.strip().startswith("--")), None)
            out.append((CAUSE_ORDER.index(f.kind), Cause(f.kind, f.headline.rstrip("."), first)))
    out.sort(key=lambda x: x[0])
    return tuple(dict.fromkeys(c for _, c in out))
