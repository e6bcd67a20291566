"""``compare``: run a workload on OLD and NEW concurrently and judge the difference.

I/O lives in ``_run_side`` (one connection per cluster, one thread each); the rest
(summaries, calls, findings, verdict) is pure and works on what the sides recorded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import psycopg

from planguard import db
from planguard.capture import fill_values, needs_values
from planguard.checks import Finding, freshness
from planguard.checks.readiness import ClusterSnapshot, evaluate_all, gather_all, merge_findings
from planguard.config import Thresholds
from planguard.diff import SEVERITY, Call, Change, Measurement, classify, diff_plans, runtime_changes
from planguard.explain import (
    Digest,
    QueryFailed,
    Run,
    auto_chooses_generic,
    measure,
    measure_generic,
    plan_only,
    result_digest,
)
from planguard.params import ParseFailure, analyze, result_shape
from planguard.plan import Plan, indexes_used, relations, shape_fingerprint
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
class ParamSetResult:
    label: str
    values: tuple[str | None, ...]
    old: Measurement
    new: Measurement
    call: Call
    changes: tuple[Change, ...]
    generic: GenericResult | None = None
    results: ResultCheck | None = None


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
class StatementResult:
    statement: Statement
    status: str
    reason: str
    param_sets: tuple[ParamSetResult, ...] = ()
    plan_only: PlanOnly | None = None

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
    redacted: bool = False
    impact: WorkloadImpact | None = None


def mask_quoted(message: str) -> str:
    """An error message without the values it quotes."""
    return re.sub(r'"[^"]*"', '"…"', message)


Key = tuple[str, str, str]  # (statement fingerprint, parameter set label, "custom" | "generic")


@dataclass
class _Side:
    info: ServerInfo | None = None
    runs: dict[Key, list[Run]] = field(default_factory=dict)
    errors: dict[Key, str] = field(default_factory=dict)
    auto_generic: dict[str, bool | None] = field(default_factory=dict)  # by statement fingerprint
    plan_only: dict[str, Plan | str] = field(default_factory=dict)
    readiness: dict[str, ClusterSnapshot] = field(default_factory=dict)  # by database
    digests: dict[tuple[str, str], Digest | str] = field(default_factory=dict)


def param_sets_of(stmt: Statement) -> tuple[ParamSet, ...]:
    """The sets to run; a statement without parameters runs once with none."""
    if stmt.param_sets:
        return stmt.param_sets
    if not stmt.bindings:
        return (ParamSet("no parameters", ()),)
    return ()


def _n_params(query: str) -> int:
    try:
        return analyze(query).max_param
    except ParseFailure:
        return 0


def _run_statement(conn: psycopg.Connection, side: _Side, stmt: Statement, repeat: int,
                   generic: bool, check_results: bool = False) -> None:
    assert side.info is not None
    if stmt.skip_reason:
        n = _n_params(stmt.query)
        if n:
            try:
                side.plan_only[stmt.key] = plan_only(conn, stmt.query, n, side.info.version_num)
            except QueryFailed as exc:
                side.plan_only[stmt.key] = str(exc)
        return
    sets = param_sets_of(stmt)
    for ps in sets:
        key = (stmt.key, ps.label, "custom")
        try:
            side.runs[key] = measure(conn, stmt.query, ps.values, repeat)
        except QueryFailed as exc:
            side.errors[key] = str(exc)
        if check_results and result_shape(stmt.query) is not None:
            try:
                side.digests[(stmt.key, ps.label)] = result_digest(conn, stmt.query, ps.values)
            except QueryFailed as exc:
                side.digests[(stmt.key, ps.label)] = str(exc)
        if not (generic and ps.values):
            continue
        gkey = (stmt.key, ps.label, "generic")
        try:
            side.runs[gkey] = measure_generic(conn, stmt.query, ps.values, repeat)
        except QueryFailed as exc:
            side.errors[gkey] = str(exc)
    if generic and sets and sets[0].values:
        # The plan cache decides from the custom plans of the calls it sees, mostly typical
        # ones: the first (typical) set stands for them; the decision then holds for every value.
        try:
            side.auto_generic[stmt.key] = auto_chooses_generic(
                conn, stmt.query, sets[0].values, side.info.version_num)
        except QueryFailed:
            side.auto_generic[stmt.key] = None


def _run_side(label: str, dsn: str, workload: Workload, repeat: int, limits: db.SessionLimits,
              progress: Progress | None, generic: bool = True, redact: bool = False,
              check_results: bool = False) -> _Side:
    """Everything one cluster is asked, database by database, on one connection at a time."""
    side = _Side()
    databases = workload.databases or (None,)
    multi = len(databases) > 1  # then each statement runs in the database it was captured in
    done = 0
    for dbname in databases:
        dsn_db = db.with_dbname(dsn, dbname, override=multi)
        todo = [s for s in workload.statements if (s.database or workload.source.database) == dbname]
        with db.connect(dsn_db, label=label if not multi else f"{label} ({dbname})", limits=limits) as conn:
            if side.info is None:
                side.info = ServerInfo(label, db.server_version(conn), db.server_version_num(conn),
                                       db.redact_dsn(dsn))
            # The catalog first, before any statement runs: rolled-back INSERTs still draw
            # sequence values.  Its statistics family is also what the report shows per table.
            side.readiness[str(conn.info.dbname)] = gather_all(conn)
            for stmt in todo:
                done += 1
                if progress:
                    progress(f"{label}: [{done}/{len(workload.statements)}] {stmt.short_id} "
                             f"{stmt.query[:60]!r}")
                _run_statement(conn, side, stmt, repeat, generic, check_results)
    if redact:  # error messages can quote input values: invalid input syntax ...: "abc"
        side.errors = {k: mask_quoted(v) for k, v in side.errors.items()}
        side.plan_only = {k: mask_quoted(v) if isinstance(v, str) else v for k, v in side.plan_only.items()}
    return side


def _summaries(old: _Side, new: _Side) -> dict[tuple[str, str, str, str], Measurement]:
    """Medians per (statement, parameter set, mode, side), tabulated with pandas."""
    records = [
        {"fp": fp, "ps": ps, "mode": mode, "side": side_name, "run": i, "ms": r.execution_ms,
         "shared": r.shared_buffers, "temp": r.temp_buffers, "shape": shape_fingerprint(r.plan)}
        for side_name, side in (("old", old), ("new", new))
        for (fp, ps, mode), runs in side.runs.items()
        for i, r in enumerate(runs)
    ]
    out: dict[tuple[str, str, str, str], Measurement] = {}
    if records:
        df = pd.DataFrame.from_records(records)
        med = df.groupby(["fp", "ps", "mode", "side"]).agg(
            median_ms=("ms", "median"), shared=("shared", "median"), temp=("temp", "median"),
            runs=("run", "size"), shapes=("shape", lambda s: tuple(sorted(set(s)))),
        )
        for (fp, ps, mode, side_name), row in med.iterrows():
            runs = (old if side_name == "old" else new).runs[(fp, ps, mode)]
            typical = min(runs, key=lambda r: abs(r.execution_ms - row["median_ms"]))
            out[(fp, ps, mode, side_name)] = Measurement(
                median_ms=float(row["median_ms"]), shared_buffers=int(row["shared"]),
                temp_buffers=int(row["temp"]), runs=int(row["runs"]), plan=typical.plan,
                plan_fingerprints=row["shapes"], times_ms=tuple(r.execution_ms for r in runs),
            )
    for side_name, side in (("old", old), ("new", new)):
        for (fp, ps, mode), err in side.errors.items():
            out[(fp, ps, mode, side_name)] = Measurement(error=err)
    return out


PLANNER_SETTINGS = {
    "random_page_cost", "seq_page_cost", "cpu_tuple_cost", "cpu_index_tuple_cost", "cpu_operator_cost",
    "effective_cache_size", "effective_io_concurrency", "work_mem", "hash_mem_multiplier",
    "default_statistics_target", "plan_cache_mode", "from_collapse_limit", "join_collapse_limit",
    "constraint_exclusion", "cursor_tuple_fraction", "max_parallel_workers_per_gather",
    "min_parallel_table_scan_size", "min_parallel_index_scan_size", "parallel_setup_cost",
    "parallel_tuple_cost", "jit", "jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost",
    "geqo", "geqo_threshold", "recursive_worktable_factor",
}


def _plans_with(setting_object: str) -> bool:
    """Whether a setting_diff's setting changes what the planner chooses (not autovacuum, ...)."""
    name = setting_object.split(" ", 1)[0]
    return name.startswith("enable_") or name in PLANNER_SETTINGS


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"')


