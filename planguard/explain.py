"""Run ``EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON)`` safely, repeatedly (I/O).

Safety: a read-only statement runs in a ``READ ONLY`` transaction; anything that
writes or locks rows (INSERT, UPDATE, DELETE, MERGE, SELECT ... FOR UPDATE) runs
in a transaction that is **always** rolled back, whatever happens.  The session's
``statement_timeout`` and ``lock_timeout`` (see ``planguard.db``) bound every run.
Sequences are not transactional: a rolled-back INSERT still consumes the values
its ``nextval()`` defaults drew (a gap, never a duplicate).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import errors

from planguard.db import MARK
from planguard.errors import ConnectionFailed
from planguard.params import ParseFailure, analyze
from planguard.plan import Plan, PlanFormatError, parse_plan

EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON) "


@dataclass(frozen=True)
class Run:
    """One measured execution."""

    execution_ms: float
    planning_ms: float | None
    shared_buffers: int
    temp_buffers: int
    plan: Plan


class QueryFailed(Exception):
    """The statement failed on this cluster; ``str()`` is a one-line reason."""


def needs_rollback(query: str) -> bool:
    """True when the statement writes or locks rows, so it may not run READ ONLY."""
    try:
        shape = analyze(query)
    except ParseFailure:
        return True  # unknown: the safe choice is a transaction that is rolled back
    return shape.writes or shape.locks_rows or shape.kind == "utility"


def reason(exc: psycopg.Error) -> str:
    """One line that says why a statement failed."""
    if isinstance(exc, errors.QueryCanceled):
        return "cancelled by statement_timeout"
    if isinstance(exc, errors.LockNotAvailable):
        return "gave up waiting for a lock (lock_timeout)"
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None and diag.message_primary else str(exc)
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{primary.strip().splitlines()[0]}" + (f" [{sqlstate}]" if sqlstate else "")


def explain_once(conn: psycopg.Connection, query: str, values: tuple[str | None, ...],
                 rollback_only: bool) -> Run:
    """One EXPLAIN ANALYZE in its own transaction, which is then rolled back."""
    conn.execute("BEGIN" if rollback_only else "BEGIN TRANSACTION READ ONLY")
    try:
        with psycopg.RawCursor(conn) as cur:
            cur.execute(MARK + EXPLAIN + query, values or None, prepare=False)
            row = cur.fetchone()
    except psycopg.OperationalError as exc:
        if conn.closed:
            raise ConnectionFailed(f"lost the connection while running a statement: {exc}") from exc
        raise QueryFailed(reason(exc)) from exc
    except psycopg.Error as exc:
        raise QueryFailed(reason(exc)) from exc
    finally:
        if not conn.closed:
            conn.execute("ROLLBACK")
    if row is None:
        raise QueryFailed("EXPLAIN returned no row")
    try:
        plan = parse_plan(row[0])
    except PlanFormatError as exc:
        raise QueryFailed(f"unreadable EXPLAIN output: {exc}") from exc
    return Run(
        execution_ms=float(plan.execution_ms or 0.0),
        planning_ms=plan.planning_ms,
        shared_buffers=plan.shared_buffers,
        temp_buffers=plan.temp_buffers,
        plan=plan,
    )


def measure(conn: psycopg.Connection, query: str, values: tuple[str | None, ...],
            repeat: int, warmup: int = 1) -> list[Run]:
    """``warmup`` discarded runs, then ``repeat`` measured ones. Raises QueryFailed."""
    rollback_only = needs_rollback(query)
    for _ in range(warmup):
        explain_once(conn, query, values, rollback_only)
    return [explain_once(conn, query, values, rollback_only) for _ in range(repeat)]
