"""``rehearse``: the captured workload replayed on NEW under production load (I/O).

NEW only.  Open-loop: calls arrive at the captured rates times ``rate`` (Poisson, seeded:
``planguard.rehearsal.arrivals``) whether or not NEW keeps up, the way an application's users
do; each call takes a connection from a bounded pool (``psycopg_pool.AsyncConnectionPool``,
psycopg's asyncio API) and gives up after ``pool_timeout_s``, like an application's pool.

Safety, per call:

- a read runs alone in its session, which is ``default_transaction_read_only``: READ ONLY;
- a write (or a ``SELECT ... FOR UPDATE``) runs in ``BEGIN READ WRITE ... ROLLBACK``, always
  rolled back, under a short ``lock_timeout``: it never waits long behind a row lock, and no
  row it wrote is ever committed;
- every session has a ``statement_timeout``; text that is not exactly one statement is refused.

What stays behind is only what a rollback cannot take back: sequence values drawn by
rolled-back INSERTs, WAL, dead tuples of rolled-back writes (autovacuum may then run on
NEW), and statistics counters (``pg_stat_statements``, ``pg_stat_*``).

Before anything runs, NEW's client sessions that are not planguard's are counted: above
``max_other_sessions`` it looks like production and the rehearsal is refused unless asked
for (``allow_production``).  A stop (Ctrl-C, SIGTERM) cancels every call in flight on the
server (the protocol cancel, then ``pg_cancel_backend`` on any replay session still
active), rolls their transactions back and closes the pool, within about a second.

A separate monitoring session (planguard's own) reads ``pg_stat_activity`` every second and
``pg_stat_statements`` before and after each step; after the steps, NEW's catalog and a plain
``EXPLAIN`` (never executed) of each statement named in a reason give its causes and fixes,
matched the way the watch matches them (``planguard.watch.link_findings``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

from planguard import db, planning
from planguard.catalog.activity import read_activity, read_counters, read_texts
from planguard.catalog.readiness import gather_all
from planguard.checks.readiness import ClusterSnapshot, evaluate_all
from planguard.config import Thresholds
from planguard.errors import PlanguardError, WorkloadError, one_line
from planguard.explain import QueryFailed, needs_rollback
from planguard.interrupt import Stop
from planguard.params import ParseFailure, render, statement_fingerprint
from planguard.plan import indexes_used, relations
from planguard.rehearsal import (
    CANCELLED,
    LOCK_TIMEOUT,
    NOT_RUN,
    POOL_TIMEOUT,
    Arrival,
    Outcome,
    Plan,
    Rehearsal,
    RehearseOptions,
    Step,
    Tick,
    arrivals,
    judge,
    plan_rehearsal,
)
from planguard.safety import one_statement
from planguard.statdelta import Counters, Reading, delta
from planguard.tally import tally
from planguard.watch import Cause, link_findings
from planguard.watcher import _old_plan, _old_snapshot, plan_note
from planguard.workload import Workload

REPLAY_APP = "planguard rehearse"  # the replay's sessions: counted as load on NEW, not as planguard's
MONITOR_LIMITS = db.SessionLimits(statement_timeout_ms=5_000, lock_timeout_ms=100,
                                  idle_in_transaction_ms=10_000)
MAX_EXPLAINS = 10  # plain EXPLAINs for causes, after the replay
TICK_S = 1.0


class Refused(PlanguardError):
    """NEW looks like production (or cannot be rehearsed on): nothing was run."""


@dataclass(frozen=True)
class Progress:
    step: int
    steps: int
    rate: float
    second: int
    seconds: int
    served: int
    arrived: int
    waiting: int


def _error_class(exc: BaseException) -> str:
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return LOCK_TIMEOUT
    if isinstance(exc, psycopg.errors.QueryCanceled):
        # planguard's own cancel at the end of a step (pg_cancel_backend) is not the statement's failure
        return CANCELLED if "user request" in str(exc) else "statement timeout (57014)"
    if isinstance(exc, psycopg.OperationalError) and not getattr(exc, "sqlstate", None):
        return "connection lost"
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} ({state})" if state else type(exc).__name__


def _checked(rendered: tuple[str, tuple[str | None, ...]]) -> tuple[str, tuple[str | None, ...]] | None:
    return rendered if one_statement(rendered[0]) else None


def refusal(activity_sessions: int, active: int, limit: int) -> str | None:
    if activity_sessions <= limit:
        return None
    return (f"NEW has {activity_sessions} client sessions that are not planguard's ({active} active): it "
            f"looks like production (more than {limit}). A rehearsal adds the whole captured load: run it "
            "on NEW before the cutover, or pass --i-know-this-is-production")


class _Replay:
    """One rehearsal's pool, monitoring session and steps."""

    def __init__(self, dsn: str, plan: Plan, opts: RehearseOptions, stop: Stop,
                 monitor: psycopg.Connection, progress: Callable[[Progress], None] | None) -> None:
        self.dsn, self.plan, self.opts, self.stop = dsn, plan, opts, stop
        self.monitor, self.progress = monitor, progress
        self.database = str(monitor.info.dbname)
        self.writes = [needs_rollback(t.statement.query) for t in plan.targets]
        # Every call's text and values, rendered and checked once here, not on each call: a
        # text that is not exactly one statement is refused (None) and never sent.
        self.texts = [[_checked(render(t.statement.query, t.statement.bindings, ps.values))
                       for ps in t.statement.param_sets] or [_checked((t.statement.query, ()))]
                      for t in plan.targets]
        self.pgss = True
        self.notes: list[str] = []
        self.stopped: str | None = None

    # -- the pool ---------------------------------------------------------------------------

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        o = self.opts
        for name, value in (("default_transaction_read_only", "on"),
                            ("statement_timeout", f"{o.statement_timeout_ms}ms"),
                            ("lock_timeout", f"{o.lock_timeout_ms}ms"),
                            ("idle_in_transaction_session_timeout", "10s")):
            await conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))

    def _pool(self) -> AsyncConnectionPool:
        info = make_conninfo(self.dsn, application_name=REPLAY_APP, connect_timeout="10")
        n = self.plan.connections
        return AsyncConnectionPool(
            info, min_size=n, max_size=n, open=False, configure=self._configure, name="planguard-rehearse",
            timeout=self.opts.pool_timeout_s, max_waiting=0,
            kwargs={"autocommit": True, "cursor_factory": psycopg.AsyncRawCursor})

    async def _execute(self, conn: psycopg.AsyncConnection, target: int, params: int) -> None:
        rendered = self.texts[target][params]
        if rendered is None:
            raise QueryFailed("refused: the text is not exactly one statement")
        text, binds = rendered
        if not self.writes[target]:
            await conn.execute(text, binds or None)
            return
        await conn.execute("BEGIN READ WRITE")
        try:
            await conn.execute(text, binds or None)
        finally:
            if not conn.closed:
                await conn.execute("ROLLBACK")

    async def _call(self, pool: AsyncConnectionPool, a: Arrival, t0: float, out: list[Outcome],
                    sent: float) -> None:
        loop = asyncio.get_running_loop()
        start: float | None = None
        error: str | None = None
        try:
            wait = max(self.opts.pool_timeout_s - (sent - a.at), 0.001)
            async with pool.connection(timeout=wait) as conn:
                start = loop.time() - t0
                try:
                    await self._execute(conn, a.target, a.params)
                except (psycopg.Error, QueryFailed) as exc:
                    error = _error_class(exc)
        except (PoolTimeout, TooManyRequests):
            error = POOL_TIMEOUT
        except asyncio.CancelledError:
            out.append(Outcome(a.target, a.at, start, loop.time() - t0,
                               CANCELLED if start is not None else NOT_RUN, sent))
            raise
        except psycopg.OperationalError as exc:  # the pool could not open a connection
            error = _error_class(exc)
        out.append(Outcome(a.target, a.at, start, loop.time() - t0, error, sent))

    # -- monitoring -------------------------------------------------------------------------

    def _sample(self) -> tuple[int | None, int | None]:
        try:
            row = self.monitor.execute(db.MARK + """
                SELECT count(*) FILTER (WHERE state = 'active'),
                       count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock')
                FROM pg_stat_activity WHERE application_name = %s""", (REPLAY_APP,)).fetchone()
        except psycopg.Error:
            return None, None
        assert row is not None
        return int(row[0]), int(row[1])

    def _cancel_leftovers(self) -> None:
        """Cancel (never terminate) any replay session still running a statement on NEW."""
        with contextlib.suppress(psycopg.Error):
            self.monitor.execute(db.MARK + """
                SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                WHERE application_name = %s AND state <> 'idle' AND pid <> pg_backend_pid()""", (REPLAY_APP,))

    def _server_delta(self, before: Reading, after: Reading) -> dict[int, Counters]:
        """NEW's pg_stat_statements delta over a step, by target (matched by fingerprint)."""
        d = delta(before, after)
        got = read_texts(self.monitor, list(d.entries)) if d.entries else {}
        by_fp = {t.statement.fingerprint: t.index for t in self.plan.targets}
        out: dict[int, Counters] = {}
        for key, counters in d.entries.items():
            if key not in got:
                continue
            text, dbname = got[key]
            if dbname != self.database or db.is_own(text):
                continue
            try:
                fp = statement_fingerprint(text)
            except ParseFailure:
                continue
            if fp in by_fp:
                i = by_fp[fp]
                out[i] = out.get(i, Counters()) + counters
        return out

    # -- one step ---------------------------------------------------------------------------

    async def step(self, pool: AsyncConnectionPool, number: int, steps: int, rate: float) -> Step:
        o = self.opts
        loop = asyncio.get_running_loop()
        before: Reading | None = None
        if self.pgss:
            try:
                before = await asyncio.to_thread(read_counters, self.monitor)
            except PlanguardError as exc:
                self.pgss = False
                self.notes.append(f"NEW's pg_stat_statements cannot be read ({one_line(exc)}): server-side "
                                  "figures are missing; a slower statement is judged by its calls only")
        outcomes: list[Outcome] = []
        ticks: list[Tick] = []
        tasks: set[asyncio.Task[None]] = set()
        cpu0, wall0 = time.process_time(), time.monotonic()
        t0 = loop.time()
        seconds = int(o.duration_s)
        stopped: str | None = None

        async def sampler() -> None:
            second = 0
            seen = served = 0
            while True:
                second += 1
                await asyncio.sleep(max(t0 + second * TICK_S - loop.time(), 0))
                stats = pool.get_stats()
                in_use = stats.get("pool_size", 0) - stats.get("pool_available", 0)
                active, locks = await asyncio.to_thread(self._sample)
                done = outcomes[seen:]
                seen = len(outcomes)
                served += sum(1 for x in done if x.error is None)
                lat = sorted((x.end - x.at) * 1000 for x in done if x.start is not None)
                p95 = lat[min(int(0.95 * len(lat)), len(lat) - 1)] if lat else None
                # A tick's arrivals are counted at the end, when every call of the second is known.
                ticks.append(Tick(second, 0, len(done), in_use, stats.get("requests_waiting", 0),
                                  active, locks, round(p95, 3) if p95 is not None else None))
                if self.progress is not None:
                    self.progress(Progress(number, steps, rate, min(second, seconds), seconds, served, seen,
                                           stats.get("requests_waiting", 0)))

        sampling = asyncio.create_task(sampler())
        try:
            for a in arrivals(self.plan.targets, rate, o.duration_s, o.seed + number):
                delay = t0 + a.at - loop.time()
                if delay > 0:
                    await self._sleep(delay)
                if self.stop.requested:
                    stopped = self.stop.reason or "stopped"
                    break
                task = asyncio.create_task(self._call(pool, a, t0, outcomes, loop.time() - t0))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if stopped is None:
                await self._sleep(max(t0 + o.duration_s - loop.time(), 0))
                stopped = self.stop.reason if self.stop.requested else None
            if stopped is None and tasks:
                # Let the calls in flight finish, no longer than a call may wait for a connection.
                await asyncio.wait(set(tasks), timeout=o.pool_timeout_s + 1)
                stopped = self.stop.reason if self.stop.requested else None
        finally:
            leftover = [t for t in tasks if not t.done()]
            if leftover:
                # The server first (pg_cancel_backend on the replay's busy sessions), then the tasks:
                # each cancelled call's transaction rolls back and its connection returns to the pool.
                await asyncio.to_thread(self._cancel_leftovers)
                for t in leftover:
                    t.cancel()
                await asyncio.wait(leftover, timeout=1.0)
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        # Each tick's arrivals, exact now that every call is known.
        per_second = Tally(int(x.at) + 1 for x in outcomes)
        ticks = [replace(tk, arrived=per_second.get(tk.second, 0)) for tk in ticks]
        server = None
        if self.pgss and before is not None:
            try:
                after = await asyncio.to_thread(read_counters, self.monitor)
                server = await asyncio.to_thread(self._server_delta, before, after)
            except (PlanguardError, psycopg.Error) as exc:
                self.notes.append(f"NEW's pg_stat_statements after step {number}: {one_line(exc)}")
        return tally(self.plan, rate, o.duration_s, outcomes, ticks, server, o, cpu, wall, stopped)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking within 100 ms of a stop request."""
        end = asyncio.get_running_loop().time() + seconds
        while not self.stop.requested:
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.1))

    async def run(self) -> list[Step]:
        pool = self._pool()
        steps: list[Step] = []
        try:
            try:
                await pool.open(wait=True, timeout=30)
            except PoolTimeout as exc:
                raise PlanguardError(f"cannot open {self.plan.connections} connections to NEW "
                                     f"({db.redact_dsn(self.dsn)}) within 30 s") from exc
            rates = self.opts.rates
            for i, rate in enumerate(rates, 1):
                s = await self.step(pool, i, len(rates), rate)
                steps.append(s)
                if s.stopped or (len(rates) > 1 and not s.held):
                    break
        finally:
            await pool.close(timeout=1.0)
        return steps


def _causes(monitor: psycopg.Connection, workload: Workload, keys: list[str], plan: Plan,
            t: Thresholds) -> tuple[dict[str, tuple[Cause, ...]], list[str]]:
    """Each named statement's causes: NEW's catalog against OLD's, and NEW's plain EXPLAIN."""
    database = str(monitor.info.dbname)
    old_snap = _old_snapshot(workload, database)
    notes: list[str] = []
    by_key = {tg.statement.key: tg.statement for tg in plan.targets}
    version = db.server_version_num(monitor)
    plans = {}
    for key in keys[:MAX_EXPLAINS]:
        stmt = by_key.get(key)
        if stmt is None:
            continue
        try:
            plans[key] = planning.statement_plan(monitor, stmt, version)
        except QueryFailed as exc:
            notes.append(f"plain EXPLAIN of {stmt.short_id} on NEW failed: {exc}")
    if old_snap is None:
        notes.append(f"the workload holds no catalog of database {database!r}: causes from NEW's plans only")
        findings = []
        new_snap: ClusterSnapshot | None = None
    else:
        new_snap = gather_all(monitor)
        used = frozenset(ix for p in plans.values() for ix in indexes_used(p))
        findings = evaluate_all(old_snap, new_snap, t, used_on_new=used)
    out: dict[str, tuple[Cause, ...]] = {}
    for key in keys:
        stmt = by_key.get(key)
        if stmt is None:
            continue
        got = plans.get(key)
        tables = set(stmt.tables) | (set(relations(got)) if got else set())
        causes = link_findings(tables, findings, (old_snap, new_snap), indexes_used(got) if got else ())
        if got is not None:
            note = plan_note(_old_plan(stmt), got)
            if note.startswith("NEW's plan differs"):
                causes += (Cause("plan_changed", note),)
        out[key] = causes
    return out, notes


def rehearse(dsn: str, workload: Workload, *, options: RehearseOptions | None = None,
             thresholds: Thresholds | None = None, allow_production: bool = False, stop: Stop | None = None,
             progress: Callable[[Progress], None] | None = None,
             say: Callable[[str], None] | None = None) -> Rehearsal:
    """Replay ``workload`` on NEW (``dsn``) and judge it; raises ``Refused`` before anything runs
    when NEW looks like production and ``allow_production`` is not given."""
    o = options or RehearseOptions()
    t = thresholds or Thresholds()
    stop = stop or Stop()
    tell = say or (lambda _m: None)
    monitor = db.connect(dsn, label="new", limits=MONITOR_LIMITS, connect_timeout=10)
    try:
        monitor.execute("SET default_transaction_read_only = on")
        database = str(monitor.info.dbname)
        plan = plan_rehearsal(workload, database, o.connections)
        if not plan.targets:
            why = "; ".join(f"{k[:20]}: {w}" for k, w in plan.left_out[:3])
            raise WorkloadError(f"nothing to rehearse in database {database!r}: no statement has a captured "
                                f"call rate and parameter values ({why or 'the workload is empty'})")
        activity = read_activity(monitor)
        refused = refusal(activity.sessions, activity.active, o.max_other_sessions)
        if refused and not allow_production:
            raise Refused(refused)
        notes = [f"{len(plan.left_out)} statement(s) left out: " + "; ".join(
            f"{k.split(':')[-1][:8]} ({w})" for k, w in plan.left_out[:5])] if plan.left_out else []
        if refused:
            notes.append(refused.split(": it looks")[0] + ": rehearsed anyway (--i-know-this-is-production)")
        with contextlib.suppress(psycopg.Error):
            if monitor.execute("SELECT pg_is_in_recovery()").fetchone() == (True,):
                notes.append("NEW is a standby: its writes fail (read-only), reads are rehearsed")
        tell(f"rehearsing {len(plan.targets)} statements on {db.redact_dsn(dsn)} at "
             f"{', '.join(f'{r:g}x' for r in o.rates)} of {plan.total_rate:,.1f} calls/s, "
             f"{o.duration_s:g} s each, over {plan.connections} connections")
        replay = _Replay(dsn, plan, o, stop, monitor, progress)
        stop.active = True
        try:
            steps = asyncio.run(replay.run())
        finally:
            stop.active = False
        notes.extend(replay.notes)
        first = judge(plan, steps, o, t, notes=notes)
        named = list(dict.fromkeys(r.statement for r in first.reasons if r.statement))
        if not named:
            return first
        if stop.requested:  # out at once: no EXPLAIN, no catalog read after a stop
            return judge(plan, steps, o, t,
                         notes=[*notes, "causes were not looked up: the rehearsal was stopped"])
        try:
            causes, more = _causes(monitor, workload, named, plan, t)
        except (PlanguardError, psycopg.Error) as exc:
            causes, more = {}, [f"causes could not be read from NEW: {one_line(exc)}"]
        return judge(plan, steps, o, t, causes, [*notes, *more])
    finally:
        with contextlib.suppress(psycopg.Error):
            monitor.close()
