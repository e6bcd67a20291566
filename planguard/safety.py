"""What planguard refuses to run, and how it runs writes (pure: no database).

planguard runs against a production primary.  Before any statement of a workload reaches
a server, ``refusal`` screens it: text that is not exactly one statement (``SELECT 1;
COMMIT; DROP TABLE t`` would end planguard's transaction and run the rest outside it) and
utility or DDL statements (``VACUUM``, ``CREATE``, ``SET``, ``LOCK``, ``COPY``, ``CALL``,
``DO``...) are never executed, not even as a plan.  ``planguard.explain`` checks the same
again at the point of execution.

Writes (INSERT, UPDATE, DELETE, MERGE, a data-modifying WITH, SELECT ... FOR UPDATE) follow
a policy (``WRITES``):

- ``rollback`` (the default): executed with EXPLAIN ANALYZE inside a transaction that is
  always rolled back.  On a primary that still takes row locks for the statement's duration
  (bounded by ``lock_timeout``), writes WAL, consumes sequence values and fires triggers
  (whose side effects outside the database, such as NOTIFY or dblink, may escape);
- ``explain``: planned on both sides with their values, never executed;
- ``skip``: not run at all.

A NEW that is a replica (in recovery) cannot execute writes: they are planned only there and
on OLD, and the verdict says so (``effective_writes``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from pglast.parser import ParseError, split

from planguard.errors import WorkloadError
from planguard.params import ParseFailure, analyze
from planguard.workload import Statement, Workload

WRITES = ("rollback", "explain", "skip")


@dataclass(frozen=True)
class Policy:
    """How a comparison treats production: the writes policy (``WRITES``), the slowest
    statement it runs on OLD (``max_query_ms``, from OLD's mean time; None: no limit), and
    whether OLD and NEW may be one cluster (planguard's own A/A tests)."""

    writes: str = "rollback"
    max_query_ms: float | None = None
    allow_same_cluster: bool = False

    def __post_init__(self) -> None:
        if self.writes not in WRITES:
            raise ValueError(f"writes must be one of {WRITES}, got {self.writes!r}")
# The oldest server planguard reads (its catalogs, pg_stat_statements' columns, EXPLAIN's JSON).
MIN_SERVER_VERSION = 120000


@functools.lru_cache(maxsize=4096)
def refusal_of(query: str) -> str | None:
    """Why ``query`` must never be sent to a server, or None when it may be."""
    try:
        shape = analyze(query)
    except ParseFailure as exc:
        return f"refused: it is not one statement PostgreSQL's parser can read ({exc})"
    if shape.kind == "utility":
        verb = query.split(None, 1)[0].upper() if query.split() else "?"
        return (f"refused: a utility or DDL statement ({verb}); planguard never runs these, "
                "not even as a plan")
    return None


def refusal(stmt: Statement) -> str | None:
    return refusal_of(stmt.query)


@functools.lru_cache(maxsize=4096)
def one_statement(text: str) -> bool:
    """``text`` holds exactly one statement (PostgreSQL's scanner: strings, comments and
    dollar quotes respected).  The last guard before text reaches a server: without
    parameters, a client sends a query with the simple protocol, which runs every statement
    in it."""
    try:
        return len(split(text, with_parser=False)) == 1
    except ParseError:
        return False


def check_workload(workload: Workload, origin: str) -> None:
    """Refuse a whole workload file that holds a statement planguard must never run: one
    clear error naming it, before anything is sent to a server."""
    for i, stmt in enumerate(workload.statements, 1):
        why = refusal(stmt)
        if why is not None:
            raise WorkloadError(f"{origin}: statement {i} ({stmt.short_id}, {stmt.query[:50]!r}) is "
                                f"{why.removeprefix('refused: ')}; remove it from the workload file")


def is_write(query: str) -> bool:
    """Writes or locks rows (parses: call ``refusal_of`` first)."""
    shape = analyze(query)
    return shape.writes or shape.locks_rows or shape.is_dml


def effective_writes(policy: str, new_in_recovery: bool) -> str:
    """The writes policy that can be honoured: a replica cannot execute writes."""
    if policy not in WRITES:
        raise ValueError(policy)
    return "explain" if new_in_recovery and policy == "rollback" else policy


def write_skip_reason(policy: str, new_in_recovery: bool = False) -> str | None:
    """Why a write is not executed under ``policy`` (None: it is, and rolled back)."""
    if policy == "skip":
        return "a write, not run (--writes skip)"
    if policy == "explain":
        if new_in_recovery:
            return ("a write, planned only: NEW is a replica (in recovery), where writes cannot be "
                    "rehearsed; its plans with these values are compared without execution")
        return "a write, planned only (--writes explain): its plans are compared without execution"
    return None


def too_slow_reason(stmt: Statement, max_query_ms: float | None) -> str | None:
    """``--max-query-ms``: a statement whose mean time on OLD exceeds it is not run there."""
    if max_query_ms is None or stmt.mean_ms <= max_query_ms:
        return None
    return (f"not run: its mean time on OLD, {stmt.mean_ms:,.0f} ms, exceeds --max-query-ms "
            f"{max_query_ms:,.0f}; its plans are compared without execution")


def screen(stmt: Statement, *, writes: str, new_in_recovery: bool = False,
           max_query_ms: float | None = None) -> str | None:
    """The reason ``stmt`` is not executed with EXPLAIN ANALYZE, or None when it is.

    ``writes`` is the policy asked for; on a NEW in recovery, ``rollback`` becomes ``explain``.
    """
    if (why := refusal(stmt)) is not None:
        return why
    if stmt.skip_reason:
        return stmt.skip_reason
    if is_write(stmt.query) and (why := write_skip_reason(effective_writes(writes, new_in_recovery),
                                                          new_in_recovery)):
        return why
    return too_slow_reason(stmt, max_query_ms)


def may_plan(stmt: Statement, writes: str) -> bool:
    """Whether a statement that is not executed may still be planned (EXPLAIN without ANALYZE):
    never when refused, nor a write under ``--writes skip``."""
    if refusal(stmt) is not None:
        return False
    return not (writes == "skip" and is_write(stmt.query))


def screened(workload: Workload, policy: Policy, new_in_recovery: bool = False) -> Workload:
    """The workload with a ``skip_reason`` on every statement that is not executed (``screen``)."""
    out = []
    for stmt in workload.statements:
        why = screen(stmt, writes=policy.writes, new_in_recovery=new_in_recovery,
                     max_query_ms=policy.max_query_ms)
        out.append(stmt if why == stmt.skip_reason else replace(stmt, skip_reason=why))
    return replace(workload, statements=tuple(out))
