"""Run ``EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON)`` safely, repeatedly (I/O).

Safety: a read-only statement runs in a ``READ ONLY`` transaction; anything that
writes or locks rows (INSERT, UPDATE, DELETE, MERGE, SELECT ... FOR UPDATE) runs
in a transaction that is **always** rolled back, whatever happens.  The session's
``statement_timeout`` and ``lock_timeout`` (see ``planguard.db``) bound every run.
Sequences are not transactional: a rolled-back INSERT still consumes the values
its ``nextval()`` defaults drew (a gap, never a duplicate).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from planguard.db import MARK, MarkedRawCursor
from planguard.errors import ConnectionFailed, one_line
from planguard.measure import LOCK_TIMEOUT, Digest, Run
from planguard.params import ParseFailure, analyze
from planguard.plan import Plan, PlanFormatError, parse_plan
from planguard.safety import one_statement

EXPLAIN = "EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON) "


class QueryFailed(Exception):
    """The statement failed on this cluster; ``str()`` is a one-line reason."""


class Cancelled(Exception):
    """The statement was cancelled on request (planguard stopping, or another session's
    ``pg_cancel_backend``): it says nothing about the statement."""


def failure(conn: psycopg.Connection, exc: psycopg.Error) -> Exception:
    """What a failed statement means: the connection lost (``ConnectionFailed``), a cancel
    (``Cancelled``), or the statement's own failure (``QueryFailed``)."""
    if conn.closed:
        return ConnectionFailed(f"lost the connection: {one_line(exc)}")
    if isinstance(exc, errors.QueryCanceled) and "user request" in one_line(exc):
        return Cancelled(one_line(exc))
    return QueryFailed(reason(exc))


@lru_cache(maxsize=4096)
def needs_rollback(query: str) -> bool:
    """True when the statement writes or locks rows, so it may not run READ ONLY (parsed once
    a text: every run of a statement asks)."""
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
        return LOCK_TIMEOUT
    sqlstate = getattr(exc, "sqlstate", None)
    return one_line(exc) + (f" [{sqlstate}]" if sqlstate else "")


def fetch_rolled_back(conn: psycopg.Connection, statement: str | sql.Composed,
                      values: tuple[str | None, ...] | None, rollback_only: bool,
                      pipelined: bool = True, before: Sequence[sql.Composed] = (),
                      local: Sequence[sql.SQL] = ()) -> tuple[Any, ...]:
    """The one row a statement returns, run in its own transaction that is always rolled back.

    ``rollback_only`` False: the transaction is also READ ONLY.  Every statement
    planguard runs against the workload's tables goes through here.  Text that is not exactly
    one statement is refused unsent (``planguard.safety.one_statement``).  ``pipelined``
    (the default): BEGIN, the statement and ROLLBACK in one round trip, through the extended
    protocol; False for text with ``$n`` and no values (``EXPLAIN (GENERIC_PLAN)``), which
    only the simple protocol takes.  In the same round trip (pipelined only): ``before``,
    statements sent ahead of the transaction (a PREPARE, which no rollback undoes); ``local``,
    ``SET LOCAL`` statements after its BEGIN, which its ROLLBACK undoes.
    """
    assert pipelined or not (before or local)
    if isinstance(statement, str) and not one_statement(statement):
        raise QueryFailed("refused: the text is not exactly one statement")
    # BEGIN, the statement and ROLLBACK go in one pipeline: one round trip instead of three
    # (on a busy server each round trip waits for its backend to be scheduled again).
    try:
        try:
            begin = "BEGIN" if rollback_only else "BEGIN TRANSACTION READ ONLY"
            with MarkedRawCursor(conn) as cur:
                if pipelined:
                    # prepare=False: psycopg would PREPARE the BEGIN and ROLLBACK it sends often,
                    # and a failure that aborts the pipeline would skip that PREPARE unseen.
                    with conn.pipeline():
                        for first in before:
                            conn.execute(first, prepare=False)
                        conn.execute(begin, prepare=False)
                        for setting in local:
                            conn.execute(setting, prepare=False)
                        cur.execute(statement, values or None, prepare=False)
                        conn.execute("ROLLBACK", prepare=False)
                else:
                    conn.execute(begin)
                    cur.execute(statement, values or None, prepare=False)
                row = cur.fetchone()
        finally:
            # Not rolled back yet: not pipelined, or a failure that skipped the rest of the
            # pipeline, its ROLLBACK included.
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
    except psycopg.Error as exc:
        raise failure(conn, exc) from exc
    if row is None:
        raise QueryFailed("the statement returned no row")
    return tuple(row)


