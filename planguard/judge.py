"""Judge a recorded comparison (pure): calls, changes, causes, findings and the verdict.

``judge`` decides from what both clusters answered (``planguard.recording``) alone: every
parameter set's call (``planguard.calls``), the plan changes (``planguard.diff``), the
catalog findings (``planguard.checks``), then the findings about statements, each with its
typed causes (``planguard.causes``), the cold-cache note and the coverage.
``comparison_of`` wraps all of it into the ``Comparison`` the reports render.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from planguard.calls import SEVERITY, Call, classify, noise_of
from planguard.causes import cause_fixes, cause_text, regression_causes, same_plan_causes
from planguard.checks.freshness import TableStats
from planguard.checks.readiness import ClusterSnapshot, evaluate_all, merge_findings
from planguard.config import Thresholds
from planguard.diff import Change, diff_plans, runtime_changes
from planguard.findings import (
    ACTIVITY_COUNTED,
    COLD_CACHE,
    EMPTY_RESULT,
    GENERIC_PLAN_REGRESSION,
    GENERIC_PLAN_SLOWER,
    INCOMPLETE_COVERAGE,
    NOT_MEASURED,
    PLAN_CHANGED,
    PLAN_REGRESSION,
    QUERY_ERROR,
    RESULT_MISMATCH,
    RESULT_ORDER,
    RUN_STOPPED,
    SAME_CLUSTER,
    SETTING_DIFF,
    SLOWER_SAME_PLAN,
    STATEMENT_SKIPPED,
    UNSTABLE_TIMING,
    Cause,
    Finding,
    Subject,
    human_size,
    listing,
    quoted_ident,
    sql_literal,
)
from planguard.heap import long_lived
from planguard.measure import NOT_FINISHED, WARMUP_MAX_RUNS, Measurement, summarize
from planguard.model import (
    NOT_REACHED,
    Comparison,
    Coverage,
    GenericResult,
    Impact,
    Load,
    ParamSetResult,
    PlanOnly,
    ResultCheck,
    Round,
    StatementResult,
    coverage_of,
    impact_of,
    workload_impact,
)
from planguard.params import result_shape
from planguard.plan import Plan, indexes_used, relations
from planguard.recording import (
    BUDGET,
    CONFIRM,
    CUSTOM,
    FAULT,
    GENERIC,
    INTERRUPTED,
    Key,
    Recording,
    ServerInfo,
    SideRecord,
    Stopped,
    param_sets_of,
)
from planguard.timing import NoiseFloor
from planguard.verdict import decide
from planguard.workload import Statement, Workload, is_guess


def _statement_findings(results: list[StatementResult], context: list[Finding], workload: Workload,
                        old: ServerInfo, new: ServerInfo, thresholds: Thresholds,
                        noise: NoiseFloor | None = None) -> list[Finding]:
    """Findings about statements; ``context`` are the catalog findings that explain them."""
    out: list[Finding] = []
    for res in results:
        s = res.statement
        obj = f"statement {s.short_id}" + (f" ({', '.join(s.tables[:2])})" if s.tables else "")
        subject = Subject("statement", s.short_id, database=s.database)
        rate = f"{s.calls:,} calls on OLD"
        dec = res.decisive
        if res.status == "regressed" and dec is not None:
            causes = regression_causes(dec, context, old, new)
            plan_change = "; ".join(c.detail for c in dec.changes) or "same plan"
            imp = impact_of(s, dec)
            severity, load = _load_text(imp, thresholds, dec.label)
            out.append(Finding(
                PLAN_REGRESSION, severity, obj,
                f"{obj} ({rate}) regressed with parameters '{dec.label}': {dec.call.reason}. "
                f"{load} Plan: {plan_change}. Likely cause: {cause_text(causes)}.",
                cause_fixes(causes), subject, causes,
                headline=_headline(obj, dec.call, "slower on NEW", dec.label, imp,
                                   causes[0].detail if causes else "a planner change"),
                extra_active_sessions=imp.extra_sessions if imp else None,
            ))
        elif res.status == "slower_same_plan" and dec is not None:
            out.append(_same_plan_finding(res, dec, obj, subject, rate, old, new, context, thresholds))
        elif res.status == "unstable" and dec is not None:
            out.append(Finding(
                UNSTABLE_TIMING, "warning", obj,
                f"{obj} ({rate}) with parameters '{dec.label}': {dec.call.reason}. The runs do not "
                "settle whether NEW is slower, and nothing deterministic (plan, buffers) says it is.",
                "-- run compare again when both clusters are quiet, or with a higher --repeat", subject,
            ))
        elif res.status == "error" and dec is not None and (dec.new.not_measured or dec.old.not_measured):
            out.append(Finding(
                NOT_MEASURED, "warning", obj,
                f"{obj} ({rate}) with parameters '{dec.label}' was {dec.call.reason}: that says nothing "
                "about the statement, and it is not judged (it counts against coverage).",
                "-- find who holds the lock: SELECT pid, pg_blocking_pids(pid), query FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock';\n-- then complete the comparison: planguard compare OLD NEW "
                "-w WORKLOAD --resume RESULT.json", subject,
            ))
        elif res.status == "error" and dec is not None:
            new_only = dec.new.error is not None and dec.old.error is None
            both = dec.new.error is not None and dec.old.error is not None
            guesses = [f"${i}" for i, src in enumerate(dec.sources, 1) if is_guess(src)]
            why = (f" with parameters '{dec.label}', whose values for {listing(guesses)} are guesses "
                   "(see their sources)" if both and guesses else "")
            out.append(Finding(
                QUERY_ERROR, "blocker" if new_only else ("warning" if both else "info"), obj,
                f"{obj} ({rate}) {dec.call.reason}{why}",
                "-- make the statement valid on NEW (missing object, privilege or changed "
                "function?) before the cutover" if new_only else
                "-- fix the parameter values in the workload file, or the statement", subject,
            ))
        elif res.not_reached:
            pass  # the run stopped before it: run_stopped says so, once
        elif res.status == "skipped":
            po = res.plan_only
            if po is None:
                seen = ""
            elif po.error:
                seen = f" Its generic plan could not be compared ({po.error})."
            elif po.changes:
                seen = (" Its plans (compared without execution) differ: "
                        + "; ".join(c.detail for c in po.changes) + ".")
            else:
                seen = " Its plans (compared without execution) are the same."
            out.append(Finding(
                STATEMENT_SKIPPED, "warning" if po and po.changes else "info", obj,
                f"{obj} ({rate}) was not run: {res.reason}.{seen}",
                "-- add a parameter set for it in the workload file (\"param_sets\")", subject,
            ))
        elif res.status == "plan_changed" and dec is not None:
            more = dec.new.buffers >= dec.old.buffers * thresholds.buffers_ratio and \
                dec.new.buffers - dec.old.buffers >= thresholds.min_buffers_delta
            out.append(Finding(
                PLAN_CHANGED, "warning" if more else "info", obj,
                f"{obj}: {'; '.join(c.detail for c in dec.changes) or 'another plan'}; not slower: "
                f"{dec.call.reason}"
                + (". It reads far more buffers, which a warm cache hides: on a cold or busy NEW "
                   "it may be slower" if more else ""),
                "-- no action needed if it stays fast; review it if the statement is latency-critical",
                subject,
            ))
        out.extend(_generic_findings(res, obj, subject, rate, thresholds, noise, context))
        out.extend(_result_findings(res, obj, subject))
        out.extend(_empty_results(res, obj, subject))
    return out


def _empty_results(res: StatementResult, obj: str, subject: Subject) -> list[Finding]:
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
        EMPTY_RESULT, "info", obj,
        f"{obj} returns no row on OLD with parameters {listing([repr(e) for e in empty])}, where "
        f"pg_stat_statements says it returned {per_call:,.1f} rows per call: those timings may not "
        "stand for production's calls.",
        "-- give it real values: capture with --from-log, or add \"param_sets\" to the workload file",
        subject,
    )]


def _large(call: Call, t: Thresholds) -> bool:
    ev = call.evidence
    return ev is not None and ev.ratio >= t.same_plan_block_ratio and \
        ev.new_ms - ev.old_ms >= t.same_plan_block_ms


def _same_plan_finding(res: StatementResult, dec: ParamSetResult, obj: str, subject: Subject, rate: str,
                       old: ServerInfo, new: ServerInfo, context: Sequence[Finding], t: Thresholds,
                       ) -> Finding:
    """A slowdown with the same plan and buffers: a warning with its evidence; a blocker only
    when large, confirmed by an independent second round of pairs, and heavy at production rates."""
    causes = same_plan_causes(dec, old, new, context)
    conf = dec.confirmation
    imp = impact_of(res.statement, dec)
    severity, load = _load_text(imp, t, dec.label)
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
        SLOWER_SAME_PLAN, severity, obj,
        f"{obj} ({rate}) is slower on NEW with the same plan and the same buffers, parameters "
        f"'{dec.label}': {dec.call.reason}. {verdict} What to check: {cause_text(causes)}.",
        cause_fixes(causes), subject, causes,
        headline=_headline(obj, dec.call, "slower on NEW with the same plan and buffers", dec.label, imp,
                           causes[0].detail if causes else None),
        extra_active_sessions=imp.extra_sessions if imp else None,
    )


def _result_findings(res: StatementResult, obj: str, subject: Subject) -> list[Finding]:
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
                RESULT_MISMATCH, "blocker", obj,
                f"{obj} returns different results with parameters '{p.label}': {what}. Check that "
                "both hold the same data (writes frozen?), then collations, extensions and functions.",
                "-- compare the rows: run the statement on both clusters with these parameters", subject,
            )]
        if outcome == "different_order":
            return [Finding(
                RESULT_ORDER, "warning", obj,
                f"{obj} with parameters '{p.label}' returns the same rows in a different order: "
                "its ORDER BY leaves ties, which each plan breaks its own way.",
                "-- add a unique column to the ORDER BY if the order matters to the application", subject,
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


def _flip_fix(context: Sequence[Finding]) -> str:
    """What brings OLD's custom plans back when NEW's plan cache switches to the generic plan:
    OLD's plan_cache_mode when NEW's differs (the catalog's ``setting_diff``), else custom
    plans for the application's role once statistics are fixed (the same mode on both sides:
    NEW's cost estimates favour the generic plan)."""
    differ = next((f for f in context if f.kind == SETTING_DIFF and f.object == "plan_cache_mode"
                   and f.severity != "info"), None)
    if differ is not None:
        return "-- NEW's plan_cache_mode differs from OLD's: set OLD's\n" + differ.remediation
    return ("-- plan_cache_mode is the same on both: NEW's cost estimates favour the generic plan.\n"
            "-- Fix the statistics first (the ANALYZE steps); if it persists, keep custom plans for\n"
            "-- the application:\nALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;")


def _generic_findings(res: StatementResult, obj: str, subject: Subject, rate: str, thresholds: Thresholds,
                      noise: NoiseFloor | None = None, context: Sequence[Finding] = ()) -> list[Finding]:
    """Generic plans: regressed against OLD's, or much slower than NEW's own custom plan.

    Custom and generic runs are separate series, not pairs: those comparisons are unpaired.
    ``context``: the catalog findings (a plan_cache_mode that differs says how to fix a flip).
    """
    out: list[Finding] = []
    for p in res.param_sets:
        g = p.generic
        if g is None or not g.new.ok or not p.new.ok or g.auto_new is False:
            continue
        slower = classify(p.new, g.new, thresholds, noise, paired=False)
        if slower.status in SLOWER:
            out.append(Finding(
                GENERIC_PLAN_SLOWER, "warning", obj,
                f"{obj} ({rate}) as a prepared statement on NEW: with parameters '{p.label}' the "
                f"generic plan is much slower than the custom plan ({slower.reason}), and the plan "
                "cache " + ("switches to it after 5 executions" if g.auto_new else
                            "may switch to it (PostgreSQL < 14: cannot tell)") + ".",
                "-- skewed values defeat generic plans; keep custom plans for the application role:\n"
                "ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;", subject,
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
            flip_imp = (Impact(res.statement.calls_per_second, p.old.median_ms, g.new.median_ms)
                        if p.old.median_ms is not None and g.new.median_ms is not None else None)
            flip_fix = _flip_fix(context)
            out.append(Finding(
                GENERIC_PLAN_REGRESSION, "blocker", obj,
                f"{obj} ({rate}) as a prepared statement: OLD's plan cache keeps custom plans but "
                f"NEW's switches to the generic plan after 5 executions (a different plan_cache_mode "
                f"or cost estimates), and with parameters '{p.label}' that is slower: {flip.reason}.",
                flip_fix, subject,
                (Cause("plan_cache_flip", "OLD's plan cache keeps custom plans, NEW's switches to the "
                       "generic plan after 5 executions", flip_fix),),
                headline=_headline(obj, flip, "slower on NEW as a prepared statement", p.label,
                                   flip_imp, "NEW's plan cache switches to the generic plan"),
                extra_active_sessions=flip_imp.extra_sessions if flip_imp else None,
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
            GENERIC_PLAN_REGRESSION, "blocker" if g.auto_new and flipped else "warning", obj,
            f"{obj} ({rate}) as a prepared statement: the generic plan is slower with parameters "
            f"'{p.label}': {g.call.reason}. {picks}. Plan: "
            + ("; ".join(c.detail for c in g.changes) or "same plan") + ".",
            "-- fix statistics first (ANALYZE); if it persists, keep custom plans for this role:\n"
            "ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;", subject,
            headline=_headline(obj, g.call, "generic plan slower on NEW", p.label, None,
                               "; ".join(c.detail for c in g.changes[:1]) or None),
        ))
        break
    return out


def _ms(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def _headline(obj: str, call: Call, what: str, label: str, imp: Impact | None, cause: str | None) -> str:
    """One line: what, where, how bad at production rates, the root cause."""
    ev = call.evidence
    how = f"{ev.ratio:,.0f}× {what} ({_ms(ev.old_ms)} → {_ms(ev.new_ms)} ms, '{label}')" if ev else what
    if imp is not None and imp.extra_sessions is not None and imp.calls_per_second:
        how += f", {imp.extra_sessions:+,.3f} active sessions at {imp.calls_per_second:,.1f} calls/s"
    elif imp is not None:
        how += ", call rate unknown"
    return f"{obj}: {how}" + (f"; cause: {cause}" if cause else "")


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
        f"at most {WARMUP_MAX_RUNS} runs; {most} here), so the timings compare warm caches"
        + (f"; {still:,} blocks were still read on the last warm-up runs (data larger than shared "
           "buffers)" if still else "")
        + ". Right after the switch, NEW's first executions will be slower until its cache warms"
        + (f"; most was read from {listing(top)}." if top else "."))
    remediation = "CREATE EXTENSION IF NOT EXISTS pg_prewarm;  -- on NEW, before the switch\n" + "\n".join(
        f"SELECT pg_prewarm({sql_literal(rel)});" for rel in top)
    return [Finding(COLD_CACHE, "info", "NEW", message, remediation, Subject("cluster", "NEW"))]


def _counted(old: SideRecord, new: SideRecord) -> list[Finding]:
    """A side whose activity statistics counted planguard's executions (``SET track_counts =
    off`` refused): said, with the grant that prevents it next time."""
    out = []
    for label, rec in (("OLD", old), ("NEW", new)):
        if rec.counted is None:
            continue
        message = (
            f"planguard's {rec.executions:,} executions on {label} counted in its activity statistics "
            f"(pg_stat_user_indexes.idx_scan, pg_stat_user_tables): SET track_counts = off was refused "
            f"({rec.counted}). A later check or compare on {label} can see an index planguard scanned as "
            "used (unused_index, harmful_index read idx_scan); this run read them before anything ran")
        role = quoted_ident(rec.counted_role) if rec.counted_role else "<role>"
        remediation = (f"GRANT SET ON PARAMETER track_counts TO {role};  "
                       f"-- on {label}, as a superuser (PostgreSQL 15+)")
        out.append(Finding(ACTIVITY_COUNTED, "info", label, message, remediation, Subject("cluster", label)))
    return out


def _measurement(rec: SideRecord, key: Key, missing: str) -> Measurement:
    warmup = rec.warmups.get(key)
    if key in rec.errors:
        return Measurement(error=rec.errors[key], warmup=warmup)
    runs = rec.runs.get(key)
    return summarize(runs, warmup) if runs else Measurement(error=missing, warmup=warmup)


def _measured(old: SideRecord, new: SideRecord, key: Key, thresholds: Thresholds, noise: NoiseFloor,
              missing: str = "not run") -> tuple[Measurement, Measurement, Call, tuple[Change, ...]]:
    o, n = _measurement(old, key, missing), _measurement(new, key, missing)
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


def _reached(stmt: Statement, old: SideRecord, new: SideRecord) -> bool:
    """The run got to the statement on some side (measured, failed or planned)."""
    keys = {(stmt.key, ps.label, CUSTOM) for ps in param_sets_of(stmt)}
    return stmt.key in old.plan_only or stmt.key in new.plan_only or any(
        k in side.runs or k in side.errors for side in (old, new) for k in keys)


def judge(workload: Workload, old_side: SideRecord, new_side: SideRecord, thresholds: Thresholds,
          stopped: Stopped | None = None) -> Judgement:
    """Pure part of the comparison: calls, changes and findings from both sides' records.

    ``stopped``: the run ended early; the statements it did not reach are ``skipped`` (not
    reached), the parameter sets it did not finish are not measured, and ``run_stopped`` says
    why, once."""
    with long_lived():  # the recorded plans live on: no collection needs to walk them
        return _judge(workload, old_side, new_side, thresholds, stopped)


def _judge(workload: Workload, old_side: SideRecord, new_side: SideRecord, thresholds: Thresholds,
           stopped: Stopped | None) -> Judgement:
    assert old_side.info and new_side.info
    noise = noise_of(old_side.runs, new_side.runs)
    missing = "not run" if stopped is None else f"{NOT_FINISHED}the run stopped first ({stopped.reason})"
    results: list[StatementResult] = []
    for stmt in workload.statements:
        sets = param_sets_of(stmt)
        if stopped is not None and not _reached(stmt, old_side, new_side):
            results.append(StatementResult(stmt, "skipped", f"{NOT_REACHED}{stopped.reason})"))
            continue
        if stmt.skip_reason or not sets:
            results.append(StatementResult(stmt, "skipped", stmt.skip_reason or "no parameter set",
                                           plan_only=_plan_only(stmt, old_side, new_side)))
            continue
        ps_results = []
        for ps in sets:
            o, n, call, changes = _measured(old_side, new_side, (stmt.key, ps.label, CUSTOM), thresholds,
                                            noise, missing)
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
                              + _counted(old_side, new_side)
                              + _coverage_findings(coverage, thresholds)
                              + _stopped_findings(stopped, results)
                              + _same_cluster(old_side.info, new_side.info))
    return Judgement(tuple(results), tuple(_weighed(findings)), noise, coverage)


def _weighed(findings: Sequence[Finding]) -> list[Finding]:
    """A cause weighs what the statements it explains add: the sum of their active sessions,
    so that the reasons are ordered by workload impact and a cause comes before its symptoms."""
    load: dict[tuple[str, str, str | None], list[float]] = {}
    for f in findings:
        if f.extra_active_sessions is None:
            continue
        for c in f.causes:
            if c.subject is not None:
                key = (c.subject.type, c.subject.name, c.subject.database)
                load.setdefault(key, []).append(max(f.extra_active_sessions, 0.0))
    out = []
    for f in findings:
        weights = load.get((f.subject.type, f.subject.name, f.subject.database)) if f.subject else None
        if f.extra_active_sessions is None and weights:
            n, total = len(weights), sum(weights)
            f = replace(f, extra_active_sessions=total, headline=(
                f"{f.headline.rstrip('.')}; behind {n} slower statement{'s' if n != 1 else ''} adding "
                f"{total:+,.3f} active sessions"))
        out.append(f)
    return out


def _stopped_findings(stopped: Stopped | None, results: Sequence[StatementResult]) -> list[Finding]:
    """A partial result says so once, with how far it got and how to finish it."""
    if stopped is None:
        return []
    unreached = sum(1 for r in results if r.not_reached)
    cut = len({k[0] for k in stopped.in_flight})
    done = len(results) - unreached - cut
    what = {FAULT: "A fault stopped it: ", BUDGET: "It stopped: "}
    reason = stopped.reason[0].upper() + stopped.reason[1:] if stopped.kind == INTERRUPTED else \
        what.get(stopped.kind, "It stopped: ") + stopped.reason
    return [Finding(
        RUN_STOPPED, "warning" if stopped.kind == BUDGET else "blocker", "workload",
        f"The comparison is partial. {reason}. "
        f"{done} of {len(results)} statements were compared, {cut} cut short, {unreached} not reached; "
        + ("the verdict judges what was measured, and coverage decides." if stopped.kind == BUDGET else
           "a partial result gives no GO."),
        "-- complete only what is missing (the finished statements are kept):\n"
        "planguard compare OLD NEW -w WORKLOAD --resume RESULT.json", Subject("workload", "workload"),
    )]


def _same_cluster(old: ServerInfo, new: ServerInfo) -> list[Finding]:
    if old.identity is None or old.identity != new.identity:
        return []
    return [Finding(
        SAME_CLUSTER, "warning", "NEW",
        f"OLD and NEW are the same cluster (PostgreSQL {new.version}, {new.identity}): this proves "
        "nothing about a cutover, only that planguard does not alarm on identical sides.",
        "-- point NEW at the new cluster", Subject("cluster", "NEW"),
    )]


def _coverage_findings(cov: Coverage, t: Thresholds) -> list[Finding]:
    """A GO that rests on a tenth of the workload is not a GO."""
    if cov.share >= t.min_coverage or not cov.statements:
        return []
    missing = cov.unjudged_items()
    return [Finding(
        INCOMPLETE_COVERAGE, "blocker", "workload",
        f"The verdict {cov.text()}, below the {t.min_coverage:.0%} it needs (min_coverage): "
        f"not judged: {listing(missing, 6)}.",
        "-- give the statements values: capture with --from-log, or add \"param_sets\" to the "
        "workload file; or lower min_coverage knowingly", Subject("workload", "workload"),
    )]


def touched_tables(workload: Workload, results: Sequence[StatementResult],
                   new: dict[str, ClusterSnapshot]) -> tuple[TableStats, ...]:
    """NEW's statistics of the tables the workload reads (as captured, or in NEW's plans)."""
    names = {t for s in workload.statements for t in s.tables}
    names |= {rel for r in results for p in r.param_sets if p.new.plan for rel in relations(p.new.plan)}
    return tuple(sorted((t for snap in new.values() if snap.statistics for t in snap.statistics.tables
                         if t.name in names or t.name.replace('"', "") in names), key=lambda t: t.name))


def comparison_of(workload: Workload, rec: Recording, thresholds: Thresholds, *, repeat: int,
                  redact: bool, started_at: str, duration_s: float) -> Comparison:
    """The comparison judged from a recording (pure)."""
    judged = judge(workload, rec.old, rec.new, thresholds, rec.stopped)
    assert rec.old.info and rec.new.info
    return Comparison(
        old=rec.old.info, new=rec.new.info, workload=workload, statements=judged.statements,
        findings=judged.findings, verdict=decide(judged.findings), thresholds=thresholds, repeat=repeat,
        started_at=started_at, duration_s=duration_s,
        tables=touched_tables(workload, judged.statements, rec.new.readiness), redacted=redact,
        impact=workload_impact(judged.statements), noise=judged.noise, coverage=judged.coverage,
        load=(Load(rec.old.executions, rec.old.server_ms, rec.old.reconnects),
              Load(rec.new.executions, rec.new.server_ms, rec.new.reconnects)),
        stopped=rec.stopped, retries=rec.retries, paused_s=rec.paused_s, kept=rec.kept,
    )
