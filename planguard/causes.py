"""Why a statement is slower on NEW: typed causes from its plans and the catalog findings (pure).

``regression_causes`` links a regression to what explains it, each a ``Cause`` (a kind from
``planguard.findings.CAUSES`` and its subject): a table the plan reads has no or stale
statistics on NEW, an index OLD's plan uses is missing, NEW's plan uses an index that exists
on NEW only or that OLD never scanned, a planner setting differs, NEW ran short of parallel
workers, a row estimate is far off on NEW only; otherwise a planner change between versions.
The catalog findings (``context``) are matched by their typed subjects, never by parsing
their text.

With the same plan shape on both sides the planner is not the cause, so neither statistics
nor a version's planner are named (``same_plan_causes``): what ran differently instead (a
spill, JIT, workers, more buffers, settings that change how a plan runs), else "not the
planner".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from planguard.calls import same_shapes
from planguard.findings import (
    EXTRA_INDEX,
    HARMFUL_INDEX,
    MISSING_INDEX,
    NEVER_ANALYZED,
    SETTING_DIFF,
    STALE_STATS,
    Cause,
    Finding,
    Subject,
)
from planguard.model import ParamSetResult
from planguard.plan import relations
from planguard.recording import ServerInfo

# Settings that change which plan the planner chooses (besides every enable_*).
PLANNER_SETTINGS = {
    "random_page_cost", "seq_page_cost", "cpu_tuple_cost", "cpu_index_tuple_cost", "cpu_operator_cost",
    "effective_cache_size", "effective_io_concurrency", "work_mem", "hash_mem_multiplier",
    "default_statistics_target", "plan_cache_mode", "from_collapse_limit", "join_collapse_limit",
    "constraint_exclusion", "cursor_tuple_fraction", "max_parallel_workers_per_gather",
    "min_parallel_table_scan_size", "min_parallel_index_scan_size", "parallel_setup_cost",
    "parallel_tuple_cost", "jit", "jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost",
    "geqo", "geqo_threshold", "recursive_worktable_factor",
}
# Settings that change how the same plan executes, not which plan is chosen.
EXECUTOR_SETTINGS = {"work_mem", "hash_mem_multiplier", "jit", "jit_above_cost", "jit_inline_above_cost",
                     "jit_optimize_above_cost", "max_parallel_workers", "max_parallel_workers_per_gather",
                     "max_worker_processes", "effective_io_concurrency", "maintenance_io_concurrency",
                     "temp_buffers"}


def plans_with(setting: str) -> bool:
    """Whether a setting changes what the planner chooses (not autovacuum, ...)."""
    return setting.startswith("enable_") or setting in PLANNER_SETTINGS


def runs_with(setting: str) -> bool:
    return setting in EXECUTOR_SETTINGS


def _name(f: Finding) -> str:
    """The name of a catalog finding's subject: a table's qualified name, an index's bare name
    (as EXPLAIN's "Index Name" gives it)."""
    assert f.subject is not None, f"{f.kind} findings carry a subject"
    name = f.subject.name
    return name.rsplit(".", 1)[-1].strip('"') if f.subject.type == "index" else name


def _settings(context: Sequence[Finding], which: Callable[[str], bool]) -> list[str]:
    """The differing settings that ``which`` keeps, as the findings name them with their scope."""
    return sorted({f.object for f in context if f.kind == SETTING_DIFF and f.severity != "info"
                   and f.subject is not None and which(f.subject.name)})


def regression_causes(result: ParamSetResult, context: Sequence[Finding], old: ServerInfo,
                      new: ServerInfo) -> tuple[Cause, ...]:
    """The likely causes of a regression, most specific first, each with its fix."""
    if same_shapes(result.old, result.new):
        return same_plan_causes(result, old, new, context)
    never = {_name(f): f for f in context if f.kind == NEVER_ANALYZED and f.severity == "blocker"}
    stale = {_name(f): f for f in context if f.kind == STALE_STATS}
    missing = {_name(f): f for f in context if f.kind == MISSING_INDEX}
    extra = {_name(f): f for f in context if f.kind == EXTRA_INDEX}
    unused = {_name(f): f for f in context if f.kind == HARMFUL_INDEX and _name(f) not in extra}
    causes: list[Cause] = []
    for ch in result.changes:
        if ch.kind == "index_new_only" and ch.index and ch.index in extra:
            causes.append(Cause("extra_index",
                                f"NEW's plan uses index {ch.index}, which exists on NEW only",
                                "-- if it was not meant to be there:\n"
                                f"DROP INDEX CONCURRENTLY {extra[ch.index].object};",
                                extra[ch.index].subject))
    for ch in result.changes:
        if ch.kind == "index_old_only" and ch.index and ch.index in missing:
            causes.append(Cause("missing_index",
                                f"index {ch.index}, which OLD's plan uses, is missing on NEW",
                                missing[ch.index].remediation, missing[ch.index].subject))
    plan_rels = set(relations(result.new.plan)) if result.new.plan else set()
    for rel in sorted(plan_rels & set(never)):
        causes.append(Cause("never_analyzed", f"{rel} has never been analyzed on NEW",
                            f"ANALYZE {rel};", never[rel].subject))
    for rel in sorted(plan_rels & set(stale)):
        causes.append(Cause("stale_stats", f"statistics of {rel} are stale on NEW", f"ANALYZE {rel};",
                            stale[rel].subject))
    for ch in result.changes:
        if ch.kind == "workers":
            causes.append(Cause("workers", f"NEW ran short of parallel workers: {ch.detail}",
                                "SHOW max_parallel_workers; SHOW max_worker_processes;"
                                "  -- compare with OLD"))
        if ch.kind == "estimate_error" and ch.relation and ch.relation not in set(never) | set(stale):
            causes.append(Cause("estimate_error",
                                f"row estimates for {ch.relation} are off by 10x or more on "
                                "NEW only (statistics missing, stale or too coarse there)",
                                f"ANALYZE {ch.relation};", Subject("table", ch.relation)))
    for ch in result.changes:
        if ch.kind == "index_new_only" and ch.index and ch.index in unused:
            first = not any(c.fix for c in causes)
            causes.append(Cause("harmful_index",
                                f"NEW uses index {ch.index}, which OLD never used (idx_scan = 0)",
                                "-- after fresh statistics, if NEW still prefers it:\n"
                                f"DROP INDEX CONCURRENTLY {unused[ch.index].object};" if first else "",
                                unused[ch.index].subject))
    settings = _settings(context, plans_with)
    if settings:
        causes.append(Cause("planner_setting", "planner settings differ between OLD and NEW: "
                            + ", ".join(settings[:6]),
                            "-- align them (see the setting_diff findings), then compare again"))
    if not causes:
        fix = "-- compare both plans in the report; check planner settings and statistics targets"
        if old.major != new.major:
            causes.append(Cause("planner_change", f"planner change between PostgreSQL {old.major} and "
                                f"{new.major}", fix))
        else:
            causes.append(Cause("unexplained", "a different plan on NEW with no catalog explanation found",
                                fix))
    return tuple(causes)


def same_plan_causes(result: ParamSetResult, old: ServerInfo, new: ServerInfo,
                     context: Sequence[Finding]) -> tuple[Cause, ...]:
    """What makes the same plan slower: what ran differently, never what the planner chose."""
    causes: list[Cause] = []
    for ch in result.changes:
        if ch.kind == "spill":
            causes.append(Cause("spill", f"the same plan spilled to disk on NEW only ({ch.detail})",
                                "SHOW work_mem; SHOW hash_mem_multiplier;  -- on both: lower on NEW?"))
        elif ch.kind == "workers":
            causes.append(Cause("workers", f"NEW ran short of parallel workers: {ch.detail}",
                                "SHOW max_parallel_workers; SHOW max_worker_processes;"
                                "  -- compare with OLD"))
    o_jit = result.old.plan.jit if result.old.plan else None
    n_jit = result.new.plan.jit if result.new.plan else None
    if n_jit and not o_jit:
        causes.append(Cause("jit", f"JIT compiled the statement on NEW only ({n_jit.get('Functions', '?')} "
                            "functions)",
                            "-- test without JIT, then compare jit and jit_above_cost on both:\n"
                            "SET jit = off;"))
    ob, nb = result.old.buffers, result.new.buffers
    if nb > ob * 1.5 and not any(ch.kind == "spill" for ch in result.changes):
        causes.append(Cause("bloat", f"the same plan reads {nb / max(ob, 1):.1f}× the buffers on NEW "
                            "(bloat, or another physical order of the rows)",
                            "-- compare table and index sizes on both; VACUUM, or REINDEX CONCURRENTLY a "
                            "bloated index"))
    settings = _settings(context, runs_with)
    if settings:
        causes.append(Cause("executor_setting", f"settings that change how a plan runs differ: "
                            f"{', '.join(settings[:6])}",
                            "-- align them (see the setting_diff findings), then compare again"))
    if not causes:
        versions = (f" and executor changes between PostgreSQL {old.major} and {new.major}"
                    if old.major != new.major else "")
        causes.append(Cause("not_the_planner", "not the planner (the same plan and buffers on both); "
                            "NEW's CPU (speed, steal, other load), the functions the statement "
                            f"calls{versions}",
                            "-- the plan is the same: compare CPU, function definitions and JIT on both"))
    return tuple(causes)


def cause_text(causes: Sequence[Cause]) -> str:
    return "; ".join(c.detail for c in causes)


def cause_fixes(causes: Sequence[Cause]) -> str:
    return "\n".join(dict.fromkeys(c.fix for c in causes if c.fix))
