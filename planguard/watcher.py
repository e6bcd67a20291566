"""``watch``: NEW after the cutover, against OLD's captured baseline, interval by interval (I/O).

One connection, read-only (``default_transaction_read_only``), with ``application_name``,
a short ``statement_timeout`` and ``lock_timeout``.  Each interval it reads NEW's
``pg_stat_statements`` counters (without their texts: a text is read once, when its entry
first appears) and ``pg_stat_activity`` by wait event, and judges the deltas
(``planguard.watch``, pure).  It adds as little as it can to a struggling cluster:

- NEW's catalog is read once at the start, and again at most every ``explain_every_s`` while a
  regression is open (to see a fix land), never more;
- a statement that turns bad gets at most one plain ``EXPLAIN`` (never ANALYZE: nothing runs)
  per ``explain_every_s``, and at most ``MAX_EXPLAINS`` per interval, compared with OLD's plan
  from the baseline;
- what the watch itself costs is measured: planguard's own statements' calls and server time
  from ``pg_stat_statements`` (the watch's, and any other planguard session's at the time),
  and the client's time waiting on them.

A lost connection (NEW restarting, a network cut) is said and retried every interval; the
first reading after it is a new starting point.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

import psycopg

from planguard import db, explain, planning
from planguard.catalog.activity import read_activity, read_counters, read_texts
from planguard.catalog.readiness import gather_all
from planguard.checks.readiness import ClusterSnapshot, evaluate_all
from planguard.config import Thresholds
from planguard.diff import diff_plans
from planguard.errors import ConnectionFailed, PlanguardError, WorkloadError, one_line
from planguard.findings import Finding
from planguard.interrupt import Stop
from planguard.params import ParseFailure, statement_fingerprint
from planguard.plan import Plan, PlanFormatError, indexes_used, parse_plan, relations, shape_fingerprint
from planguard.statdelta import Counters, EntryKey, delta
from planguard.watch import (
    REGRESSION,
    ROLLBACK,
    Baseline,
    Cause,
    Interval,
    StatementKey,
    WatchOptions,
    WatchState,
    link_findings,
    observe,
    with_causes,
)
from planguard.workload import Statement, Workload

# Session limits of the watch: it must never be what waits on a lock or runs long.
LIMITS = db.SessionLimits(statement_timeout_ms=2_000, lock_timeout_ms=100, idle_in_transaction_ms=10_000)
# Statements whose cause is looked for: bad this interval, or a confirmed regression.
LOOKED_INTO = ("suspect", "regressed", "slower", "recovering")
MAX_EXPLAINS = 3  # plain EXPLAINs per interval at most, worst statements first
TEXT_CACHE = 20_000  # entries whose text and statement are remembered (LRU)
OWN = "planguard"  # the statement key's database for planguard's own entries


@dataclass
class WatchResult:
    """How the watch ended: the last interval, the state's history, and why it stopped."""

    state: WatchState
    last: Interval | None
    stopped: str
    regression: bool = False  # a confirmed regression was open when it stopped
    explains: int = 0
    catalog_reads: int = 0
    reconnects: int = 0
    started_at: str = ""
    dsn: str = ""
    events: list[str] = field(default_factory=list)


class _Session:
    """The watch's one connection to NEW, reopened when lost."""

    def __init__(self, dsn: str, limits: db.SessionLimits) -> None:
        self.dsn, self.limits = dsn, limits
        self.conn: psycopg.Connection | None = None
        self.client_ms = 0.0

    def open(self) -> psycopg.Connection:
        conn = db.connect(self.dsn, label="new", limits=self.limits, connect_timeout=5)
        conn.execute("SET default_transaction_read_only = on")
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None

    @contextlib.contextmanager
    def timed(self) -> Iterator[psycopg.Connection]:
        assert self.conn is not None
        t0 = time.monotonic()
        try:
            yield self.conn
        finally:
            self.client_ms += (time.monotonic() - t0) * 1000


def _old_snapshot(workload: Workload, database: str) -> ClusterSnapshot | None:
    """OLD's catalog of the database watched: the one of that name, else the baseline's only one
    (a database renamed in the move)."""
    data = workload.catalog.get(database)
    if data is None and len(workload.catalog) == 1:
        data = next(iter(workload.catalog.values()))
    if data is None:
        return None
    try:
        return ClusterSnapshot.from_dict(data)
    except PlanguardError:
        return None


def _old_plan(stmt: Statement) -> Plan | None:
    if not stmt.plan:
        return None
    try:
        return parse_plan(stmt.plan)
    except PlanFormatError:
        return None