def _causes(result: ParamSetResult, never: set[str], stale: set[str], workload: Workload,
            old: ServerInfo, new: ServerInfo, context: Sequence[Finding] = (),
            ) -> tuple[list[str], list[str]]:
    """Most likely causes of a regression, with the SQL that addresses each."""
    causes: list[str] = []
    fixes: list[str] = []
    missing = {_bare(f.object): f for f in context if f.kind == "missing_index"}
    extra = {_bare(f.object): f for f in context if f.kind == "extra_index"}
    for ch in result.changes:
        if ch.kind == "index_new_only" and ch.index and ch.index in extra:
            causes.append(f"NEW's plan uses index {ch.index}, which exists on NEW only")
            fixes.append("-- if it was not meant to be there:\n"
                         f"DROP INDEX CONCURRENTLY {extra[ch.index].object};")
    for ch in result.changes:
        if ch.kind == "index_old_only" and ch.index and ch.index in missing:
            causes.append(f"index {ch.index}, which OLD's plan uses, is missing on NEW")
            fixes.append(missing[ch.index].remediation)
    plan_rels = set(relations(result.new.plan)) if result.new.plan else set()
    for rel in sorted(plan_rels & never):
        causes.append(f"{rel} has never been analyzed on NEW")
        fixes.append(f"ANALYZE {rel};")
    for rel in sorted(plan_rels & stale):
        causes.append(f"statistics of {rel} are stale on NEW")
        fixes.append(f"ANALYZE {rel};")
    for ch in result.changes:
        if ch.kind == "workers":
            causes.append(f"NEW ran short of parallel workers: {ch.detail}")
            fixes.append("SHOW max_parallel_workers; SHOW max_worker_processes;  -- compare with OLD")
        if ch.kind == "estimate_error" and ch.relation and ch.relation not in never | stale:
            causes.append(f"row estimates for {ch.relation} are off by 10x or more on NEW only "
                          "(statistics missing, stale or too coarse there)")
            fixes.append(f"ANALYZE {ch.relation};")
    for ch in result.changes:
        if ch.kind == "index_new_only" and ch.index:
            snap = workload.index(ch.index)
            if snap is not None and snap.idx_scan == 0:
                causes.append(f"NEW uses index {ch.index}, which OLD never used (idx_scan = 0)")
                if not fixes:
                    fixes.append(f"-- after fresh statistics, if NEW still prefers it:\n"
                                 f"DROP INDEX CONCURRENTLY {snap.name};")
    settings = sorted({f.object for f in context if f.kind == "setting_diff" and f.severity != "info"
                       and _plans_with(f.object)})
    if settings:
        causes.append(f"planner settings differ between OLD and NEW: {', '.join(settings[:6])}")
        fixes.append("-- align them (see the setting_diff findings), then compare again")
    if not causes:
        if old.major != new.major:
            causes.append(f"planner change between PostgreSQL {old.major} and {new.major}")
        else:
            causes.append("a different plan on NEW with no catalog explanation found")
        fixes.append("-- compare both plans in the report; check planner settings and statistics targets")
    return causes, fixes


