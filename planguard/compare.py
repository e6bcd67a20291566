"""``compare``: run a workload on OLD and NEW in lockstep and judge the difference.

The I/O is ``planguard.runner`` (both clusters step by step, run times taken in pairs);
``judge`` is pure: calls, changes, causes and findings from what the two sides recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from planguard import db, runner
from planguard.calls import SEVERITY, Call, classify, same_shapes
from planguard.checks import freshness
from planguard.checks.readiness import ClusterSnapshot, evaluate_all, merge_findings
from planguard.config import Thresholds
from planguard.diff import Change, diff_plans, runtime_changes
from planguard.findings import Finding, human_size, listing, sql_literal
from planguard.measure import Digest, Measurement, summarize
from planguard.params import result_shape
from planguard.plan import Plan, indexes_used, relations
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
from planguard.sampling import fill_values, needs_values
from planguard.timing import NoiseFloor, noise_floor
from planguard.verdict import Verdict, decide
from planguard.workload import Statement, Workload, is_guess

Progress = Callable[[str], None]


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


def _judged(r: StatementResult) -> str | None:
    """None when the verdict judged the statement, else why not."""
    if r.status == "skipped":
        return r.reason
    if any(p.old.ok and p.new.ok for p in r.param_sets):
        return None
    if any(p.new.error is not None and p.old.error is None for p in r.param_sets):
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
class Load:
    """The statement executions planguard ran on one side, warm-ups included."""

    executions: int
    server_ms: float  # their planning plus execution time


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
    noise: NoiseFloor | None = None  # measured on the clusters during this comparison
    load: tuple[Load, Load] | None = None  # what planguard asked of OLD and of NEW
    coverage: Coverage | None = None


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
    """Most likely causes of a regression, with the SQL that addresses each.

    With the same plan on both sides the planner is not the cause: neither statistics nor a
    version's planner are named then (``_same_plan_causes``).
    """
    if same_shapes(result.old, result.new):
        return _same_plan_causes(result, old, new, context)
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
    settings = _differing_settings(context, _plans_with)
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


# Settings that change how the same plan executes, not which plan is chosen.
EXECUTOR_SETTINGS = {"work_mem", "hash_mem_multiplier", "jit", "jit_above_cost", "jit_inline_above_cost",
                     "jit_optimize_above_cost", "max_parallel_workers", "max_parallel_workers_per_gather",
                     "max_worker_processes", "effective_io_concurrency", "maintenance_io_concurrency",
                     "temp_buffers"}


def _differing_settings(context: Sequence[Finding], which: Callable[[str], bool]) -> list[str]:
    return sorted({f.object for f in context if f.kind == "setting_diff" and f.severity != "info"
                   and which(f.object)})


def _executor_setting(setting_object: str) -> bool:
    return setting_object.split(" ", 1)[0] in EXECUTOR_SETTINGS


def _same_plan_causes(result: ParamSetResult, old: ServerInfo, new: ServerInfo,
                      context: Sequence[Finding]) -> tuple[list[str], list[str]]:
    """What makes the same plan slower: what ran differently, never what the planner chose."""
    causes: list[str] = []
    fixes: list[str] = []
    for ch in result.changes:
        if ch.kind == "spill":
            causes.append(f"the same plan spilled to disk on NEW only ({ch.detail})")
            fixes.append("SHOW work_mem; SHOW hash_mem_multiplier;  -- on both: lower on NEW?")
        elif ch.kind == "workers":
            causes.append(f"NEW ran short of parallel workers: {ch.detail}")
            fixes.append("SHOW max_parallel_workers; SHOW max_worker_processes;  -- compare with OLD")
    o_jit = result.old.plan.jit if result.old.plan else None
    n_jit = result.new.plan.jit if result.new.plan else None
    if n_jit and not o_jit:
        causes.append(f"JIT compiled the statement on NEW only ({n_jit.get('Functions', '?')} functions)")
        fixes.append("-- test without JIT, then compare jit and jit_above_cost on both:\nSET jit = off;")
    ob, nb = result.old.buffers, result.new.buffers
    if nb > ob * 1.5 and not any(ch.kind == "spill" for ch in result.changes):
        causes.append(f"the same plan reads {nb / max(ob, 1):.1f}× the buffers on NEW "
                      "(bloat, or another physical order of the rows)")
        fixes.append("-- compare table and index sizes on both; VACUUM, or REINDEX CONCURRENTLY a "
                     "bloated index")
    settings = _differing_settings(context, _executor_setting)
    if settings:
        causes.append(f"settings that change how a plan runs differ: {', '.join(settings[:6])}")
        fixes.append("-- align them (see the setting_diff findings), then compare again")
    if not causes:
        versions = (f" and executor changes between PostgreSQL {old.major} and {new.major}"
                    if old.major != new.major else "")
        causes.append("not the planner (the same plan and buffers on both); NEW's CPU (speed, steal, "
                      f"other load), the functions the statement calls{versions}")
        fixes.append("-- the plan is the same: compare CPU, function definitions and JIT on both")
    return causes, fixes


def _statement_findings(results: list[StatementResult], context: list[Finding], workload: Workload,
                        old: ServerInfo, new: ServerInfo, thresholds: Thresholds,
                        noise: NoiseFloor | None = None) -> list[Finding]:
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
        elif res.status == "slower_same_plan" and dec is not None:
            out.append(_same_plan_finding(res, dec, obj, rate, old, new, context, thresholds))
        elif res.status == "unstable" and dec is not None:
            out.append(Finding(
                "unstable_timing", "warning", obj,
                f"{obj} ({rate}) with parameters '{dec.label}': {dec.call.reason}. The runs do not "
                "settle whether NEW is slower, and nothing deterministic (plan, buffers) says it is.",
                "-- run compare again when both clusters are quiet, or with a higher --repeat",
            ))
        elif res.status == "error" and dec is not None:
            new_only = dec.new.error is not None and dec.old.error is None
            both = dec.new.error is not None and dec.old.error is not None
            guesses = [f"${i}" for i, src in enumerate(dec.sources, 1) if is_guess(src)]
            why = (f" with parameters '{dec.label}', whose values for {listing(guesses)} are guesses "
                   "(see their sources)" if both and guesses else "")
            out.append(Finding(
                "query_error", "blocker" if new_only else ("warning" if both else "info"), obj,
                f"{obj} ({rate}) {dec.call.reason}{why}",
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
            more = dec.new.buffers >= dec.old.buffers * thresholds.buffers_ratio and \
                dec.new.buffers - dec.old.buffers >= thresholds.min_buffers_delta
            out.append(Finding(
                "plan_changed", "warning" if more else "info", obj,
                f"{obj}: {'; '.join(c.detail for c in dec.changes) or 'another plan'}; not slower: "
                f"{dec.call.reason}"
                + (". It reads far more buffers, which a warm cache hides: on a cold or busy NEW "
                   "it may be slower" if more else ""),
                "-- no action needed if it stays fast; review it if the statement is latency-critical",
            ))
        out.extend(_generic_findings(res, obj, rate, thresholds, noise))
        out.extend(_result_findings(res, obj))
        out.extend(_empty_results(res, obj))
    return out


def _empty_results(res: StatementResult, obj: str) -> list[Finding]:
    """A set that finds nothing on OLD, where OLD's statistics say the statement returns rows:
    its timings may not stand for the calls production makes."""
    s = res.statement
    per_call = s.rows_per_call
    if s.kind != "select" or not per_call or per_call < 1:
        return []
    empty = [p.label for p in res.param_sets
             if p.old.plan is not None and p.old.plan.root.actual_rows == 0]
    if not empty:
        return []
    return [Finding(
        "empty_result", "info", obj,
        f"{obj} returns no row on OLD with parameters {listing([repr(e) for e in empty])}, where "
        f"pg_stat_statements says it returned {per_call:,.1f} rows per call: those timings may not "
        "stand for production's calls.",
        "-- give it real values: capture with --from-log, or add \"param_sets\" to the workload file",
    )]


def _large(call: Call, t: Thresholds) -> bool:
    ev = call.evidence
    return ev is not None and ev.ratio >= t.same_plan_block_ratio and \
        ev.new_ms - ev.old_ms >= t.same_plan_block_ms


def _same_plan_finding(res: StatementResult, dec: ParamSetResult, obj: str, rate: str, old: ServerInfo,
                       new: ServerInfo, context: Sequence[Finding], t: Thresholds) -> Finding:
    """A slowdown with the same plan and buffers: a warning with its evidence; a blocker only
    when large, confirmed by an independent second round of pairs, and heavy at production rates."""
    causes, fixes = _same_plan_causes(dec, old, new, context)
    conf = dec.confirmation
    severity, load = _load_text(impact_of(res.statement, dec), t, dec.label)
    if not _large(dec.call, t):
        verdict = (f"That is below the {t.same_plan_block_ratio:g}× and {t.same_plan_block_ms:g} ms from "
                   "which a same-plan slowdown blocks, so it warns.")
        severity = "warning"
    elif conf is None or conf.call.status != "slower_same_plan" or not _large(conf.call, t):
        what = "was not taken" if conf is None else f"did not confirm it ({conf.call.reason})"
        verdict = f"A second, independent round of pairs {what}, so it warns."
        severity = "warning"
    else:
        verdict = f"A second, independent round of pairs confirmed it ({conf.call.reason}). {load}"
    return Finding(
        "slower_same_plan", severity, obj,
        f"{obj} ({rate}) is slower on NEW with the same plan and the same buffers, parameters "
        f"'{dec.label}': {dec.call.reason}. {verdict} What to check: {'; '.join(causes)}.",
        "\n".join(dict.fromkeys(fixes)),
    )


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


SLOWER = ("regressed", "slower_same_plan")


def _generic_findings(res: StatementResult, obj: str, rate: str, thresholds: Thresholds,
                      noise: NoiseFloor | None = None) -> list[Finding]:
    """Generic plans: regressed against OLD's, or much slower than NEW's own custom plan.

    Custom and generic runs are separate series, not pairs: those comparisons are unpaired.
    """
    out: list[Finding] = []
    for p in res.param_sets:
        g = p.generic
        if g is None or not g.new.ok or not p.new.ok or g.auto_new is False:
            continue
        slower = classify(p.new, g.new, thresholds, noise, paired=False)
        if slower.status in SLOWER:
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
        flip = classify(p.old, g.new, thresholds, noise, paired=False)
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
        if g is None or g.call.status not in SLOWER:
            continue
        picks = {True: "NEW's plan cache switches to this generic plan after 5 executions",
                 False: "NEW's plan cache keeps custom plans for these values",
                 None: "whether NEW's plan cache would pick it is unknown (PostgreSQL < 14)"}[g.auto_new]
        # A blocker is a flip to a worse generic plan (other work) that NEW would use.  The same
        # plan only slower (a different executor or build) would hit custom plans too.
        flipped = g.call.status == "regressed"
        out.append(Finding(
            "generic_plan_regression", "blocker" if g.auto_new and flipped else "warning", obj,
            f"{obj} ({rate}) as a prepared statement: the generic plan is slower with parameters "
            f"'{p.label}': {g.call.reason}. {picks}. Plan: "
            + ("; ".join(c.detail for c in g.changes) or "same plan") + ".",
            "-- fix statistics first (ANALYZE); if it persists, keep custom plans for this role:\n"
            "ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;",
        ))
        break
    return out


COLD_BLOCKS = 1000  # reads on NEW's first executions from which its cold cache is worth saying


def _cold_cache(old: SideRecord, new: SideRecord) -> list[Finding]:
    """NEW read much more from outside shared buffers on its first executions than OLD: say so,
    and that the timings were taken warm (the postmortem's team first blamed a cold cache)."""
    first_new = sum(w.first_read for w in new.warmups.values())
    first_old = sum(w.first_read for w in old.warmups.values())
    if first_new < COLD_BLOCKS or first_new < 2 * first_old:
        return []
    rels: dict[str, int] = {}
    for w in new.warmups.values():
        for rel, blocks in w.reads_by_relation:
            rels[rel] = rels.get(rel, 0) + blocks
    top = sorted(rels, key=lambda r: -rels[r])[:5]
    statements = len({k[0] for k, w in new.warmups.items() if w.first_read})
    still = sum(w.last_read for w in new.warmups.values())
    most = max(w.runs for w in new.warmups.values())
    message = (
        f"NEW's cache was cold: the first executions of {statements} statements read {first_new:,} "
        f"blocks ({human_size(first_new * 8192)}) from outside shared buffers, OLD's {first_old:,}. "
        f"Each parameter set was warmed up before it was measured (until its reads stopped falling, "
        f"at most {runner.WARMUP_MAX_RUNS} runs; {most} here), so the timings compare warm caches"
        + (f"; {still:,} blocks were still read on the last warm-up runs (data larger than shared "
           "buffers)" if still else "")
        + ". Right after the switch, NEW's first executions will be slower until its cache warms"
        + (f"; most was read from {listing(top)}." if top else "."))
    remediation = "CREATE EXTENSION IF NOT EXISTS pg_prewarm;  -- on NEW, before the switch\n" + "\n".join(
        f"SELECT pg_prewarm({sql_literal(rel)});" for rel in top)
    return [Finding("cold_cache", "info", "NEW", message, remediation)]


def _measurement(rec: SideRecord, key: Key) -> Measurement:
    warmup = rec.warmups.get(key)
    if key in rec.errors:
        return Measurement(error=rec.errors[key], warmup=warmup)
    runs = rec.runs.get(key)
    return summarize(runs, warmup) if runs else Measurement(error="not run", warmup=warmup)


def _measured(old: SideRecord, new: SideRecord, key: Key, thresholds: Thresholds, noise: NoiseFloor,
              ) -> tuple[Measurement, Measurement, Call, tuple[Change, ...]]:
    o, n = _measurement(old, key), _measurement(new, key)
    changes = (diff_plans(o.plan, n.plan) + runtime_changes(o.plan, n.plan)) if o.plan and n.plan else ()
    return o, n, classify(o, n, thresholds, noise), changes


def _result_check(stmt: Statement, label: str, old: SideRecord, new: SideRecord) -> ResultCheck | None:
    key = (stmt.key, label)
    if key not in old.digests and key not in new.digests:
        return None
    shape = result_shape(stmt.query)
    assert shape is not None
    return ResultCheck(old.digests.get(key, "not run"), new.digests.get(key, "not run"),
                       shape.ordered, shape.deterministic)


def _plan_only(stmt: Statement, old_side: SideRecord, new_side: SideRecord) -> PlanOnly | None:
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


@dataclass(frozen=True)
class Judgement:
    """The pure part of a comparison's outcome."""

    statements: tuple[StatementResult, ...]
    findings: tuple[Finding, ...]
    noise: NoiseFloor
    coverage: Coverage


def judge(workload: Workload, old_side: SideRecord, new_side: SideRecord, thresholds: Thresholds,
          ) -> Judgement:
    """Pure part of the comparison: calls, changes and findings from both sides' records."""
    assert old_side.info and new_side.info
    noise = noise_floor([r.execution_ms for r in runs]
                        for rec in (old_side, new_side) for runs in rec.runs.values())
    results: list[StatementResult] = []
    for stmt in workload.statements:
        sets = param_sets_of(stmt)
        if stmt.skip_reason or not sets:
            results.append(StatementResult(stmt, "skipped", stmt.skip_reason or "no parameter set",
                                           plan_only=_plan_only(stmt, old_side, new_side)))
            continue
        ps_results = []
        for ps in sets:
            o, n, call, changes = _measured(old_side, new_side, (stmt.key, ps.label, CUSTOM), thresholds,
                                            noise)
            generic = confirmation = None
            gkey, ckey = (stmt.key, ps.label, GENERIC), (stmt.key, ps.label, CONFIRM)
            if any(gkey in side.runs or gkey in side.errors for side in (old_side, new_side)):
                go, gn, gcall, gchanges = _measured(old_side, new_side, gkey, thresholds, noise)
                generic = GenericResult(go, gn, gcall, gchanges, old_side.auto_generic.get(stmt.key),
                                        new_side.auto_generic.get(stmt.key))
            if any(ckey in side.runs or ckey in side.errors for side in (old_side, new_side)):
                co, cn, ccall, _ = _measured(old_side, new_side, ckey, thresholds, noise)
                confirmation = Round(co, cn, ccall)
            ps_results.append(ParamSetResult(ps.label, ps.values, o, n, call, changes, generic,
                                             _result_check(stmt, ps.label, old_side, new_side),
                                             confirmation, ps.sources))
        worst = min(ps_results, key=lambda p: SEVERITY[p.call.status])
        results.append(StatementResult(stmt, worst.call.status, worst.call.reason, tuple(ps_results)))
    # Catalog findings (statistics freshness included, for every table) from the readiness
    # snapshots; a family that could not be read is a check_incomplete blocker there.
    context: list[Finding] = []
    for old_db, new_db in _database_pairs(old_side.readiness, new_side.readiness):
        context += evaluate_all(old_side.readiness[old_db], new_side.readiness[new_db], thresholds,
                                _used_on_new(results, old_db, workload))
    statement_findings = _statement_findings(results, context, workload, old_side.info, new_side.info,
                                             thresholds, noise)
    coverage = coverage_of(results)
    findings = merge_findings(context, statement_findings + _cold_cache(old_side, new_side)
                              + _coverage_findings(coverage, thresholds))
    return Judgement(tuple(results), tuple(findings), noise, coverage)


def _coverage_findings(cov: Coverage, t: Thresholds) -> list[Finding]:
    """A GO that rests on a tenth of the workload is not a GO."""
    if cov.share >= t.min_coverage or not cov.statements:
        return []
    missing = [f"statement {r.statement.short_id} ({why})" for r, why in
               sorted(cov.unjudged, key=lambda x: -x[0].statement.total_ms)]
    return [Finding(
        "incomplete_coverage", "blocker", "workload",
        f"The verdict {cov.text()}, below the {t.min_coverage:.0%} it needs (min_coverage): "
        f"not judged: {listing(missing, 6)}.",
        "-- give the statements values: capture with --from-log, or add \"param_sets\" to the "
        "workload file; or lower min_coverage knowingly",
    )]


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
            check_results: bool = False, save_recording: Path | None = None) -> Comparison:
    """Run ``workload`` on both clusters in lockstep and return the full comparison.

    ``save_recording``: also keep what both clusters answered (every run's plan and timing,
    the catalog snapshots), which ``comparison_of`` judges again without a server.
    """
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
    rec = runner.run(old_dsn, new_dsn, workload, repeat=repeat, thresholds=thresholds, limits=limits,
                     progress=progress, generic=generic, redact=redact, check_results=check_results)
    if save_recording is not None:
        rec.save(save_recording)
    return comparison_of(workload, rec, thresholds, repeat=repeat, redact=redact,
                         started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - t0)


def comparison_of(workload: Workload, rec: Recording, thresholds: Thresholds, *, repeat: int,
                  redact: bool, started_at: str, duration_s: float) -> Comparison:
    """The comparison judged from a recording (pure)."""
    judged = judge(workload, rec.old, rec.new, thresholds)
    assert rec.old.info and rec.new.info
    return Comparison(
        old=rec.old.info, new=rec.new.info, workload=workload, statements=judged.statements,
        findings=judged.findings, verdict=decide(judged.findings), thresholds=thresholds, repeat=repeat,
        started_at=started_at, duration_s=duration_s,
        tables=touched_tables(workload, judged.statements, rec.new.readiness), redacted=redact,
        impact=workload_impact(judged.statements), noise=judged.noise, coverage=judged.coverage,
        load=(Load(rec.old.executions, rec.old.server_ms), Load(rec.new.executions, rec.new.server_ms)),
    )
