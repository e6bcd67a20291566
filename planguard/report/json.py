"""The JSON report: a stable, versioned contract (``format_version`` 1).

Fields are only ever added within a format version; a removal or change of meaning
bumps ``format_version``.  See docs/json-contract.md.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pglast.parser import normalize

from planguard.calls import STATUSES, Call
from planguard.checks.freshness import TableStats
from planguard.diff import Change
from planguard.findings import Finding, finding_ids
from planguard.fixes import fix_script, steps_json
from planguard.measure import Digest, Measurement
from planguard.model import (
    CheckResult,
    Comparison,
    Coverage,
    GenericResult,
    Impact,
    ParamSetResult,
    PlanOnly,
    ResultCheck,
    Round,
    StatementResult,
    impact_of,
)
from planguard.plan import Plan, indexes_used, raw_json, render_text, shape_fingerprint
from planguard.timing import CLASS_NAMES, NoiseFloor
from planguard.verdict import sort_findings
from planguard.workload import Workload, is_guess

FORMAT_VERSION = 1


REDACTED = "<redacted>"


def _query(text: str, redact: bool) -> str:
    if not redact:
        return text
    try:
        return normalize(text)
    except Exception:
        return REDACTED


def _side(m: Measurement, redact: bool = False, plan: bool = False) -> dict[str, Any]:
    """One side's measurement; ``plan``: with the raw EXPLAIN plan (the decisive set's only)."""
    return {
        "median_ms": None if m.median_ms is None else round(m.median_ms, 3),
        "shared_buffers": m.shared_buffers,
        "temp_buffers": m.temp_buffers,
        "runs": m.runs,
        "plan_fingerprint": m.plan_fingerprint,
        "indexes": list(indexes_used(m.plan)) if m.plan else [],
        "error": m.error,
        "plan_text": render_text(m.plan, redact=redact) if m.plan else None,
        "plan_json": raw_json(m.plan, redact=redact) if m.plan and plan else None,
        "times_ms": [round(t, 3) for t in m.times_ms],
        "warmup": None if m.warmup is None else {
            "runs": m.warmup.runs, "first_read": m.warmup.first_read, "last_read": m.warmup.last_read},
    }


def _timing(call: Call) -> dict[str, Any] | None:
    ev = call.evidence
    if ev is None:
        return None
    return {"paired": ev.paired, "runs": ev.runs, "ratio": round(ev.ratio, 3),
            "direction": ev.direction, "confirmed": ev.confirmed, "decisive": ev.decisive,
            "agree": ev.agree, "p": None if ev.p is None else round(ev.p, 5),
            "noise_floor": round(ev.noise, 3), "within_noise": ev.within_noise,
            "same_work": call.same_work}


def _round(r: Round | None, redact: bool) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"status": r.call.status, "reason": r.call.reason, "timing": _timing(r.call),
            "old": _side(r.old, redact), "new": _side(r.new, redact)}


def _coverage(cov: Coverage | None) -> dict[str, Any] | None:
    if cov is None:
        return None
    return {"share": round(cov.share, 4), "by": "time" if cov.by_time else "statements",
            "time_share": round(cov.judged_ms / cov.total_ms, 4) if cov.total_ms else None,
            "calls_share": None if cov.calls_share is None else round(cov.calls_share, 4),
            "statements_judged": cov.judged, "statements": cov.statements, "text": cov.text(),
            "unjudged": [{"fingerprint": r.statement.fingerprint, "reason": why} for r, why in cov.unjudged],
            "unjudged_items": cov.unjudged_items(),
            "guessed_only": [r.statement.fingerprint for r in cov.guessed_only]}


def _noise(n: NoiseFloor | None) -> dict[str, Any] | None:
    if n is None:
        return None
    return {"quantile": n.quantile, "classes": [
        {"class": name, "factor": None if f is None else round(f, 3), "ratios": k}
        for name, f, k in zip(CLASS_NAMES, n.factors, n.ratios, strict=True)]}


def _runs_per_series(c: Comparison, side: str) -> dict[str, Any]:
    """How many measured runs each series (a parameter set's custom plans, generic plan,
    confirmation round) took on one side: their median and how many series took each count."""
    counts = []
    for res in c.statements:
        for p in res.param_sets:
            rounds = [(p.old, p.new), *((r.old, r.new) for r in (p.generic, p.confirmation) if r)]
            mine = [o if side == "old" else n for o, n in rounds]
            counts += [m.runs for m in mine if m.runs]
    return {"median": statistics.median(counts) if counts else None,
            "counts": {str(k): v for k, v in sorted(Counter(counts).items())}}


def _changes(changes: tuple[Change, ...]) -> list[dict[str, str]]:
    return [{"kind": c.kind, "detail": c.detail} for c in changes]


def _generic(g: GenericResult | None, redact: bool, plan: bool = False) -> dict[str, Any] | None:
    if g is None:
        return None
    return {
        "status": g.call.status,
        "reason": g.call.reason,
        "timing": _timing(g.call),
        "old": _side(g.old, redact, plan),
        "new": _side(g.new, redact, plan),
        "changes": _changes(g.changes),
        "plan_cache_picks_generic": {"old": g.auto_old, "new": g.auto_new},
    }


def _plan_only_side(plan: Plan | None, redact: bool) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {"plan_fingerprint": shape_fingerprint(plan), "indexes": list(indexes_used(plan)),
            "total_cost": plan.root.total_cost, "plan_text": render_text(plan, redact=redact)}


def _plan_only(po: PlanOnly | None, redact: bool) -> dict[str, Any] | None:
    if po is None:
        return None
    return {"old": _plan_only_side(po.old, redact), "new": _plan_only_side(po.new, redact),
            "changes": _changes(po.changes), "error": po.error}


def _param_set(p: ParamSetResult, redact: bool, decisive: bool = False) -> dict[str, Any]:
    return {
        "label": p.label,
        "values": [REDACTED] * len(p.values) if redact else list(p.values),
        "sources": list(p.sources),  # where each value came from; "inferred: ..." is a guess
        "guessed": [i for i, src in enumerate(p.sources, 1) if is_guess(src)],
        "status": p.call.status,
        "reason": p.call.reason,
        "timing": _timing(p.call),
        "old": _side(p.old, redact, decisive),
        "new": _side(p.new, redact, decisive),
        "changes": _changes(p.changes),
        "generic": _generic(p.generic, redact, decisive),
        "results": _results(p.results),
        "confirmation": _round(p.confirmation, redact),
    }


def _results(rc: ResultCheck | None) -> dict[str, Any] | None:
    if rc is None:
        return None

    def side(d: Digest | str) -> dict[str, Any]:
        return {"error": d} if isinstance(d, str) else {"rows": d.rows, "ordered_md5": d.ordered,
                                                       "unordered_md5": d.unordered}

    return {"outcome": rc.outcome, "ordered": rc.ordered, "deterministic": rc.deterministic,
            "old": side(rc.old), "new": side(rc.new)}


def _ratio(p: ParamSetResult | None) -> float | None:
    if p is None or p.old.median_ms is None or p.new.median_ms is None:
        return None
    return round(p.new.median_ms / max(p.old.median_ms, 1e-3), 2)


def _impact(imp: Impact | None) -> dict[str, Any] | None:
    if imp is None:
        return None
    return {"calls_per_second": imp.calls_per_second, "delta_ms": round(imp.delta_ms, 3),
            "extra_active_sessions": None if imp.extra_sessions is None else round(imp.extra_sessions, 4),
            "extra_db_seconds_per_hour": None if imp.extra_db_seconds_per_hour is None
            else round(imp.extra_db_seconds_per_hour, 1)}


def _statement(r: StatementResult, redact: bool) -> dict[str, Any]:
    s = r.statement
    dec = r.decisive
    empty = _side(Measurement())
    return {
        "fingerprint": s.fingerprint,
        "query": _query(s.query, redact),
        "kind": s.kind,
        "calls": s.calls,
        "calls_per_second": s.calls_per_second,
        "mean_ms_on_old": s.mean_ms,
        "database": s.database,
        "attribution": None,  # statistics | planner | unknown, with --verify-fixes
        "attribution_note": None,
        "tables": list(s.tables),
        "status": r.status,
        "reason": r.reason,
        "time_ratio": _ratio(dec),
        "decisive_param_set": dec.label if dec else None,
        "old": _side(dec.old, redact) if dec else empty,
        "new": _side(dec.new, redact) if dec else empty,
        "changes": _changes(dec.changes if dec else ()),
        "generic_status": r.generic_status,
        "impact": _impact(impact_of(s, r.param_sets[0] if r.param_sets else None)),
        "param_sets": [_param_set(p, redact, p is dec) for p in r.param_sets],
        "plan_only": _plan_only(r.plan_only, redact),
    }


def _rate(w: Workload) -> float | None:
    """The captured statements' calls per second over the stats window (None: unknown)."""
    rates = [st.calls_per_second for st in w.statements if st.calls_per_second is not None]
    return round(sum(rates), 3) if rates else None


