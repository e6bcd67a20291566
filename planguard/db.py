"""Connections with safe session settings, and server capabilities.

Every session planguard opens identifies itself (``application_name = planguard``)
and is bounded: ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` are set before anything else runs, so a
check against production never waits on a lock or runs away.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from planguard.errors import ConnectionFailed, PlanguardError, one_line

APP_NAME = "planguard"
# Prefixed to every statement planguard sends, so that capture can exclude them
# from pg_stat_statements (which keeps comments in the normalized text).
MARK = "/* planguard */ "


@dataclass(frozen=True)
class SessionLimits:
    """Per-session safety limits, in milliseconds."""

    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 500
    idle_in_transaction_ms: int = 60_000


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and files."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def with_dbname(dsn: str, dbname: str | None, *, override: bool = False) -> str:
    """``dsn`` with ``dbname`` set when the DSN names no database itself (or always, with override)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise PlanguardError(f"invalid DSN: {str(exc).strip()}") from exc
    if dbname and (override or "dbname" not in params):
        params["dbname"] = dbname
    return make_conninfo(**{k: str(v) for k, v in params.items()})


def connect(dsn: str, *, label: str, limits: SessionLimits | None = None) -> psycopg.Connection:
    """Open an autocommit connection with planguard's session limits.

    ``label`` ("old", "new") names the cluster in error messages.
    """
    limits = limits or SessionLimits()
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise PlanguardError(f"invalid DSN for {label}: {str(exc).strip()}") from exc
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, application_name=APP_NAME, connect_timeout=10
        )
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
