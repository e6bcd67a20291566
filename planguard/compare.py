"""``compare``: run a workload on OLD and NEW concurrently and judge the difference.

I/O lives in ``_run_side`` (one connection per cluster, one thread each); the rest
(summaries, calls, findings, verdict) is pure and works on what the sides recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import psycopg

from planguard import db
from planguard.checks import Finding, freshness
from planguard.config import Thresholds
from planguard.diff import SEVERITY, Call, Change, Measurement, classify, diff_plans
from planguard.explain import QueryFailed, Run, measure
from planguard.explain import reason as _reason
from planguard.plan import indexes_used, relations, shape_fingerprint
from planguard.verdict import Verdict, decide
from planguard.workload import ParamSet, Statement, Workload

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ServerInfo:
    label: str
    version: str
    version_num: int
    dsn: str  # redacted

    @property
    def major(self) -> int:
        return self.version_num // 10000


@dataclass(frozen=True)
class ParamSetResult:
    label: str
    values: tuple[str | None, ...]
    old: Measurement
    new: Measurement
    call: Call
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class StatementResult:
    statement: Statement
    status: str
    reason: str
    param_sets: tuple[ParamSetResult, ...] = ()

    @property
    def decisive(self) -> ParamSetResult | None:
        """The parameter set whose call decided the statement's status (the worst)."""
        if not self.param_sets:
            return None
        return min(self.param_sets, key=lambda p: SEVERITY[p.call.status])


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
    tables: tuple[freshness.TableStats, ...] = ()


@dataclass
class _Side:
    info: ServerInfo | None = None
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    tables: tuple[freshness.TableStats, ...] = ()
    check_errors: list[str] = field(default_factory=list)


def param_sets_of(stmt: Statement) -> tuple[ParamSet, ...]:
    """The sets to run; a statement without parameters runs once with none."""
    if stmt.param_sets:
        return stmt.param_sets
    if not stmt.bindings:
        return (ParamSet("no parameters", ()),)
    return ()


def _run_side(label: str, dsn: str, workload: Workload, repeat: int, limits: db.SessionLimits,
              check_tables: bool, progress: Progress | None) -> _Side:
    side = _Side()
    dsn = db.with_dbname(dsn, workload.source.database)
    with db.connect(dsn, label=label, limits=limits) as conn:
        side.info = ServerInfo(label, db.server_version(conn), db.server_version_num(conn),
                               db.redact_dsn(dsn))
        todo = [s for s in workload.statements if not s.skip_reason]
        for i, stmt in enumerate(todo, 1):
            if progress:
                progress(f"{label}: [{i}/{len(todo)}] {stmt.short_id} {stmt.query[:60]!r}")
            for ps in param_sets_of(stmt):
                key = (stmt.fingerprint, ps.label)
                try:
                    side.runs[key] = measure(conn, stmt.query, ps.values, repeat)
                except QueryFailed as exc:
                    side.errors[key] = str(exc)
        if check_tables:
            touched = {t for s in workload.statements for t in s.tables}
            touched |= {rel for runs in side.runs.values() for r in runs[:1] for rel in relations(r.plan)}
            try:
                side.tables = freshness.gather(conn, touched)
            except psycopg.Error as exc:
                side.check_errors.append(f"statistics freshness on {label.upper()}: {_reason(exc)}")
    return side


def _summaries(old: _Side, new: _Side) -> dict[tuple[str, str, str], Measurement]:
    """Medians per (statement, parameter set, side), tabulated with pandas."""
    records = [
        {"fp": fp, "ps": ps, "side": side_name, "run": i, "ms": r.execution_ms,
         "shared": r.shared_buffers, "temp": r.temp_buffers, "shape": shape_fingerprint(r.plan)}
        for side_name, side in (("old", old), ("new", new))
        for (fp, ps), runs in side.runs.items()
        for i, r in enumerate(runs)
    ]
    out: dict[tuple[str, str, str], Measurement] = {}
    if records:
        df = pd.DataFrame.from_records(records)
        med = df.groupby(["fp", "ps", "side"]).agg(
            median_ms=("ms", "median"), shared=("shared", "median"), temp=("temp", "median"),
            runs=("run", "size"), shapes=("shape", lambda s: tuple(sorted(set(s)))),
        )
        for (fp, ps, side_name), row in med.iterrows():
            runs = (old if side_name == "old" else new).runs[(fp, ps)]
            typical = min(runs, key=lambda r: abs(r.execution_ms - row["median_ms"]))
            out[(fp, ps, side_name)] = Measurement(
                median_ms=float(row["median_ms"]), shared_buffers=int(row["shared"]),
                temp_buffers=int(row["temp"]), runs=int(row["runs"]), plan=typical.plan,
                plan_fingerprints=row["shapes"], times_ms=tuple(r.execution_ms for r in runs),
            )
    for side_name, side in (("old", old), ("new", new)):
        for (fp, ps), err in side.errors.items():
            out[(fp, ps, side_name)] = Measurement(error=err)
    return out


def _causes(result: ParamSetResult, never: set[str], stale: set[str], workload: Workload,
            old: ServerInfo, new: ServerInfo) -> tuple[list[str], list[str]]:
    """Most likely causes of a regression, with the SQL that addresses each."""
    causes: list[str] = []
    fixes: list[str] = []
    plan_rels = set(relations(result.new.plan)) if result.new.plan else set()
    for rel in sorted(plan_rels & never):
        causes.append(f"{rel} has never been analyzed on NEW")
        fixes.append(f"ANALYZE {rel};")
    for rel in sorted(plan_rels & stale):
        causes.append(f"statistics of {rel} are stale on NEW")
        fixes.append(f"ANALYZE {rel};")
    for ch in result.changes:
        if ch.kind == "index_new_only" and ch.index:
            snap = workload.index(ch.index)
            if snap is not None and snap.idx_scan == 0:
                causes.append(f"NEW uses index {ch.index}, which OLD never used (idx_scan = 0)")
                if not fixes:
                    fixes.append(f"-- after fresh statistics, if NEW still prefers it:\n"
                                 f"DROP INDEX CONCURRENTLY {snap.name};")
    if not causes:
        if old.major != new.major:
            causes.append(f"planner change between PostgreSQL {old.major} and {new.major}")
        else:
            causes.append("a different plan on NEW with no catalog explanation found")
        fixes.append("-- compare both plans in the report; check planner settings and statistics targets")
    return causes, fixes