def _findings(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    ordered = sort_findings(findings)
    return [{"id": i, **asdict(f), "verification": None}  # verification: see planguard.verify
            for i, f in zip(finding_ids(ordered), ordered, strict=True)]


def _fix_script(findings: Sequence[Finding], tables: Sequence[TableStats]) -> dict[str, Any] | None:
    """Every blocker's remediation as one script in a safe order (``planguard.fixes``)."""
    ordered = sort_findings(findings)
    pages = {t.name: (max(t.relpages, t.size_bytes // 8192), t.reltuples) for t in tables}
    steps = fix_script(ordered, finding_ids(ordered), pages)
    if not steps:
        return None
    return steps_json(steps)


def _partial(c: Comparison) -> dict[str, Any] | None:
    st = c.stopped
    if st is None:
        return None
    return {"reason": st.reason, "kind": st.kind,
            "in_flight": [{"statement": k[0], "param_set": k[1], "series": k[2]} for k in st.in_flight],
            "not_reached": sum(1 for r in c.statements if r.not_reached)}


def _safety(c: Comparison) -> dict[str, Any] | None:
    if c.policy is None:
        return None
    return {**asdict(c.policy), "budget": asdict(c.budget) if c.budget else None,
            "retries": c.retries, "paused_s": round(c.paused_s, 1), "kept_from_resume": c.kept}


def _shard(c: Comparison) -> dict[str, Any] | None:
    sh = c.shard
    if sh is None:
        return None
    return {"index": sh.index, "count": sh.count, "workload": sh.workload,
            "catalog_checks": sh.catalog_checks}


def to_dict(c: Comparison) -> dict[str, Any]:
    """The report as plain data: the JSON contract, and the HTML template's context."""
    statements = [_statement(r, c.redacted) for r in c.statements]
    counts = {status: 0 for status in STATUSES}
    for r in c.statements:
        counts[r.status] += 1
    return {
        "format_version": FORMAT_VERSION,
        "kind": "compare",
        "verdict": c.verdict.decision,
        "exit_code": c.verdict.exit_code,
        "reasons": list(c.verdict.reasons),
        "generated_at": c.started_at,
        "duration_s": round(c.duration_s, 2),
        "repeat": c.repeat,
        "redacted": c.redacted,
        "thresholds": asdict(c.thresholds),
        "old": {"server_version": c.old.version, "server_version_num": c.old.version_num,
                "dsn": c.old.dsn},
        "new": {"server_version": c.new.version, "server_version_num": c.new.version_num,
                "dsn": c.new.dsn},
        "workload": {
            "captured_at": c.workload.source.captured_at,
            "database": c.workload.source.database,
            "server_version": c.workload.source.server_version,
            "statements": len(c.workload.statements),
            "stats_reset": c.workload.source.stats_reset,
            "stats_window_seconds": c.workload.source.stats_window_seconds,
            "calls": sum(st.calls for st in c.workload.statements),
            "calls_per_second": _rate(c.workload),
        },
        "summary": counts,
        "impact": None if c.impact is None else {
            "active_sessions_old": round(c.impact.old_sessions, 4),
            "active_sessions_new": round(c.impact.new_sessions, 4),
            "delta_active_sessions": round(c.impact.delta_sessions, 4),
            "statements_with_rate": c.impact.statements,
            "statements_without_rate": c.impact.without_rate,
        },
        "noise": _noise(c.noise),
        "coverage": _coverage(c.coverage),
        "load": None if c.load is None else {
            side: {"executions": ld.executions, "server_ms": round(ld.server_ms, 1),
                   "reconnects": ld.reconnects, "runs_per_series": _runs_per_series(c, side)}
            for side, ld in zip(("old", "new"), c.load, strict=True)},
        "partial": _partial(c),
        "safety": _safety(c),
        "recording": c.recording,
        "shard": _shard(c),
        "statements": statements,
        "findings": _findings(c.findings),
        "fix_script": _fix_script(c.findings, c.tables),
        "verification": None,
        "tables": [asdict(t) for t in c.tables],
    }


def check_to_dict(result: CheckResult) -> dict[str, Any]:
    """The report of ``planguard check``: the same contract, without statements."""
    verdict, old, new = result.verdict, result.old, result.new
    return {
        "format_version": FORMAT_VERSION,
        "kind": "check",
        "verdict": verdict.decision,
        "exit_code": verdict.exit_code,
        "reasons": list(verdict.reasons),
        "generated_at": result.started_at,
        "duration_s": round(result.duration_s, 2),
        "repeat": 0,
        "redacted": False,
        "thresholds": asdict(result.thresholds),
        "old": {"server_version": old.server_version, "server_version_num": old.server_version_num,
                "dsn": result.old_label, "database": old.database},
        "new": {"server_version": new.server_version, "server_version_num": new.server_version_num,
                "dsn": result.new_label, "database": new.database},
        "workload": None,
        "summary": {status: 0 for status in STATUSES},
        "impact": None,
        "noise": None,
        "coverage": None,
        "load": None,
        "partial": None,
        "safety": None,
        "recording": None,
        "shard": None,
        "statements": [],
        "findings": _findings(result.findings),
        "verification": None,
        "fix_script": _fix_script(result.findings,
                                  result.new.statistics.tables if result.new.statistics else ()),
        "tables": [],
    }


def dump_json(context: dict[str, Any]) -> str:
    return json.dumps(context, indent=2, default=str) + "\n"