def _plan_of(row: tuple[Any, ...]) -> Plan:
    try:
        return parse_plan(row[0])
    except PlanFormatError as exc:
        raise QueryFailed(f"unreadable EXPLAIN output: {exc}") from exc


def explain_once(conn: psycopg.Connection, query: str, values: tuple[str | None, ...],
                 rollback_only: bool) -> Run:
    """One EXPLAIN ANALYZE in its own transaction, which is then rolled back."""
    return Run.of(_plan_of(fetch_rolled_back(conn, MARK + EXPLAIN + query, values, rollback_only)))


def plan_with(conn: psycopg.Connection, query: str, values: tuple[str | None, ...],
              rollback_only: bool) -> Plan:
    """The plan for these values, never executed (EXPLAIN without ANALYZE: not even a
    data-modifying WITH runs), in a transaction that is rolled back."""
    return _plan_of(fetch_rolled_back(conn, MARK + "EXPLAIN (VERBOSE, FORMAT JSON) " + query, values,
                                      rollback_only))


# -- generic plans -------------------------------------------------------------------
# A prepared statement runs custom plans for its first five executions, then the plan
# cache may switch to one generic plan for all parameter values.  That plan can be bad
# on NEW even when every custom plan is fine, so it is measured on its own.

_counter = itertools.count(1)
FORCE_GENERIC = sql.SQL("SET LOCAL plan_cache_mode = force_generic_plan")


def _literals(values: tuple[str | None, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Literal(v) for v in values)


def prepare(conn: psycopg.Connection, query: str, cache_mode: str | None) -> str:
    """``PREPARE`` the statement under ``plan_cache_mode`` (None: the session's own, as the
    application gets it from the database and role settings); its name. Raises QueryFailed."""
    if not one_statement(query):
        raise QueryFailed("refused: the text is not exactly one statement")
    name = f"planguard_{next(_counter)}"
    try:
        with conn.pipeline():  # one round trip
            if cache_mode is not None:
                conn.execute(sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(cache_mode)),
                             prepare=False)
            conn.execute(sql.SQL(MARK + "PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(query),
                         prepare=False)
    except psycopg.Error as exc:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("RESET plan_cache_mode")
        raise failure(conn, exc) from exc
    return name


def deallocate(conn: psycopg.Connection, name: str) -> None:
    if not conn.closed:
        with conn.pipeline():  # one round trip
            conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)), prepare=False)
            conn.execute("RESET plan_cache_mode", prepare=False)


@contextlib.contextmanager
def prepared(conn: psycopg.Connection, query: str, cache_mode: str | None) -> Iterator[str]:
    """A prepared statement for the block (see ``prepare``), deallocated and reset afterwards."""
    name = prepare(conn, query, cache_mode)
    try:
        yield name
    finally:
        deallocate(conn, name)


def _explain_execute_sql(name: str, values: tuple[str | None, ...], analyze: bool = True) -> sql.Composed:
    """``EXPLAIN (...) EXECUTE name(values)``: with ANALYZE and BUFFERS, or a plan only."""
    options = "ANALYZE, BUFFERS, VERBOSE, FORMAT JSON" if analyze else "VERBOSE, FORMAT JSON"
    stmt = sql.SQL(MARK + "EXPLAIN (" + options + ") EXECUTE {}").format(sql.Identifier(name))
    if values:
        stmt += sql.SQL("(") + _literals(values) + sql.SQL(")")
    return stmt


def _explain_execute(conn: psycopg.Connection, name: str, values: tuple[str | None, ...],
                     rollback_only: bool, analyze: bool = True) -> Plan:
    return _plan_of(fetch_rolled_back(conn, _explain_execute_sql(name, values, analyze), None, rollback_only))