def plan_note(old: Plan | None, new: Plan) -> str:
    """What NEW's plan does against OLD's, in one line."""
    if old is None:
        return "NEW's plan: " + ", ".join(n.label for n in new.nodes() if n.relation)[:200] + \
            " (OLD's plan is not in the baseline: capture it again with this planguard)"
    if shape_fingerprint(old) == shape_fingerprint(new):
        return "same plan shape as OLD's"
    changes = diff_plans(old, new)
    return "NEW's plan differs from OLD's: " + "; ".join(c.detail for c in changes[:4])


def watch(dsn: str, workload: Workload, *, options: WatchOptions | None = None,
          thresholds: Thresholds | None = None, duration_s: float | None = None,
          exit_on_regression: bool = False, stop: Stop | None = None,
          emit: Callable[[Interval], None] | None = None, say: Callable[[str], None] | None = None,
          cutover_at: datetime | None = None, limits: db.SessionLimits | None = None) -> WatchResult:
    """Watch NEW against ``workload`` (OLD's baseline) until ``duration_s``, a stop, or (with
    ``exit_on_regression``) a confirmed regression; every interval is handed to ``emit``."""
    o = options or WatchOptions()
    t = thresholds or Thresholds()
    stop = stop or Stop()
    tell = say or (lambda _m: None)
    if not workload.statements:
        raise WorkloadError("the baseline holds no statements: capture it from OLD first")
    state = WatchState(o, t, Baseline.of(workload))
    session = _Session(dsn, limits or LIMITS)
    conn = session.open()  # the first connection's failure is the user's error (exit 2)
    database = str(conn.info.dbname)
    version = db.server_version_num(conn)
    started = datetime.now(timezone.utc)
    cutover = cutover_at or started
    result = WatchResult(state, None, "", started_at=started.isoformat(timespec="seconds"),
                         dsn=db.redact_dsn(dsn))
    old_snap = _old_snapshot(workload, database)
    texts: OrderedDict[EntryKey, tuple[StatementKey, str] | None] = OrderedDict()
    last_explain: dict[StatementKey, float] = {}
    plans: dict[StatementKey, tuple[Plan | None, str]] = {}
    new_snap: ClusterSnapshot | None = None
    findings: list[Finding] = []
    catalog_at = 0.0

    def read_catalog() -> None:
        nonlocal new_snap, catalog_at
        with session.timed() as c:
            new_snap = gather_all(c)
        catalog_at = time.monotonic()
        result.catalog_reads += 1
        refresh_findings()

    def refresh_findings() -> None:
        nonlocal findings
        if old_snap is None or new_snap is None:
            findings = []
            return
        used = frozenset(ix for p, _ in plans.values() if p is not None for ix in indexes_used(p))
        findings = evaluate_all(old_snap, new_snap, t, used_on_new=used)

    def statement_of(key: EntryKey, text: str, dbname: str) -> tuple[StatementKey, str] | None:
        if db.is_own(text):
            return (OWN, "planguard"), text
        try:
            return (dbname, statement_fingerprint(text)), text
        except ParseFailure:
            return None

    def learn(keys: list[EntryKey]) -> None:
        unknown = [k for k in keys if k not in texts]
        if unknown:
            with session.timed() as c:
                got = read_texts(c, unknown)
            for k in unknown:
                texts[k] = statement_of(k, *got[k]) if k in got else None
        for k in keys:
            texts.move_to_end(k)
        while len(texts) > TEXT_CACHE:
            texts.popitem(last=False)

    def explain_bad(interval: Interval) -> dict[StatementKey, tuple[Cause, ...]]:
        now = time.monotonic()
        done = 0
        bad = sorted((r for r in interval.rows if r.state in LOOKED_INTO),
                     key=lambda r: -(r.added_sessions or 0))
        if bad and old_snap is not None and now - catalog_at >= o.explain_every_s:
            read_catalog()
        for r in bad:
            base = state.baseline.find(r.key)
            if base is None or r.database != database or done >= MAX_EXPLAINS:
                continue
            if now - last_explain.get(r.key, -1e9) < o.explain_every_s:
                continue
            last_explain[r.key] = now
            done += 1
            result.explains += 1
            try:
                with session.timed() as c:
                    new_plan = planning.statement_plan(c, base, version)
                plans[r.key] = (new_plan, plan_note(_old_plan(base), new_plan))
            except explain.QueryFailed as exc:
                plans[r.key] = (None, f"plain EXPLAIN on NEW failed: {exc}")
        if done:
            refresh_findings()
        out: dict[StatementKey, tuple[Cause, ...]] = {}
        for r in bad:
            base = state.baseline.find(r.key)
            if base is None:
                continue
            got, note = plans.get(r.key, (None, ""))
            tables = set(base.tables) | (set(relations(got)) if got else set())
            causes = link_findings(tables, findings, (old_snap, new_snap), indexes_used(got) if got else ())
            if note and note.startswith("NEW's plan differs"):
                causes += (Cause("plan_changed", note),)
            out[r.key] = causes
        return out

    with session.timed() as c:
        previous = read_counters(c)
    if old_snap is None:
        result.events.append(f"the baseline holds no catalog of database {database!r}: causes from NEW's "
                             "plans only")
    else:
        read_catalog()
    tell(f"watching {result.dsn} every {o.interval_s:g} s against {len(workload.statements)} baseline "
         f"statements")
    deadline = None if duration_s is None else time.monotonic() + duration_s
    next_at = time.monotonic() + o.interval_s
    pending: list[str] = list(result.events)
    stop.active = True
    try:
        while True:
            wait_s = next_at - time.monotonic()
            if deadline is not None:
                wait_s = min(wait_s, deadline - time.monotonic())
            if stop.wait(max(wait_s, 0.0)):
                result.stopped = stop.reason or "stopped"
                break
            if deadline is not None and time.monotonic() >= deadline - 1e-3 and next_at > deadline:
                result.stopped = f"--duration {duration_s:g} s reached"
                break
            next_at += o.interval_s
            since = (datetime.now(timezone.utc) - cutover).total_seconds()
            try:
                if session.conn is None or session.conn.closed:
                    session.open()
                    result.reconnects += 1
                    with session.timed() as c:
                        fresh = read_counters(c)
                    note = (f"; NEW restarted (postmaster started {fresh.started})"
                            if fresh.started != previous.started else "")
                    pending.append(f"reconnected to NEW{note}; counting starts again from this reading")
                    previous = fresh
                    interval = observe(state, fresh.wall, o.interval_s, since, {}, counted=False,
                                       events=pending)
                    pending = []
                    _emit(emit, interval, result)
                    continue
                client_before = session.client_ms
                with session.timed() as c:
                    current = read_counters(c)
                d = delta(previous, current)
                learn(list(d.entries))
                previous = current
                with session.timed() as c:
                    activity = read_activity(c)
                by_statement: dict[StatementKey, tuple[Counters, str]] = {}
                own = Counters()
                for key, counters in d.entries.items():
                    known = texts.get(key)
                    if known is None:
                        continue
                    skey, text = known
                    if skey[0] == OWN:
                        own = own + counters
                        continue
                    prior = by_statement.get(skey)
                    by_statement[skey] = (prior[0] + counters, prior[1]) if prior else (counters, text)
                capacity = float(o.cores) if o.cores else float(activity.capacity)
                interval = observe(state, current.wall, d.seconds, since, by_statement, counted=d.counted,
                                   events=[*pending, *d.events], activity=asdict(activity), capacity=capacity)
                pending = []
                causes = explain_bad(interval)
                notes = {k: n for k, (_, n) in plans.items()}
                interval = with_causes(state, interval, causes, notes)
                interval = replace(interval, watch_load={
                    "queries": float(own.calls), "server_ms": round(own.exec_ms, 3),
                    "client_ms": round(session.client_ms - client_before, 3)})
                state.history[-1] = interval
                _emit(emit, interval, result)
                if exit_on_regression and interval.call.verdict in (REGRESSION, ROLLBACK):
                    result.stopped = "a confirmed regression (--exit-on-regression)"
                    break
            except (psycopg.OperationalError, ConnectionFailed, psycopg.InterfaceError) as exc:
                lost = one_line(exc, last=True)
                session.close()
                interval = observe(state, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   o.interval_s, since, {}, counted=False,
                                   events=[*pending, f"lost the connection to NEW ({lost}); reconnecting "
                                                     "every interval"])
                pending = []
                _emit(emit, interval, result)
    finally:
        stop.active = False
        session.close()
    if result.last is not None:
        result.regression = result.last.call.verdict in (REGRESSION, ROLLBACK)
    return result


def _emit(emit: Callable[[Interval], None] | None, interval: Interval, result: WatchResult) -> None:
    result.last = interval
    result.events.extend(interval.events)
    del result.events[:-200]
    if emit is not None:
        emit(interval)
