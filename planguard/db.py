"""Connections with safe session settings, and server capabilities.

Every session planguard opens identifies itself (``application_name = planguard``)
and is bounded: ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` are set before anything else runs, so a
check against production never waits on a lock or runs away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from planguard.errors import ConnectionFailed, PlanguardError, one_line

APP_NAME = "planguard"
# Prefixed to every statement planguard sends, so that capture can exclude them
# from pg_stat_statements (which keeps comments in the normalized text).  PostgreSQL 18
# starts a statement's text at its first token, leaving a leading comment out; planguard's
# cursors (``MarkedCursor``) therefore repeat the mark at the end (``TAIL``), which every
# version keeps.  A statement is planguard's own when its text starts with MARK or ends
# with TAIL (``is_own``).
MARK = "/* planguard */ "
TAIL = "\n/* planguard */"


def is_own(text: str) -> bool:
    """A ``pg_stat_statements`` text of planguard's own statements (any version)."""
    return text.startswith(MARK) or text.rstrip().endswith(TAIL.strip())


def _marked(query: Any) -> Any:
    """The query with ``TAIL`` after it when it is planguard's own: text that starts with
    MARK, or SQL planguard composed."""
    if isinstance(query, str):
        return query + TAIL if query.startswith(MARK) else query
    if isinstance(query, sql.Composable):
        return sql.Composed([query, sql.SQL(TAIL)])
    return query


class MarkedCursor(psycopg.Cursor[Any]):
    """A cursor that marks planguard's own statements at both ends (see ``TAIL``)."""

    def execute(self, query: Any, params: Any = None, **kw: Any) -> MarkedCursor:
        super().execute(_marked(query), params, **kw)
        return self


class MarkedRawCursor(psycopg.RawCursor[Any]):
    """``MarkedCursor`` for statements whose parameters are PostgreSQL's own ``$n``."""

    def execute(self, query: Any, params: Any = None, **kw: Any) -> MarkedRawCursor:
        super().execute(_marked(query), params, **kw)
        return self


@dataclass(frozen=True)
class SessionLimits:
    """Per-session safety limits, in milliseconds."""

    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 500
    idle_in_transaction_ms: int = 60_000


def dsn_error(exc: Exception) -> str:
    """libpq's complaint about a malformed DSN, without the values it quotes (a password may be
    among them): ``missing "=" after "…" in connection info string``."""
    return re.sub(r'(after|value|token:|parameter:|string:) "[^"]*"', r'\1 "…"', one_line(exc))


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and files."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def with_dbname(dsn: str, dbname: str | None, *, override: bool = False, label: str | None = None) -> str:
    """``dsn`` with ``dbname`` set when the DSN names no database itself (or always, with override);
    ``label`` names the cluster in the error for a malformed DSN."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise PlanguardError(f"invalid DSN{f' for {label}' if label else ''}: {dsn_error(exc)}") from exc
    if dbname and (override or "dbname" not in params):
        params["dbname"] = dbname
    return make_conninfo(**{k: str(v) for k, v in params.items()})


# TCP keepalives (libpq's own options) unless the DSN sets them: a cluster that vanishes
# without closing its sockets (a host or network gone) is noticed in about 25 s, not hours.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
              "keepalives_count": "3"}


def connect(dsn: str, *, label: str, limits: SessionLimits | None = None,
            connect_timeout: int = 10) -> psycopg.Connection:
    """Open an autocommit connection with planguard's session limits.

    ``label`` ("old", "new") names the cluster in error messages.
    """
    limits = limits or SessionLimits()
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise PlanguardError(f"invalid DSN for {label}: {dsn_error(exc)}") from exc
    extra = {k: v for k, v in KEEPALIVES.items() if k not in given}
    try:
        conn = psycopg.connect(make_conninfo(
            dsn, application_name=APP_NAME,
            connect_timeout=str(given.get("connect_timeout") or connect_timeout), **extra,
        ), autocommit=True, cursor_factory=MarkedCursor)
    except psycopg.Error as exc:
        raise ConnectionFailed(
            f"cannot connect to {label} cluster ({redact_dsn(dsn)}): {one_line(exc, last=True)}"
        ) from exc
    for name, value in (
        ("statement_timeout", limits.statement_timeout_ms),
        ("lock_timeout", limits.lock_timeout_ms),
        ("idle_in_transaction_session_timeout", limits.idle_in_transaction_ms),
    ):
        conn.execute(
            sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(f"{value}ms"))
        )
    return conn


def server_version_num(conn: psycopg.Connection) -> int:
    """``server_version_num`` as an int (150018, 180006, ...)."""
    return int(conn.info.server_version)


def server_version(conn: psycopg.Connection) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else ""


def identity(conn: psycopg.Connection) -> str:
    """What tells this running cluster from another: its port, when its postmaster started,
    and its system identifier where the role may read it.  Two databases of one cluster have
    the same identity; a replica or a restored copy has its own."""
    row = conn.execute(MARK + "SELECT current_setting('port'), pg_postmaster_start_time()::text").fetchone()
    assert row is not None
    text = f"port {row[0]}, started {row[1]}"
    try:
        sysid = conn.execute(MARK + "SELECT system_identifier FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return text
    return text + (f", system {sysid[0]}" if sysid else "")


def in_recovery(conn: psycopg.Connection) -> bool:
    """A replica (hot standby): it cannot execute writes, not even rolled back."""
    row = conn.execute(MARK + "SELECT pg_is_in_recovery()").fetchone()
    return bool(row and row[0])