def _statement_findings(results: list[StatementResult], fresh: list[Finding], workload: Workload,
                        old: ServerInfo, new: ServerInfo) -> list[Finding]:
    never = {f.object for f in fresh if f.kind == "never_analyzed"}
    stale = {f.object for f in fresh if f.kind == "stale_stats"}
    out: list[Finding] = []
    for res in results:
        s = res.statement
        obj = f"statement {s.short_id}" + (f" ({', '.join(s.tables[:2])})" if s.tables else "")
        rate = f"{s.calls:,} calls on OLD"
        dec = res.decisive
        if res.status == "regressed" and dec is not None:
            causes, fixes = _causes(dec, never, stale, workload, old, new)
            plan_change = "; ".join(c.detail for c in dec.changes) or "same plan"
            out.append(Finding(
                "plan_regression", "blocker", obj,
                f"{obj} ({rate}) regressed with parameters '{dec.label}': {dec.call.reason}. "
                f"Plan: {plan_change}. Likely cause: {'; '.join(causes)}.",
                "\n".join(dict.fromkeys(fixes)),
            ))
        elif res.status == "error" and dec is not None:
            new_only = dec.new.error is not None and dec.old.error is None
            both = dec.new.error is not None and dec.old.error is not None
            out.append(Finding(
                "query_error", "blocker" if new_only else ("warning" if both else "info"), obj,
                f"{obj} ({rate}) {dec.call.reason}",
                "-- make the statement valid on NEW (missing object, privilege or changed "
                "function?) before the cutover" if new_only else
                "-- fix the parameter values in the workload file, or the statement",
            ))
        elif res.status == "skipped":
            out.append(Finding(
                "statement_skipped", "info", obj, f"{obj} ({rate}) was not run: {res.reason}",
                "-- add a parameter set for it in the workload file (\"param_sets\")",
            ))
        elif res.status == "plan_changed" and dec is not None:
            out.append(Finding(
                "plan_changed", "info", obj,
                f"{obj}: {'; '.join(c.detail for c in dec.changes)} (cost within thresholds)",
                "-- no action needed; review if the statement is latency-critical",
            ))
    return out


def judge(workload: Workload, old_side: _Side, new_side: _Side, thresholds: Thresholds,
          ) -> tuple[list[StatementResult], list[Finding]]:
    """Pure part of the comparison: calls, changes and findings from both sides' records."""
    assert old_side.info and new_side.info
    summary = _summaries(old_side, new_side)
    results: list[StatementResult] = []
    for stmt in workload.statements:
        sets = param_sets_of(stmt)
        if stmt.skip_reason or not sets:
            results.append(StatementResult(stmt, "skipped", stmt.skip_reason or "no parameter set"))
            continue
        ps_results = []
        for ps in sets:
            o = summary.get((stmt.fingerprint, ps.label, "old"), Measurement(error="not run"))
            n = summary.get((stmt.fingerprint, ps.label, "new"), Measurement(error="not run"))
            changes = diff_plans(o.plan, n.plan) if o.plan and n.plan else ()
            ps_results.append(ParamSetResult(ps.label, ps.values, o, n, classify(o, n, thresholds), changes))
        worst = min(ps_results, key=lambda p: SEVERITY[p.call.status])
        results.append(StatementResult(stmt, worst.call.status, worst.call.reason, tuple(ps_results)))
    old_rows = {t.name: t.reltuples for t in workload.tables}
    fresh = freshness.evaluate(new_side.tables, thresholds, new_side.info.version_num, old_rows)
    findings = fresh + _statement_findings(results, fresh, workload, old_side.info, new_side.info)
    for err in old_side.check_errors + new_side.check_errors:
        findings.append(Finding(
            "check_incomplete", "blocker", "planguard",
            f"could not check {err}; a GO cannot be given on a check that did not run",
            "-- run compare again when the lock is released, or raise --lock-timeout",
        ))
    return results, findings


def compare(old_dsn: str, new_dsn: str, workload: Workload, *, repeat: int = 5,
            thresholds: Thresholds | None = None, limits: db.SessionLimits | None = None,
            progress: Progress | None = None) -> Comparison:
    """Run ``workload`` on both clusters at once and return the full comparison."""
    thresholds = thresholds or Thresholds()
    limits = limits or db.SessionLimits()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="planguard") as pool:
        f_old = pool.submit(_run_side, "old", old_dsn, workload, repeat, limits, False, progress)
        f_new = pool.submit(_run_side, "new", new_dsn, workload, repeat, limits, True, progress)
        old_side, new_side = f_old.result(), f_new.result()
    results, findings = judge(workload, old_side, new_side, thresholds)
    assert old_side.info and new_side.info
    return Comparison(
        old=old_side.info, new=new_side.info, workload=workload, statements=tuple(results),
        findings=tuple(findings), verdict=decide(findings), thresholds=thresholds, repeat=repeat,
        started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - t0,
        tables=new_side.tables,
    )


def plan_indexes(m: Measurement) -> tuple[str, ...]:
    return indexes_used(m.plan) if m.plan else ()

