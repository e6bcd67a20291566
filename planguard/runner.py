"""Run a workload on OLD and NEW in lockstep (I/O).

Each cluster has a worker: one thread, one connection per database.  The coordinator (the
caller's thread) hands both workers the same step and waits for both before the next, so
the two clusters always work on the same thing at the same time:

1. per database, the catalog first (the readiness checks), before any statement runs:
   rolled-back INSERTs still draw sequence values;
2. per parameter set, a **warm-up** until reads from outside shared buffers stop falling
   (a freshly restored NEW is cold), bounded by ``WARMUP_MAX_RUNS`` and ``WARMUP_BUDGET_MS``;
3. then the measured runs, as **pairs**: run *i* starts on both clusters at once (which
   side is handed its step first alternates), so background load lands on both sides of a
   pair.  When the pairs do not settle the call (``planguard.calls.classify`` says
   ``unstable``), more pairs follow at once, up to ``max_runs``;
4. the forced generic plan the same way, then what the plan cache would choose by itself,
   and with ``check_results`` the result digests;
5. at the end, a second, independent round of pairs for every large same-plan slowdown
   (``same_plan_block_ratio``, ``same_plan_block_ms``): it blocks only if confirmed twice.

What each cluster answered lands in its ``SideRecord``; judging it is pure
(``planguard.compare.judge``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import psycopg

from planguard import db
from planguard.calls import Call, classify
from planguard.catalog.readiness import gather_all
from planguard.config import Thresholds
from planguard.explain import (
    GenericPlan,
    QueryFailed,
    auto_chooses_generic,
    explain_once,
    needs_rollback,
    plan_only,
    result_digest,
)
from planguard.measure import WARM_ENOUGH, WARMUP_BUDGET_MS, WARMUP_MAX_RUNS, Run, Warmup, summarize
from planguard.params import ParseFailure, analyze, render, result_shape
from planguard.plan import reads_by_relation
from planguard.recording import (
    CONFIRM,
    CUSTOM,
    GENERIC,
    Key,
    Recording,
    ServerInfo,
    SideRecord,
    param_sets_of,
)
from planguard.sampling import type_default
from planguard.timing import NoiseFloor, noise_floor
from planguard.workload import Statement, Workload

Progress = Callable[[str], None]



def mask_quoted(message: str) -> str:
    """An error message without the values it quotes."""
    return re.sub(r'"[^"]*"', '"…"', message)


def _n_params(query: str) -> int:
    try:
        return analyze(query).max_param
    except ParseFailure:
        return 0


def more_pairs(call: Call | None, pairs: int, t: Thresholds, repeat: int) -> int:
    """How many more pairs a series needs: none once its call is settled (anything but
    ``unstable``) or ``max_runs`` is reached, else another ``repeat`` (at least 2)."""
    if call is None or call.status != "unstable" or pairs >= t.max_runs:
        return 0
    return min(max(repeat, 2), t.max_runs - pairs)


class _Worker:
    """One cluster: its connections (one per database) and the thread that uses them.

    Every method but ``submit`` and ``shutdown`` runs on the worker's thread, which alone
    writes ``record`` (the coordinator reads it between steps).
    """

    def __init__(self, label: str, dsn: str, limits: db.SessionLimits, multi: bool) -> None:
        self.label, self.dsn, self.limits, self.multi = label, dsn, limits, multi
        self.record = SideRecord()
        self._conns: dict[str | None, psycopg.Connection] = {}
        self._generic: dict[Key, GenericPlan] = {}
        self._last_warm: dict[Key, Run] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"planguard-{label}")

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def _conn(self, dbname: str | None) -> psycopg.Connection:
        if dbname not in self._conns:
            label = f"{self.label} ({dbname})" if self.multi else self.label
            self._conns[dbname] = db.connect(db.with_dbname(self.dsn, dbname, override=self.multi),
                                             label=label, limits=self.limits)
        return self._conns[dbname]

    # -- steps -------------------------------------------------------------------------
    def open(self, dbname: str | None) -> None:
        """Connect to ``dbname`` and read its catalog (the readiness snapshot)."""
        conn = self._conn(dbname)
        if self.record.info is None:
            self.record.info = ServerInfo(self.label, db.server_version(conn), db.server_version_num(conn),
                                          db.redact_dsn(self.dsn))
        self.record.readiness[str(conn.info.dbname)] = gather_all(conn)

    def _once(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> Run:
        conn = self._conn(dbname)
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

    def warm(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> bool:
        """Discarded runs until reads from outside shared buffers stop falling; False on error."""
        runs: list[Run] = []
        try:
            while True:
                runs.append(self._once(key, dbname, stmt, values))
                spent = sum(r.execution_ms for r in runs)
                if runs[-1].shared_read == 0 or len(runs) >= WARMUP_MAX_RUNS or spent >= WARMUP_BUDGET_MS:
                    break
                if len(runs) >= 2 and runs[-1].shared_read >= runs[-2].shared_read * WARM_ENOUGH:
                    break
        except QueryFailed as exc:
            self.record.errors[key] = str(exc)
            return False
        reads = sorted(reads_by_relation(runs[0].plan).items(), key=lambda kv: -kv[1])
        self.record.warmups[key] = Warmup(len(runs), runs[0].shared_read, runs[-1].shared_read,
                                          tuple(reads))
        self._last_warm[key] = runs[-1]
        return True

    def adopt_warmup(self, key: Key) -> None:
        """The last warm-up run as the one measurement, when the other side failed."""
        self.record.runs[key] = [self._last_warm[key]]

    def run(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> bool:
        """One measured run; False (and the error recorded) when it fails."""
        try:
            run = self._once(key, dbname, stmt, values)
        except QueryFailed as exc:
            self.record.errors[key] = str(exc)
            return False
        self.record.runs.setdefault(key, []).append(run)
        return True

    def release(self, key: Key) -> None:
        """Deallocate the generic plan prepared for ``key``, if any."""
        prepared = self._generic.pop(key, None)
        if prepared is not None:
            prepared.close()

    def auto(self, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> None:
        assert self.record.info is not None
        text, binds = render(stmt.query, stmt.bindings, values)
        try:
            self.record.auto_generic[stmt.key] = auto_chooses_generic(
                self._conn(dbname), text, binds, self.record.info.version_num)
        except QueryFailed:
            self.record.auto_generic[stmt.key] = None

    def plan_only(self, dbname: str | None, stmt: Statement) -> None:
        assert self.record.info is not None
        n = _n_params(stmt.query)
        if not n:
            return
        # No values: the generic plan; a parameter the grammar takes only as a literal gets one.
        defaults = [type_default(b.param_type or b.type, datetime.now(timezone.utc)) or "1"
                    if b.inline else None for b in stmt.bindings] or [None] * n
        text, binds = render(stmt.query, stmt.bindings, defaults)
        try:
            self.record.plan_only[stmt.key] = plan_only(self._conn(dbname), text, len(binds),
                                                        self.record.info.version_num)
        except QueryFailed as exc:
            self.record.plan_only[stmt.key] = str(exc)

    def digest(self, dbname: str | None, stmt: Statement, label: str, values: tuple[str | None, ...]) -> None:
        text, binds = render(stmt.query, stmt.bindings, values)
        try:
            self.record.digests[(stmt.key, label)] = result_digest(self._conn(dbname), text, binds)
        except QueryFailed as exc:
            self.record.digests[(stmt.key, label)] = str(exc)

    def close(self) -> None:
        for prepared in list(self._generic.values()):
            if not prepared.conn.closed:
                prepared.close()
        self._generic.clear()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def shutdown(self) -> None:
        try:
            self.submit(self.close).result()
        finally:
            self._pool.shutdown(wait=True)


class _Coordinator:
    def __init__(self, old: _Worker, new: _Worker, thresholds: Thresholds, repeat: int) -> None:
        self.old, self.new, self.t, self.repeat = old, new, thresholds, repeat
        self._old_first = True
        self._noise: NoiseFloor | None = None
        self._noise_series = 0

    def both(self, name: str, *args: Any, old_first: bool = True) -> tuple[Any, Any]:
        """Hand both workers step ``name`` at once; wait for both; (OLD's, NEW's) results."""
        first, second = (self.old, self.new) if old_first else (self.new, self.old)
        futures = [first.submit(getattr(first, name), *args), second.submit(getattr(second, name), *args)]
        wait(futures)
        a, b = (f.result() for f in futures)
        return (a, b) if old_first else (b, a)

    def _pairs(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...],
               n: int) -> bool:
        for _ in range(n):
            self._old_first = not self._old_first
            ok_old, ok_new = self.both("run", key, dbname, stmt, values, old_first=self._old_first)
            if not (ok_old and ok_new):
                return False
        return True

    def noise(self) -> NoiseFloor:
        """The noise floor of the runs so far (recomputed as the runs grow by a tenth)."""
        series = [r for side in (self.old.record, self.new.record) for r in side.runs.values()]
        if self._noise is None or len(series) > self._noise_series * 1.1 + 2:
            self._noise = noise_floor([r.execution_ms for r in runs] for runs in series)
            self._noise_series = len(series)
        return self._noise

    def call(self, key: Key) -> Call | None:
        old, new = self.old.record.runs.get(key), self.new.record.runs.get(key)
        if not old or not new:
            return None
        return classify(summarize(old), summarize(new), self.t, self.noise())

    def series(self, key: Key, dbname: str | None, stmt: Statement, values: tuple[str | None, ...]) -> bool:
        """Warm-up, then pairs, then more pairs while the call is unsettled; False when a side
        failed."""
        ok_old, ok_new = self.both("warm", key, dbname, stmt, values)
        if ok_old != ok_new:
            ok = self.old if ok_old else self.new
            ok.submit(ok.adopt_warmup, key).result()
        if not (ok_old and ok_new) or not self._pairs(key, dbname, stmt, values, self.repeat):
            return False
        while more := more_pairs(self.call(key), len(self.old.record.runs[key]), self.t, self.repeat):
            if not self._pairs(key, dbname, stmt, values, more):
                return False
        return True

    def large_same_plan(self, key: Key) -> bool:
        c = self.call(key)
        return (c is not None and c.status == "slower_same_plan" and c.evidence is not None
                and c.evidence.ratio >= self.t.same_plan_block_ratio
                and c.evidence.new_ms - c.evidence.old_ms >= self.t.same_plan_block_ms)


def run(old_dsn: str, new_dsn: str, workload: Workload, *, repeat: int, thresholds: Thresholds,
        limits: db.SessionLimits, progress: Progress | None = None, generic: bool = True,
        redact: bool = False, check_results: bool = False) -> Recording:
    """Run ``workload`` on both clusters in lockstep and record what each answered."""
    databases: Sequence[str | None] = workload.databases or (None,)
    multi = len(databases) > 1  # then each statement runs in the database it was captured in
    old, new = _Worker("old", old_dsn, limits, multi), _Worker("new", new_dsn, limits, multi)
    co = _Coordinator(old, new, thresholds, repeat)
    try:
        todo: list[tuple[Key, str | None, Statement, tuple[str | None, ...]]] = []
        done = 0
        for dbname in databases:
            mine = [s for s in workload.statements if (s.database or workload.source.database) == dbname]
            co.both("open", dbname)
            for stmt in mine:
                done += 1
                if progress:
                    progress(f"[{done}/{len(workload.statements)}] {stmt.short_id} {stmt.query[:60]!r}")
                if stmt.skip_reason:
                    co.both("plan_only", dbname, stmt)
                    continue
                sets = param_sets_of(stmt)
                for ps in sets:
                    key = (stmt.key, ps.label, CUSTOM)
                    if not co.series(key, dbname, stmt, ps.values):
                        continue  # it fails on a side: that is the call, and nothing more to learn
                    todo.append((key, dbname, stmt, ps.values))
                    if check_results and result_shape(stmt.query) is not None:
                        co.both("digest", dbname, stmt, ps.label, ps.values)
                    if generic and ps.values:
                        gkey = (stmt.key, ps.label, GENERIC)
                        co.series(gkey, dbname, stmt, ps.values)
                        co.both("release", gkey)
                if generic and sets and sets[0].values:
                    # The plan cache decides from the custom plans of the calls it sees, mostly
                    # typical ones: the first (typical) set stands for them.
                    co.both("auto", dbname, stmt, sets[0].values)
        confirm = [t for t in todo if co.large_same_plan(t[0])]
        if confirm and progress:
            progress(f"confirming {len(confirm)} same-plan slowdown(s) in a second round of pairs")
        for key, dbname, stmt, values in confirm:
            co.series((key[0], key[1], CONFIRM), dbname, stmt, values)
    finally:
        for worker in (old, new):
            worker.shutdown()
    if redact:  # error messages can quote input values: invalid input syntax ...: "abc"
        for rec in (old.record, new.record):
            rec.errors = {k: mask_quoted(v) for k, v in rec.errors.items()}
            rec.plan_only = {k: mask_quoted(v) if isinstance(v, str) else v for k, v in rec.plan_only.items()}
    return Recording(old.record, new.record)

