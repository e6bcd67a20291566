"""Run a workload on OLD and NEW in lockstep (I/O), and stop cleanly.

Each cluster has a worker: one thread, one connection per database.  The coordinator (the
caller's thread) hands both workers the same step and waits for both before the next, so
the two clusters always work on the same thing at the same time:

1. per database, the catalog first (the readiness checks), before any statement runs:
   rolled-back INSERTs still draw sequence values;
2. per parameter set, a **warm-up**, in pairs, until reads from outside shared buffers stop
   falling on both sides (a freshly restored NEW is cold), bounded by ``WARMUP_MAX_RUNS`` and
   ``WARMUP_BUDGET_MS``: both sides run it as often (a write draws as many sequence values);
3. then the measured runs, as **pairs**: run *i* starts on both clusters at once (which
   side is handed its step first alternates), so background load lands on both sides of a
   pair.  Measurement is **sequential** (``adaptive``, the default): the warm-up runs in
   lockstep and its last step counts as the first pair once reads have stopped falling on
   both sides, and the series stops as soon as ``planguard.calls.settled`` says more
   runs cannot change the call (the work differs and 2 pairs are beyond the squared bar, the
   severity clear; the times clearly the same; a majority of ``repeat`` pairs within
   ``time_ratio``); otherwise it gets ``repeat`` pairs (the fixed rule,
   ``adaptive=False``, always does).  When the pairs do not settle the call
   (``planguard.calls.classify`` says ``unstable``), more pairs follow at once, up to
   ``max_runs``;
4. the forced generic plan the same way (it settles only when its comparisons with the
   custom plans settle too), then what the plan cache would choose by itself,
   and with ``check_results`` the result digests;
5. at the end, a second, independent round of pairs for every large same-plan slowdown
   (``same_plan_block_ratio``, ``same_plan_block_ms``): it blocks only if confirmed twice
   (always ``repeat`` pairs: it decides a severity).

Workers only ask and return what their cluster answered; the coordinator alone writes it
into each side's ``SideRecord``, once both sides have answered a step.  Judging it is pure
(``planguard.judge``).

**Faults and stops.**  While both work, the coordinator watches for a failure on either
side and for a stop request (``planguard.interrupt``: a signal, a budget).  Then it cancels
the statement running on the other side at once (the protocol cancel: production is not
left working for a comparison that cannot finish), and the cancelled transactions roll
back.  A session lost (terminated, dropped) is opened again with backoff and the step is
run again once on both sides; a second failure, or a cluster that cannot be reached again,
stops the run.  A stopped run returns what was measured, with ``Recording.stopped`` saying
why and the parameter sets in flight marked ``not finished``; ``resume`` (a saved partial
recording) completes only what is missing.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, Future, wait
from dataclasses import replace
from typing import Any

import psycopg

from planguard import db
from planguard.budget import Budget
from planguard.calls import Call, classify, more_pairs, noise_of, settled, settled_slower, unsettled
from planguard.catalog.readiness import gather_all
from planguard.checks.readiness import ClusterSnapshot
from planguard.config import Thresholds
from planguard.errors import ConnectionFailed, PlanguardError, WorkloadError, one_line
from planguard.explain import (
    Cancelled,
    GenericPlan,
    QueryFailed,
    auto_chooses_generic,
    explain_once,
    needs_rollback,
    result_digest,
)
from planguard.interrupt import Stop
from planguard.measure import (
    NOT_FINISHED,
    WARM_ENOUGH,
    WARMUP_BUDGET_MS,
    WARMUP_MAX_RUNS,
    Digest,
    Run,
    Warmup,
    summarize,
)
from planguard.params import render, result_shape
from planguard.plan import Plan, reads_by_relation
from planguard.planning import statement_plan
from planguard.progress import OnStep, Step
from planguard.recording import (
    BUDGET,
    CONFIRM,
    CUSTOM,
    FAULT,
    GENERIC,
    Key,
    Recording,
    ServerInfo,
    SideRecord,
    Stopped,
    param_sets_of,
)
from planguard.safety import is_write, may_plan, refusal
from planguard.timing import NoiseFloor
from planguard.workload import Statement, Workload

Progress = Callable[[str], None]
ReadCatalog = Callable[[psycopg.Connection], ClusterSnapshot]
Item = tuple[Key, str | None, Statement, tuple[str | None, ...]]

POLL_S = 0.2  # how often the coordinator looks at a stop request while both work
CANCEL_GRACE_S = 3.0  # after a cancel, how long a side may take to give its session back
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0)  # backoff between attempts to open a lost session again
RECONNECT_TIMEOUT_S = 3  # connect_timeout of those attempts
POLITE_EVERY_S = 2.0  # --polite: how often OLD's load is read
POLITE_PAUSE_S = 1.0  # ... and how long each pause lasts before it is read again
SETTLE_ROUNDS = 3  # rounds of measuring again what the final noise floor leaves unsettled


def mask_quoted(message: str) -> str:
    """An error message without the values it quotes."""
    return re.sub(r'"[^"]*"', '"…"', message)


def _warm_enough(runs: Sequence[Run]) -> bool:
    """A side's warm-up may end: nothing read from outside shared buffers any more, reads no
    longer falling (by WARM_ENOUGH), or its bounds reached (WARMUP_MAX_RUNS, WARMUP_BUDGET_MS)."""
    if runs[-1].shared_read == 0 or len(runs) >= WARMUP_MAX_RUNS:
        return True
    if sum(r.execution_ms for r in runs) >= WARMUP_BUDGET_MS:
        return True
    return len(runs) >= 2 and runs[-1].shared_read >= runs[-2].shared_read * WARM_ENOUGH


def _steady(runs: Sequence[Run]) -> bool:
    """The last run is like the ones that follow: nothing read from outside shared buffers, or
    reads no longer falling (a scan through a ring buffer reads as much every time)."""
    return runs[-1].shared_read == 0 or (
        len(runs) >= 2 and runs[-1].shared_read >= runs[-2].shared_read * WARM_ENOUGH)


def _warmup(runs: Sequence[Run]) -> tuple[Warmup, Run]:
    reads = sorted(reads_by_relation(runs[0].plan).items(), key=lambda kv: -kv[1])
    return Warmup(len(runs), runs[0].shared_read, runs[-1].shared_read, tuple(reads)), runs[-1]


class _Stop(Exception):
    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


class _Worker:
    """One cluster: its connections (one per database) and the thread that uses them.

    The step methods run on the worker's thread and return what the cluster answered
    (an error as a one-line string); ``submit`` and ``cancel`` are called from the
    coordinator.  The thread is a daemon: a cluster that stops answering even a cancel
    cannot keep planguard from exiting.
    """

    def __init__(self, label: str, dsn: str, limits: db.SessionLimits, multi: bool,
                 record: SideRecord | None = None, read_catalog: ReadCatalog | None = gather_all) -> None:
        self.label, self.dsn, self.limits, self.multi = label, dsn, limits, multi
        self.read_catalog = read_catalog
        self.record = record or SideRecord()
        self._conns: dict[str | None, psycopg.Connection] = {}
        self._generic: dict[Key, GenericPlan] = {}
        self._active: psycopg.Connection | None = None  # the session the current step uses
        self._wanted: str | None = None  # ... in that database
        self._quiet: dict[str | None, psycopg.Connection] = {}  # sessions with track_counts off
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"planguard-{label}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self.label.upper()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except psycopg.Error as exc:  # outside a statement: a session lost, or a server error
                lost = self._active is not None and self._active.closed
                future.set_exception(ConnectionFailed(f"lost the connection: {one_line(exc)}")
                                     if lost else exc)
            except BaseException as exc:  # handed to the coordinator, which decides
                future.set_exception(exc)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn, args))
        return future

    def cancel(self) -> None:
        """Cancel the statement running on this side's session, if any (a cancel request
        on a connection of its own, safe from another thread)."""
        conn = self._active
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=CANCEL_GRACE_S)

    def _conn(self, dbname: str | None, connect_timeout: int = 10) -> psycopg.Connection:
        self._wanted = dbname
        conn = self._conns.get(dbname)
        if conn is None or conn.closed:
            label = f"{self.label} ({dbname})" if self.multi else self.label
            conn = db.connect(db.with_dbname(self.dsn, dbname, override=self.multi), label=label,
                              limits=self.limits, connect_timeout=connect_timeout)
            self._conns[dbname] = conn
        self._active = conn
        return conn

    def reconnect(self) -> None:
        """Forget the sessions that were lost and open the one the last step wanted again,
        with backoff; raises ConnectionFailed when the cluster cannot be reached."""
        for name, conn in list(self._conns.items()):
            if conn.closed:
                del self._conns[name]
                self._generic = {k: g for k, g in self._generic.items() if g.conn is not conn}
                self.record.reconnects += 1
        error: ConnectionFailed | None = None
        for delay in (0.0, *RECONNECT_DELAYS_S):
            time.sleep(delay)
            try:
                self._conn(self._wanted, connect_timeout=RECONNECT_TIMEOUT_S)
                return
            except ConnectionFailed as exc:
                error = exc
        assert error is not None
        raise error

    # -- steps (on the worker's thread) --------------------------------------------------
    def open(self, dbname: str | None) -> tuple[ServerInfo, str, ClusterSnapshot | None]:
        """Connect to ``dbname``; the server, and its catalog (the readiness snapshot; None
        when this run reads no catalog)."""
        conn = self._conn(dbname)
        info = ServerInfo(self.label, db.server_version(conn), db.server_version_num(conn),
                          db.redact_dsn(self.dsn), db.identity(conn))
        snapshot = self.read_catalog(conn) if self.read_catalog else None
        if conn.closed:  # each family's read failed on a lost session: not a catalog finding
            raise ConnectionFailed("lost the connection while reading the catalog")
        self._uncounted(dbname, conn)  # after the catalog: it reads the cluster's track_counts
        return info, str(conn.info.dbname), snapshot

    def _uncounted(self, dbname: str | None, conn: psycopg.Connection) -> None:
        """``SET track_counts = off`` in the session, once: planguard's own executions then
        leave no trace in the cluster's activity statistics (``pg_stat_user_indexes.idx_scan``
        above all, which says whether OLD ever used an index: a run would otherwise make the
        next one see an index as used because planguard scanned it).  It needs superuser or
        ``GRANT SET ON PARAMETER track_counts`` (PostgreSQL 15+); without, the record's
        ``counted`` says why (and ``counted_role`` as whom), and the judgement says so."""
        if self._quiet.get(dbname) is conn:
            return
        try:
            conn.execute(db.MARK + "SET track_counts = off")
        except psycopg.errors.InsufficientPrivilege as exc:
            self.record.counted = one_line(exc)
            row = conn.execute(db.MARK + "SELECT current_user").fetchone()
            self.record.counted_role = str(row[0]) if row else None
        self._quiet[dbname] = conn

    def _session(self, dbname: str | None) -> psycopg.Connection:
        """The session of a step that executes workload statements (``_uncounted``)."""
        conn = self._conn(dbname)
        self._uncounted(dbname, conn)
        return conn

    def _once(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> Run:
        conn = self._session(dbname)
        text, binds = render(stmt.query, stmt.bindings, values)
        if key[2] == GENERIC and key not in self._generic:
            self._generic[key] = GenericPlan(conn, text)
        started = time.monotonic()
        if key[2] == GENERIC:
            run = self._generic[key].run(binds)
        else:
            run = explain_once(conn, text, binds, needs_rollback(text))
        run = replace(run, started=started, ended=time.monotonic())
        self.record.executions += 1
        self.record.server_ms += run.execution_ms + (run.planning_ms or 0.0)
        return run

    def measure(self, key: Key, dbname: str | None, stmt: Statement,
                values: tuple[str | None, ...]) -> Run | str:
        """One measured run, or the error."""
        try:
            return self._once(key, dbname, stmt, values)
        except QueryFailed as exc:
            return str(exc)

    def release(self, key: Key) -> None:
        """Deallocate the generic plan prepared for ``key``, if any."""
        prepared = self._generic.pop(key, None)
        if prepared is not None:
            prepared.close()

    @property
    def version_num(self) -> int:
        assert self.record.info is not None
        return self.record.info.version_num

    def auto(self, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> bool | None:
        text, binds = render(stmt.query, stmt.bindings, values)
        try:
            return auto_chooses_generic(self._session(dbname), text, binds, self.version_num)
        except QueryFailed:
            return None

    def plan(self, dbname: str | None, stmt: Statement) -> Plan | str:
        """The plan of a statement that is not executed: with its first parameter set's values
        when it has one, else the generic plan; nothing runs."""
        try:
            return statement_plan(self._conn(dbname), stmt, self.version_num)
        except QueryFailed as exc:
            return str(exc)

    def digest(self, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> Digest | str:
        text, binds = render(stmt.query, stmt.bindings, values)
        try:
            return result_digest(self._session(dbname), text, binds)
        except QueryFailed as exc:
            return str(exc)

    def pressure(self, dbname: str | None) -> tuple[int, float | None]:
        """OLD's active sessions other than planguard's, and the largest replay lag of its
        replicas and subscribers (None when it has none), for ``--polite``.  Sessions of
        other roles count only when the role may see them (pg_read_all_stats)."""
        row = self._conn(dbname).execute(db.MARK + """
            SELECT (SELECT count(*) FROM pg_stat_activity
                    WHERE state = 'active' AND pid <> pg_backend_pid()
                      AND backend_type = 'client backend'
                      AND application_name IS DISTINCT FROM %s),
                   (SELECT max(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)))
                    FROM pg_stat_replication)""", (db.APP_NAME,)).fetchone()
        assert row is not None
        return int(row[0]), None if row[1] is None else float(row[1])

    def close(self) -> None:
        for prepared in list(self._generic.values()):
            if not prepared.conn.closed:
                with contextlib.suppress(psycopg.Error):
                    prepared.close()
        self._generic.clear()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def shutdown(self, wait_s: float | None = None) -> None:
        """Close the sessions and end the thread; ``wait_s`` bounds the wait (a side that
        no longer answers is left behind: its thread is a daemon)."""
        closing = self.submit(self.close)
        self._queue.put(None)
        with contextlib.suppress(Exception):
            closing.result(timeout=wait_s)


class _Coordinator:
    def __init__(self, old: _Worker, new: _Worker, thresholds: Thresholds, repeat: int, stop: Stop,
                 budget: Budget, progress: Progress | None, adaptive: bool = True) -> None:
        self.old, self.new, self.t, self.repeat = old, new, thresholds, repeat
        self.adaptive = adaptive
        self.stop, self.budget, self.progress = stop, budget, progress
        self.current: Key | None = None  # the parameter set being measured
        self.dbname: str | None = None
        self.retries = 0
        self.paused_s = 0.0
        self._old_first = True
        self._noise: NoiseFloor | None = None
        self._noise_series = 0
        self._told_counted: set[str] = set()  # the sides whose counted executions were told
        self._started = time.monotonic()
        self._polite_at = float("-inf")

    # -- waiting, cancelling, retrying -------------------------------------------------
    def _wait(self, futures: Sequence[tuple[_Worker, Future[Any]]]) -> None:
        """Until every future is done.  On a failure or a stop request, the statements still
        running are cancelled at once; a side that does not answer within CANCEL_GRACE_S
        stops the run."""
        fs = [f for _, f in futures]
        deadline: float | None = None
        while True:
            done, pending = wait(fs, timeout=POLL_S,
                                 return_when=FIRST_EXCEPTION if deadline is None else ALL_COMPLETED)
            if not pending:
                return
            trouble = self.stop.requested or any(f.exception() is not None for f in done)
            if trouble and deadline is None:
                for w, f in futures:
                    if not f.done():
                        w.cancel()
                deadline = time.monotonic() + CANCEL_GRACE_S
            if deadline is not None and time.monotonic() >= deadline:
                stuck = " and ".join(w.name for w, f in futures if not f.done())
                raise _Stop(self.stop.reason or f"{stuck} did not answer a cancel within "
                            f"{CANCEL_GRACE_S:g} s", self.stop.kind or FAULT)

    def _checkpoint(self) -> None:
        """Before a step: a stop asked for, a budget spent, a busy OLD (``--polite``)."""
        if self.stop.requested:
            raise _Stop(self.stop.reason or "stopped", self.stop.kind or FAULT)
        why = self.budget.spent(time.monotonic() - self._started, self.old.record.server_ms)
        if why is not None:
            raise _Stop(why, BUDGET)
        if self.budget.polite and time.monotonic() - self._polite_at >= POLITE_EVERY_S:
            self._be_polite()

    def _be_polite(self) -> None:
        announced = False
        while True:
            self._polite_at = time.monotonic()
            future = self.old.submit(self.old.pressure, self.dbname)
            self._wait([(self.old, future)])
            active, lag = future.result()
            busy = self.budget.busy(active, lag)
            if busy is None:
                return
            if self.progress and not announced:
                self.progress(f"paused: {busy}")
                announced = True
            t0 = time.monotonic()
            self.stop.wait(POLITE_PAUSE_S)
            self.paused_s += time.monotonic() - t0
            if self.stop.requested:
                raise _Stop(self.stop.reason or "stopped", self.stop.kind or FAULT)
            why = self.budget.spent(time.monotonic() - self._started, self.old.record.server_ms)
            if why is not None:
                raise _Stop(why, BUDGET)

    def _measured_any(self) -> bool:
        return bool(self.old.record.runs or self.new.record.runs)

    def both(self, name: str, *args: Any, old_first: bool = True,
             sides: tuple[bool, bool] = (True, True)) -> tuple[Any, Any]:
        """Hand both workers step ``name`` at once; wait for both; (OLD's, NEW's) answers.
        ``sides`` (OLD, NEW) leaves a side out: its answer is None.

        A session lost on either side is opened again and the step runs again on both; a
        second failure stops the run (``_Stop``)."""
        for attempt in (1, 2):
            self._checkpoint()
            order = (self.old, self.new) if old_first else (self.new, self.old)
            wanted = {self.old.label: sides[0], self.new.label: sides[1]}
            futures = [(w, w.submit(getattr(w, name), *args)) for w in order if wanted[w.label]]
            self._wait(futures)
            if self.stop.requested:
                raise _Stop(self.stop.reason or "stopped", self.stop.kind or FAULT)
            failed = [(w, f.exception()) for w, f in futures if f.exception() is not None]
            if not failed:
                answers = {w.label: f.result() for w, f in futures}
                return answers.get("old"), answers.get("new")
            for _, exc in failed:
                if not isinstance(exc, (ConnectionFailed, Cancelled)):
                    raise exc  # type: ignore[misc]
            w, exc = next(((w, e) for w, e in failed if isinstance(e, ConnectionFailed)), failed[0])
            if isinstance(exc, ConnectionFailed) and name == "open" and not self._measured_any():
                raise exc  # the first connection: a plain connection error, nothing to keep
            if attempt == 2:
                raise _Stop(f"{w.name} failed twice: {exc}", FAULT)
            for lost, e in failed:
                if not isinstance(e, ConnectionFailed):
                    continue
                if self.progress:
                    self.progress(f"{lost.name}: {e}; connecting again")
                future = lost.submit(lost.reconnect)
                self._wait([(lost, future)])
                if future.exception() is not None:
                    raise _Stop(f"{lost.name} was lost ({e}) and cannot be reached again", FAULT)
            self.retries += 1
        raise AssertionError("unreachable")

    # -- series of runs ----------------------------------------------------------------
    def noise(self) -> NoiseFloor:
        """The noise floor of the runs so far (recomputed as the runs grow by a tenth)."""
        series = len(self.old.record.runs) + len(self.new.record.runs)
        if self._noise is None or series > self._noise_series * 1.1 + 2:
            self._noise = noise_of(self.old.record.runs, self.new.record.runs)
            self._noise_series = series
        return self._noise

    def call(self, key: Key) -> Call | None:
        old, new = self.old.record.runs.get(key), self.new.record.runs.get(key)
        if not old or not new:
            return None
        return classify(summarize(old), summarize(new), self.t, self.noise())

    def settled(self, key: Key, stmt: Statement) -> bool:
        """The sequential rule (``planguard.calls.settled``) says the series may stop.  A
        generic series also settles its comparisons with the custom plans (unpaired: NEW's
        custom against NEW's generic, OLD's custom against NEW's generic), which the judge
        makes on the same runs."""
        old, new = self.old.record.runs.get(key), self.new.record.runs.get(key)
        if not old or not new:
            return False
        o, n = summarize(old), summarize(new)
        noise = self.noise()
        if key[2] != GENERIC:  # a regression's severity rests on the custom plans' times
            return settled(o, n, self.t, noise, calls_per_second=stmt.calls_per_second,
                           repeat=self.repeat)
        if not settled(o, n, self.t, noise, repeat=self.repeat):
            return False
        ckey = (key[0], key[1], CUSTOM)
        co, cn = self.old.record.runs.get(ckey), self.new.record.runs.get(ckey)
        if not co or not cn:
            return True
        return (settled_slower(summarize(cn), n, self.t, noise)
                and settled_slower(summarize(co), n, self.t, noise))

    def _record(self, key: Key, answers: tuple[Run | str, Run | str]) -> bool:
        """Keep both sides' runs (or errors) of one pair; True when both ran."""
        for side, answer in zip((self.old, self.new), answers, strict=True):
            if isinstance(answer, str):
                side.record.errors[key] = answer
            else:
                side.record.runs.setdefault(key, []).append(answer)
        return not any(isinstance(a, str) for a in answers)

    def _pairs(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...],
               n: int) -> bool:
        for _ in range(n):
            self._old_first = not self._old_first
            answers = self.both("measure", key, dbname, stmt, values, old_first=self._old_first)
            if not self._record(key, answers):
                return False
        return True

    def done(self, key: Key) -> bool:
        return self.old.record.done(key) and self.new.record.done(key)

    def ran(self, key: Key) -> bool:
        return all(key in s.record.runs and key not in s.record.errors for s in (self.old, self.new))

    def series(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> bool:
        """Warm-up, then pairs, then more pairs while the call is unsettled; False when a side
        failed.  A parameter set already measured (a resumed run) is not run again."""
        if self.done(key):
            return self.ran(key)
        for rec in (self.old.record, self.new.record):  # cut short before: start it afresh
            rec.runs.pop(key, None)
            rec.errors.pop(key, None)
            rec.warmups.pop(key, None)
        self.current = key
        warmed, countable = self._warm(key, dbname, stmt, values)
        for side, answer in zip((self.old, self.new), warmed, strict=True):
            if isinstance(answer, str):
                side.record.errors[key] = answer
            else:
                side.record.warmups[key] = answer[0]
        oks = [not isinstance(a, str) for a in warmed]
        if oks[0] != oks[1]:  # the last warm-up run is the one measurement of the side that ran
            ran, answer = (self.old, warmed[0]) if oks[0] else (self.new, warmed[1])
            assert not isinstance(answer, str)
            ran.record.runs[key] = [answer[1]]
        ok = all(oks)
        if ok and self.adaptive and key[2] != CONFIRM:
            ok = self._sequential(key, dbname, stmt, values, warmed, countable)
        elif ok:
            ok = self._pairs(key, dbname, stmt, values, self.repeat)
        while ok and (more := more_pairs(self.call(key), len(self.old.record.runs[key]), self.t,
                                         self.repeat)):
            ok = self._pairs(key, dbname, stmt, values, more)
        self.current = None
        return ok

    def unsettled(self, items: Sequence[Item]) -> list[tuple[Item, int]]:
        """The series that the noise floor of every run so far (the one the judge applies)
        leaves ``unstable`` with room for more pairs.  The floor grows as the run goes on: a
        series that stopped early under the floor of its moment can be unsettled under the
        final one, and the judge must not find it so."""
        old, new = self.old.record.runs, self.new.record.runs
        self._noise, self._noise_series = noise_of(old, new), len(old) + len(new)
        unpaired = {it[0]: (it[0][0], it[0][1], CUSTOM) for it in items if it[0][2] == GENERIC}
        more = unsettled(old, new, [it[0] for it in items if self.ran(it[0])], self.t, self.repeat,
                         unpaired)
        return [(it, more[it[0]]) for it in items if it[0] in more]

    def settle(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...],
               pairs: int) -> None:
        """More pairs for a finished series that is unsettled (``unsettled``): one pair
        discarded first (its cache state is not the one its series ran in), then ``pairs``,
        then more while its own call stays ``unstable``, up to ``max_runs``.  A stop keeps the
        pairs taken."""
        answers = self.both("measure", key, dbname, stmt, values)
        for side, answer in zip((self.old, self.new), answers, strict=True):
            warmup = side.record.warmups.get(key)
            if warmup is not None and not isinstance(answer, str):
                side.record.warmups[key] = replace(warmup, runs=warmup.runs + 1)
        if any(isinstance(a, str) for a in answers):
            return  # it ran before: a failure now says nothing of the runs recorded
        if not self._pairs(key, dbname, stmt, values, pairs):
            return
        while more := more_pairs(self.call(key), len(self.old.record.runs[key]), self.t, self.repeat):
            if not self._pairs(key, dbname, stmt, values, more):
                return

    def _sequential(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...],
                    warmed: tuple[Any, Any], countable: bool) -> bool:
        """Adaptive measurement: pairs one at a time, stopping as soon as the call is settled
        (``settled``), else at ``repeat`` pairs.  The warm-up's last step counts as the first
        pair when it ran on both sides at once and each side's reads had stopped falling: it
        is then a measured run like the others."""
        (_, ro), (_, rn) = warmed
        if countable:
            for side, last in ((self.old, ro), (self.new, rn)):
                side.record.runs[key] = [last]
                warmup = side.record.warmups[key]  # what stays discarded: the runs before it
                side.record.warmups[key] = replace(warmup, runs=warmup.runs - 1)
        while len(self.old.record.runs.get(key, ())) < self.repeat:
            if not self._pairs(key, dbname, stmt, values, 1):
                return False
            if len(self.old.record.runs[key]) >= 2 and self.settled(key, stmt):
                break
        return True

    def _warm(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...],
              ) -> tuple[tuple[tuple[Warmup, Run] | str, tuple[Warmup, Run] | str], bool]:
        """Discarded runs until reads from outside shared buffers stop falling on each side:
        each side's warm-up and its last run, or its error; and whether the last step ran on
        both sides at once with reads that had stopped falling on each (then its runs are a
        measured pair).  Both sides start at once.  Adaptive measurement warms up in lockstep:
        the side that is warm first runs on, and its last run is measured, not discarded.
        Under the fixed rule a read stops on the side that is warm (a cold NEW adds no load on
        OLD); a write always goes on in pairs: it draws as many sequence values on each side,
        so a synced NEW stays synced."""
        runs: tuple[list[Run], list[Run]] = ([], [])
        lockstep = is_write(stmt.query) or self.adaptive
        warm = [False, False]
        while True:
            sides = (True, True) if lockstep else (not warm[0], not warm[1])
            answers = self.both("measure", key, dbname, stmt, values, sides=sides)
            if any(isinstance(a, str) for a in answers):
                return tuple(  # type: ignore[return-value]
                    a if isinstance(a, str) else _warmup([*r, a] if a is not None else r)
                    for a, r in zip(answers, runs, strict=True)), False
            for i, (r, a) in enumerate(zip(runs, answers, strict=True)):
                if a is not None:
                    r.append(a)
                    warm[i] = _warm_enough(r)
            if all(warm):
                return (_warmup(runs[0]), _warmup(runs[1])), all(sides) and all(map(_steady, runs))

    def large_same_plan(self, key: Key) -> bool:
        c = self.call(key)
        return (c is not None and c.status == "slower_same_plan" and c.evidence is not None
                and c.evidence.ratio >= self.t.same_plan_block_ratio
                and c.evidence.new_ms - c.evidence.old_ms >= self.t.same_plan_block_ms)

    # -- statement-level steps (skipped when a resumed run has them) ---------------------
    def open(self, dbname: str | None) -> None:
        self.dbname = dbname
        for side, (info, name, snapshot) in zip((self.old, self.new), self.both("open", dbname),
                                                strict=True):
            known = side.record.info
            if known is not None and known.version_num != info.version_num:
                raise PlanguardError(
                    f"{side.name} now runs PostgreSQL {info.version}, the recording being resumed was "
                    f"taken on {known.version}: start the comparison afresh, without --resume")
            side.record.info = info
            if snapshot is not None:
                side.record.readiness[name] = snapshot  # always read afresh: the catalog of now
            if side.record.counted and self.progress and side.label not in self._told_counted:
                self._told_counted.add(side.label)
                self.progress(
                    f"{side.name}: planguard's executions will count in its activity statistics "
                    f"(pg_stat_user_indexes.idx_scan: a later run can see an index planguard scanned as "
                    f"used): SET track_counts = off was refused ({side.record.counted}); grant it with "
                    f"GRANT SET ON PARAMETER track_counts TO {side.record.counted_role or '<role>'} "
                    "(PostgreSQL 15+)")

    def plan(self, dbname: str | None, stmt: Statement) -> None:
        if all(stmt.key in s.record.plan_only for s in (self.old, self.new)):
            return
        for side, plan in zip((self.old, self.new), self.both("plan", dbname, stmt), strict=True):
            side.record.plan_only[stmt.key] = plan

    def auto(self, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> None:
        if all(stmt.key in s.record.auto_generic for s in (self.old, self.new)):
            return
        for side, answer in zip((self.old, self.new), self.both("auto", dbname, stmt, values), strict=True):
            side.record.auto_generic[stmt.key] = answer

    def digest(self, dbname: str | None, stmt: Statement, label: str, values: tuple[str | None, ...]) -> None:
        if all((stmt.key, label) in s.record.digests for s in (self.old, self.new)):
            return
        for side, answer in zip((self.old, self.new), self.both("digest", dbname, stmt, values),
                                strict=True):
            side.record.digests[(stmt.key, label)] = answer


class _Steps:
    """``on_step`` told as each statement is finished: done, total, regressions so far (a
    statement counts once, when it is finished)."""

    def __init__(self, on_step: OnStep | None, co: _Coordinator, todo: list[Item], total: int) -> None:
        self.on_step, self.co, self.todo, self.total = on_step, co, todo, total
        self.done = self.regressions = self.mark = 0
        self.last: Statement | None = None

    def next(self, stmt: Statement | None) -> None:
        """``stmt`` starts (None: the last one is finished)."""
        if self.on_step is None:
            return
        if self.last is None and self.done == 0:
            self.on_step(Step(0, self.total))  # started
        if self.last is not None:
            self.done += 1
            calls = (self.co.call(t[0]) for t in self.todo[self.mark:])
            self.regressions += any(c is not None and c.status == "regressed" for c in calls)
            self.on_step(Step(self.done, self.total, self.regressions, self.last.short_id))
        self.last, self.mark = stmt, len(self.todo)


def _check_resumable(resume: Recording, workload: Workload) -> None:
    """A recording resumed belongs to this workload: every parameter set it holds is one."""
    known = {(s.key, ps.label) for s in workload.statements for ps in param_sets_of(s)}
    for side in (resume.old, resume.new):
        strange = [k for k in side.runs if (k[0], k[1]) not in known]
        if strange:
            raise WorkloadError(
                f"the recording to resume holds {len(strange)} parameter sets this workload does not "
                f"have (statement {strange[0][0][:8]}, {strange[0][1]!r}): resume with the workload "
                "file of the interrupted run")


def _settle(co: _Coordinator, items: Sequence[Item], progress: Progress | None) -> None:
    """Measure again what the final noise floor leaves unsettled, until nothing is (or every
    such series has ``max_runs`` pairs): the judge then finds no series ``unstable`` that
    more pairs could have settled."""
    for _ in range(SETTLE_ROUNDS):
        again = co.unsettled(items)
        if not again:
            return
        if progress:
            progress(f"measuring {len(again)} unsettled parameter set(s) again under the noise "
                     "floor of the whole run")
        for (key, dbname, stmt, values), pairs in again:
            co.settle(key, dbname, stmt, values, pairs)
            if key[2] == GENERIC:
                co.both("release", key)


def run(old_dsn: str, new_dsn: str, workload: Workload, *, repeat: int, thresholds: Thresholds,
        limits: db.SessionLimits, progress: Progress | None = None, generic: bool = True,
        redact: bool = False, check_results: bool = False, writes: str = "rollback",
        stop: Stop | None = None, budget: Budget | None = None,
        resume: Recording | None = None, on_step: OnStep | None = None,
        read_catalog: ReadCatalog | None = gather_all, adaptive: bool = True) -> Recording:
    """Run ``workload`` on both clusters in lockstep and record what each answered.

    ``workload``: already screened (``planguard.safety.screen``: a statement with a
    ``skip_reason`` is planned only, when ``may_plan`` allows it under the ``writes`` policy).
    ``stop``: asked from elsewhere (a signal handler) to end the run early; ``budget``: its
    limits; ``resume``: a partial recording whose finished parameter sets are kept, not run
    again (the catalogs are read afresh).  A run that ends early returns its partial
    recording, ``stopped`` saying why.  ``adaptive``: each parameter set stops as soon as its
    call is settled (``planguard.calls.settled``); False: the fixed rule, ``repeat`` pairs each.
    """
    stop = stop or Stop()
    budget = budget or Budget()
    if resume is not None:
        _check_resumable(resume, workload)
    databases: Sequence[str | None] = workload.databases or (None,)
    multi = len(databases) > 1  # then each statement runs in the database it was captured in
    old = _Worker("old", old_dsn, limits, multi, resume.old.kept() if resume else None, read_catalog)
    new = _Worker("new", new_dsn, limits, multi, resume.new.kept() if resume else None, read_catalog)
    co = _Coordinator(old, new, thresholds, repeat, stop, budget, progress, adaptive)
    stopped: Stopped | None = None
    kept = sum(1 for k in old.record.runs if co.done(k))
    stop.active = True
    try:
        if resume is not None and progress:
            progress(f"resuming: {kept} parameter sets already measured are kept")
        todo: list[Item] = []
        generics: list[Item] = []
        steps = _Steps(on_step, co, todo, len(workload.statements))
        done = 0
        for dbname in databases:
            mine = [s for s in workload.statements if (s.database or workload.source.database) == dbname]
            co.open(dbname)
            for stmt in mine:
                done += 1
                if progress and not on_step:
                    progress(f"[{done}/{len(workload.statements)}] {stmt.short_id} {stmt.query[:60]!r}")
                steps.next(stmt)
                if refusal(stmt) is not None:
                    continue  # never sent, not even as a plan
                if stmt.skip_reason:
                    if may_plan(stmt, writes):
                        co.plan(dbname, stmt)
                    continue
                sets = param_sets_of(stmt)
                for ps in sets:
                    key = (stmt.key, ps.label, CUSTOM)
                    if not co.series(key, dbname, stmt, ps.values):
                        continue  # it fails on a side: that is the call, and nothing more to learn
                    todo.append((key, dbname, stmt, ps.values))
                    if check_results and result_shape(stmt.query) is not None:
                        co.digest(dbname, stmt, ps.label, ps.values)
                    if generic and ps.values:
                        gkey = (stmt.key, ps.label, GENERIC)
                        if co.series(gkey, dbname, stmt, ps.values):
                            generics.append((gkey, dbname, stmt, ps.values))
                        co.both("release", gkey)
                if generic and sets and sets[0].values:
                    # The plan cache decides from the custom plans of the calls it sees, mostly
                    # typical ones: the first (typical) set stands for them.
                    co.auto(dbname, stmt, sets[0].values)
        steps.next(None)
        _settle(co, todo + generics, progress)
        confirm = [t for t in todo if co.large_same_plan(t[0])]
        if confirm and progress:
            progress(f"confirming {len(confirm)} same-plan slowdown(s) in a second round of pairs")
        confirmed: list[Item] = []
        for key, dbname, stmt, values in confirm:
            ckey = (key[0], key[1], CONFIRM)
            if co.series(ckey, dbname, stmt, values):
                confirmed.append((ckey, dbname, stmt, values))
        _settle(co, confirmed, progress)
    except _Stop as exc:
        in_flight = (co.current,) if co.current else ()
        for side in (old.record, new.record):
            for key in in_flight:
                side.errors[key] = NOT_FINISHED + exc.reason
        stopped = Stopped(exc.reason, exc.kind, in_flight)
        if progress:
            progress(f"stopped: {exc.reason}")
    finally:
        stop.active = False
        wait_s = CANCEL_GRACE_S if stopped is not None or stop.requested else None
        for worker in (old, new):
            worker.shutdown(wait_s)
    if redact:  # error messages can quote input values: invalid input syntax ...: "abc"
        for rec in (old.record, new.record):
            rec.errors = {k: mask_quoted(v) for k, v in rec.errors.items()}
            rec.plan_only = {k: mask_quoted(v) if isinstance(v, str) else v for k, v in rec.plan_only.items()}
    return Recording(old.record, new.record, stopped, co.retries, round(co.paused_s, 3), kept)