def _statement_findings(results: list[StatementResult], context: list[Finding], workload: Workload,
                        old: ServerInfo, new: ServerInfo, thresholds: Thresholds) -> list[Finding]:
    """Findings about statements; ``context`` are the catalog findings that explain them."""
    never = {f.object for f in context if f.kind == "never_analyzed" and f.severity == "blocker"}
    stale = {f.object for f in context if f.kind == "stale_stats"}
    out: list[Finding] = []
    for res in results:
        s = res.statement
        obj = f"statement {s.short_id}" + (f" ({', '.join(s.tables[:2])})" if s.tables else "")
        rate = f"{s.calls:,} calls on OLD"
        dec = res.decisive
        if res.status == "regressed" and dec is not None:
            causes, fixes = _causes(dec, never, stale, workload, old, new, context)
            plan_change = "; ".join(c.detail for c in dec.changes) or "same plan"
            severity, load = _load_text(impact_of(s, dec), thresholds, dec.label)
            out.append(Finding(
                "plan_regression", severity, obj,
                f"{obj} ({rate}) regressed with parameters '{dec.label}': {dec.call.reason}. "
                f"{load} Plan: {plan_change}. Likely cause: {'; '.join(causes)}.",
                "\n".join(dict.fromkeys(fixes)),
            ))
        elif res.status == "unstable" and dec is not None:
            out.append(Finding(
                "unstable_timing", "warning", obj,
                f"{obj} ({rate}) with parameters '{dec.label}': {dec.call.reason}. The timings vary "
                "too much to call it a regression; the plan and buffers did not change enough to.",
                "-- run compare again when both clusters are quiet, or with a higher --repeat",
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
            po = res.plan_only
            if po is None:
                seen = ""
            elif po.error:
                seen = f" Its generic plan could not be compared ({po.error})."
            elif po.changes:
                seen = (" Its generic plans (compared without execution) differ: "
                        + "; ".join(c.detail for c in po.changes) + ".")
            else:
                seen = " Its generic plans (compared without execution) are the same."
            out.append(Finding(
                "statement_skipped", "warning" if po and po.changes else "info", obj,
                f"{obj} ({rate}) was not run: {res.reason}.{seen}",
                "-- add a parameter set for it in the workload file (\"param_sets\")",
            ))
        elif res.status == "plan_changed" and dec is not None:
            out.append(Finding(
                "plan_changed", "info", obj,
                f"{obj}: {'; '.join(c.detail for c in dec.changes)} (cost within thresholds)",
                "-- no action needed; review if the statement is latency-critical",
            ))
        out.extend(_generic_findings(res, obj, rate, thresholds))
        out.extend(_result_findings(res, obj))
    return out


def _result_findings(res: StatementResult, obj: str) -> list[Finding]:
    """NEW returning other rows than OLD is an error of its own, whatever the speed."""
    for p in res.param_sets:
        rc = p.results
        if rc is None or isinstance(rc.old, str) or isinstance(rc.new, str):
            continue
        outcome = rc.outcome
        if outcome in ("different_count", "different_rows"):
            what = (f"{rc.old.rows} rows on OLD, {rc.new.rows} on NEW" if outcome == "different_count"
                    else f"{rc.old.rows} rows on both, but not the same rows")
            return [Finding(
                "result_mismatch", "blocker", obj,
                f"{obj} returns different results with parameters '{p.label}': {what}. Check that "
                "both hold the same data (writes frozen?), then collations, extensions and functions.",
                "-- compare the rows: run the statement on both clusters with these parameters",
            )]
        if outcome == "different_order":
            return [Finding(
                "result_order", "warning", obj,
                f"{obj} with parameters '{p.label}' returns the same rows in a different order: "
                "its ORDER BY leaves ties, which each plan breaks its own way.",
                "-- add a unique column to the ORDER BY if the order matters to the application",
            )]
    return []


def _load_text(imp: Impact | None, thresholds: Thresholds, label: str) -> tuple[str, str]:
    """Severity of a regression from its load at production rates, and the sentence saying so."""
    if imp is None or imp.extra_sessions is None:
        return "blocker", "Its call rate is unknown (no statistics window), so it blocks."
    extra = imp.extra_sessions
    text = (f"At {imp.calls_per_second:,.2f} calls/s, if every call behaved like '{label}', NEW adds "
            f"{extra:,.3f} average active sessions ({imp.extra_db_seconds_per_hour or 0:,.0f} s of "
            "database time per hour)")
    if extra >= thresholds.impact_block_aas:
        return "blocker", text + "."
    return "warning", text + f": below the {thresholds.impact_block_aas} sessions that block."


def _generic_findings(res: StatementResult, obj: str, rate: str, thresholds: Thresholds) -> list[Finding]:
    """Generic plans: regressed against OLD's, or much slower than NEW's own custom plan."""
    out: list[Finding] = []
    for p in res.param_sets:
        g = p.generic
        if g is None or not g.new.ok or not p.new.ok or g.auto_new is False:
            continue
        slower = classify(p.new, g.new, thresholds)
        if slower.status == "regressed":
            out.append(Finding(
                "generic_plan_slower", "warning", obj,
                f"{obj} ({rate}) as a prepared statement on NEW: with parameters '{p.label}' the "
                f"generic plan is much slower than the custom plan ({slower.reason}), and the plan "
                "cache " + ("switches to it after 5 executions" if g.auto_new else
                            "may switch to it (PostgreSQL < 14: cannot tell)") + ".",
                "-- skewed values defeat generic plans; keep custom plans for the application role:\n"
                "ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;",
            ))
            break
    for p in res.param_sets:
        g = p.generic
        if g is None or not g.auto_new or g.auto_old is not False or not g.new.ok:
            continue
        # OLD's plan cache keeps custom plans, NEW's switches to the generic one: the
        # application gets OLD's custom plan before and NEW's generic plan after.
        flip = classify(p.old, g.new, thresholds)
        if flip.status == "regressed":
            out.append(Finding(
                "generic_plan_regression", "blocker", obj,
                f"{obj} ({rate}) as a prepared statement: OLD's plan cache keeps custom plans but "
                f"NEW's switches to the generic plan after 5 executions (a different plan_cache_mode "
                f"or cost estimates), and with parameters '{p.label}' that is slower: {flip.reason}.",
                "-- find why NEW prefers the generic plan (plan_cache_mode setting? statistics?):\n"
                "ALTER ROLE <app_role> SET plan_cache_mode = auto;  -- or force_custom_plan",
            ))
            return out
    for p in res.param_sets:
        g = p.generic
        if g is None or g.call.status != "regressed":
            continue
        picks = {True: "NEW's plan cache switches to this generic plan after 5 executions",
                 False: "NEW's plan cache keeps custom plans for these values",
                 None: "whether NEW's plan cache would pick it is unknown (PostgreSQL < 14)"}[g.auto_new]
        # A blocker is a flip to a worse generic plan that NEW would use.  The same plan only
        # slower (a different executor or build) would hit custom plans of that shape too.
        flipped = bool(g.changes) or g.new.buffers >= g.old.buffers * 2 + 100
        out.append(Finding(
            "generic_plan_regression", "blocker" if g.auto_new and flipped else "warning", obj,
            f"{obj} ({rate}) as a prepared statement: the generic plan regressed with parameters "
            f"'{p.label}': {g.call.reason}. {picks}. Plan: "
            + ("; ".join(c.detail for c in g.changes) or "same plan") + ".",
            "-- fix statistics first (ANALYZE); if it persists, keep custom plans for this role:\n"
            "ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;",
        ))
        break
    return out


def _measured(summary: dict[tuple[str, str, str, str], Measurement], fp: str, label: str,
              mode: str, thresholds: Thresholds) -> tuple[Measurement, Measurement, Call, tuple[Change, ...]]:
    o = summary.get((fp, label, mode, "old"), Measurement(error="not run"))
    n = summary.get((fp, label, mode, "new"), Measurement(error="not run"))
    changes = (diff_plans(o.plan, n.plan) + runtime_changes(o.plan, n.plan)) if o.plan and n.plan else ()
    return o, n, classify(o, n, thresholds), changes


def _result_check(stmt: Statement, label: str, old: _Side, new: _Side) -> ResultCheck | None:
    key = (stmt.key, label)
    if key not in old.digests and key not in new.digests:
        return None
    shape = result_shape(stmt.query)
    assert shape is not None
    return ResultCheck(old.digests.get(key, "not run"), new.digests.get(key, "not run"),
                       shape.ordered, shape.deterministic)


def _plan_only(stmt: Statement, old_side: _Side, new_side: _Side) -> PlanOnly | None:
    o, n = old_side.plan_only.get(stmt.key), new_side.plan_only.get(stmt.key)
    if o is None and n is None:
        return None
    errors = [f"{side}: {v}" for side, v in (("OLD", o), ("NEW", n)) if isinstance(v, str)]
    op = o if isinstance(o, Plan) else None
    np_ = n if isinstance(n, Plan) else None
    changes = diff_plans(op, np_) if op and np_ else ()
    return PlanOnly(op, np_, changes, "; ".join(errors) or None)


def _database_pairs(old: dict[str, ClusterSnapshot], new: dict[str, ClusterSnapshot],
                    ) -> list[tuple[str, str]]:
    """OLD's and NEW's databases to compare: the only one on each side whatever their names
    (``app`` may be restored as ``app_v2``), else by name."""
    if len(old) == 1 and len(new) == 1:
        return [(next(iter(old)), next(iter(new)))]
    return [(name, name) for name in sorted(set(old) & set(new))]


def _used_on_new(results: list[StatementResult], dbname: str, workload: Workload) -> frozenset[str]:
    """Indexes NEW's plans (custom and generic) used for the statements of one database."""
    used: set[str] = set()
    for r in results:
        if (r.statement.database or workload.source.database) not in (dbname, None):
            continue
        for p in r.param_sets:
            for m in (p.new, p.generic.new if p.generic else None):
                if m is not None and m.plan:
                    used.update(indexes_used(m.plan))
    return frozenset(used)


def judge(workload: Workload, old_side: _Side, new_side: _Side, thresholds: Thresholds,
          ) -> tuple[list[StatementResult], list[Finding]]:
    """Pure part of the comparison: calls, changes and findings from both sides' records."""
    assert old_side.info and new_side.info
    summary = _summaries(old_side, new_side)
    results: list[StatementResult] = []
    for stmt in workload.statements:
        sets = param_sets_of(stmt)
        if stmt.skip_reason or not sets:
            results.append(StatementResult(stmt, "skipped", stmt.skip_reason or "no parameter set",
                                           plan_only=_plan_only(stmt, old_side, new_side)))
            continue
        ps_results = []
        for ps in sets:
            o, n, call, changes = _measured(summary, stmt.key, ps.label, "custom", thresholds)
            generic = None
            gkey = (stmt.key, ps.label, "generic")
            if any(gkey in side.runs or gkey in side.errors for side in (old_side, new_side)):
                go, gn, gcall, gchanges = _measured(summary, stmt.key, ps.label, "generic",
                                                    thresholds)
                generic = GenericResult(go, gn, gcall, gchanges, old_side.auto_generic.get(stmt.key),
                                        new_side.auto_generic.get(stmt.key))
            ps_results.append(ParamSetResult(ps.label, ps.values, o, n, call, changes, generic,
                                             _result_check(stmt, ps.label, old_side, new_side)))
        worst = min(ps_results, key=lambda p: SEVERITY[p.call.status])
        results.append(StatementResult(stmt, worst.call.status, worst.call.reason, tuple(ps_results)))
    # Catalog findings (statistics freshness included, for every table) from the readiness
    # snapshots; a family that could not be read is a check_incomplete blocker there.
    context: list[Finding] = []
    for old_db, new_db in _database_pairs(old_side.readiness, new_side.readiness):
        context += evaluate_all(old_side.readiness[old_db], new_side.readiness[new_db], thresholds,
                                _used_on_new(results, old_db, workload))
    findings = merge_findings(context, _statement_findings(results, context, workload, old_side.info,
                                                           new_side.info, thresholds))
    return results, findings


def touched_tables(workload: Workload, results: Sequence[StatementResult],
                   new: dict[str, ClusterSnapshot]) -> tuple[freshness.TableStats, ...]:
    """NEW's statistics of the tables the workload reads (as captured, or in NEW's plans)."""
    names = {t for s in workload.statements for t in s.tables}
    names |= {rel for r in results for p in r.param_sets if p.new.plan for rel in relations(p.new.plan)}
    return tuple(sorted((t for snap in new.values() if snap.statistics for t in snap.statistics.tables
                         if t.name in names or t.name.replace('"', "") in names), key=lambda t: t.name))


def compare(old_dsn: str, new_dsn: str, workload: Workload, *, repeat: int = 5,
            thresholds: Thresholds | None = None, limits: db.SessionLimits | None = None,
            progress: Progress | None = None, generic: bool = True, redact: bool = False,
            check_results: bool = False) -> Comparison:
    """Run ``workload`` on both clusters at once and return the full comparison."""
    thresholds = thresholds or Thresholds()
    limits = limits or db.SessionLimits()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    redact = redact or workload.redacted
    if needs_values(workload):
        multi = len(workload.databases) > 1
        for dbname in workload.databases:
            with db.connect(db.with_dbname(old_dsn, dbname, override=multi), label="old",
                            limits=limits) as conn:
                workload = fill_values(conn, workload, database=dbname)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="planguard") as pool:
        f_old = pool.submit(_run_side, "old", old_dsn, workload, repeat, limits, progress,
                            generic, redact, check_results)
        f_new = pool.submit(_run_side, "new", new_dsn, workload, repeat, limits, progress,
                            generic, redact, check_results)
        old_side, new_side = f_old.result(), f_new.result()
        rounds = 0
        while (todo := _uncertain(old_side, new_side, thresholds)) and rounds < 3:
            rounds += 1
            extra = min(repeat, thresholds.max_runs - max(len(old_side.runs[k]) for k in todo))
            if extra <= 0:
                break
            if progress:
                progress(f"measuring {len(todo)} uncertain statement(s) again: {extra} more runs each")
            more = [pool.submit(_measure_more, label, dsn, workload, todo, extra, limits, side)
                    for label, dsn, side in (("old", old_dsn, old_side), ("new", new_dsn, new_side))]
            for f in more:
                f.result()
    results, findings = judge(workload, old_side, new_side, thresholds)
    assert old_side.info and new_side.info
    return Comparison(
        old=old_side.info, new=new_side.info, workload=workload, statements=tuple(results),
        findings=tuple(findings), verdict=decide(findings), thresholds=thresholds, repeat=repeat,
        started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - t0,
        tables=touched_tables(workload, results, new_side.readiness), redacted=redact,
        impact=workload_impact(results),
    )


def _uncertain(old: _Side, new: _Side, thresholds: Thresholds) -> set[Key]:
    """Runs whose call is ``unstable``: worth measuring again (pure)."""
    summary = _summaries(old, new)
    out: set[Key] = set()
    for key in set(old.runs) & set(new.runs):
        o, n = summary.get((*key, "old")), summary.get((*key, "new"))
        if o and n and classify(o, n, thresholds).status == "unstable":
            out.add(key)
    return out


def _measure_more(label: str, dsn: str, workload: Workload, keys: set[Key], extra: int,
                  limits: db.SessionLimits, side: _Side) -> None:
    """Add ``extra`` runs (no warm-up: the statement just ran) for ``keys`` on one cluster."""
    by_key = {s.key: s for s in workload.statements}
    databases = workload.databases or (None,)
    multi = len(databases) > 1
    for dbname in databases:
        mine = [k for k in sorted(keys) if (by_key[k[0]].database or workload.source.database) == dbname]
        if not mine:
            continue
        with db.connect(db.with_dbname(dsn, dbname, override=multi), label=label, limits=limits) as conn:
            for key in mine:
                stmt = by_key[key[0]]
                values = next(p.values for p in param_sets_of(stmt) if p.label == key[1])
                run = measure_generic if key[2] == "generic" else measure
                try:
                    side.runs[key] = side.runs[key] + run(conn, stmt.query, values, extra, warmup=0)
                except QueryFailed:
                    continue  # keep what was measured; the call stays as it is