class GenericPlan:
    """A statement PREPAREd on one connection and run under ``plan_cache_mode =
    force_generic_plan`` (``run``), then deallocated (``close``).

    The PREPARE goes in the first run's round trip, and each run sets the mode with ``SET
    LOCAL`` in its own transaction, which its ROLLBACK undoes: the session's settings never
    change, and custom runs between generic ones are not affected.
    """

    def __init__(self, conn: psycopg.Connection, query: str) -> None:
        if not one_statement(query):
            raise QueryFailed("refused: the text is not exactly one statement")
        self.conn = conn
        self.rollback_only = needs_rollback(query)
        self.name = f"planguard_{next(_counter)}"
        self._prepare = sql.SQL(MARK + "PREPARE {} AS ").format(sql.Identifier(self.name)) + sql.SQL(query)
        self.ready = False  # prepared on the server
        self.sent = False  # a PREPARE was sent and no DEALLOCATE since

    def run(self, values: tuple[str | None, ...]) -> Run:
        """One EXPLAIN ANALYZE EXECUTE of the generic plan. Raises QueryFailed."""
        self.sent = True
        try:
            row = fetch_rolled_back(self.conn, _explain_execute_sql(self.name, values), None,
                                    self.rollback_only, before=() if self.ready else (self._prepare,),
                                    local=(FORCE_GENERIC,))
        except Exception:
            if not self.ready:  # the PREPARE may have run before what failed: the next run prepares afresh
                with contextlib.suppress(psycopg.Error):
                    self.close()
            raise
        self.ready = True
        return Run.of(_plan_of(row))

    def close(self) -> None:
        """DEALLOCATE (nothing when no PREPARE was sent, or the connection is gone)."""
        if not self.sent or self.conn.closed:
            return
        self.sent = self.ready = False
        with contextlib.suppress(errors.InvalidSqlStatementName):  # the PREPARE itself failed
            self.conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(self.name)), prepare=False)


def auto_chooses_generic(conn: psycopg.Connection, query: str, values: tuple[str | None, ...],
                         server_version_num: int) -> bool | None:
    """Would this cluster's plan cache switch the statement to its generic plan?

    Under the session's own ``plan_cache_mode`` (what the application gets: ``auto``
    unless a database or role setting says otherwise), plans (never executes) the
    statement six times with these values, as a driver that prepares statements would,
    then reads ``pg_prepared_statements.generic_plans`` (PostgreSQL 14+; None before).
    PREPARE, the six plans (in a transaction that is rolled back), the read and DEALLOCATE
    go in one pipeline: one round trip. Raises QueryFailed.
    """
    if server_version_num < 140000:
        return None
    if not one_statement(query):
        raise QueryFailed("refused: the text is not exactly one statement")
    plain = f"planguard_{next(_counter)}"
    name = sql.Identifier(plain)
    prepare_it = sql.SQL(MARK + "PREPARE {} AS ").format(name) + sql.SQL(query)
    explain = _explain_execute_sql(plain, values, analyze=False)
    try:
        try:
            with MarkedRawCursor(conn) as cur:
                with conn.pipeline():
                    conn.execute(prepare_it, prepare=False)
                    conn.execute("BEGIN", prepare=False)
                    for _ in range(6):
                        conn.execute(explain, prepare=False)
                    conn.execute("ROLLBACK", prepare=False)
                    cur.execute(MARK + "SELECT generic_plans FROM pg_prepared_statements WHERE name = $1",
                                (plain,), prepare=False)
                    conn.execute(sql.SQL("DEALLOCATE {}").format(name), prepare=False)
                row = cur.fetchone()
        finally:
            # A failure skipped the rest of the pipeline: its ROLLBACK and DEALLOCATE too.
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
    except psycopg.Error as exc:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("DEALLOCATE {}").format(name))
        raise failure(conn, exc) from exc
    return bool(row and row[0])


def plan_only(conn: psycopg.Connection, query: str, nparams: int, server_version_num: int) -> Plan:
    """The generic plan of a statement whose parameters could not be filled; nothing runs.

    PostgreSQL 16+: ``EXPLAIN (GENERIC_PLAN)``; before: PREPARE with
    ``plan_cache_mode = force_generic_plan`` and EXPLAIN EXECUTE with NULLs.
    """
    if server_version_num >= 160000:
        statement = MARK + "EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) " + query
        return _plan_of(fetch_rolled_back(conn, statement, None, rollback_only=False, pipelined=False))
    with prepared(conn, query, "force_generic_plan") as name:
        return _explain_execute(conn, name, (None,) * nparams, rollback_only=True, analyze=False)


# -- result check --------------------------------------------------------------------


def result_digest(conn: psycopg.Connection, query: str, values: tuple[str | None, ...]) -> Digest:
    """Row count and checksums of a SELECT's result, in a READ ONLY transaction."""
    wrapped = (MARK + "SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY n), '')), "
               "md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) "
               "FROM (SELECT q::text AS r, row_number() OVER () AS n FROM (" + query + ") q) s")
    row = fetch_rolled_back(conn, wrapped, values, rollback_only=False)
    return Digest(int(row[0]), str(row[1]), str(row[2]))
