"""What a running cluster is doing (I/O, read-only): ``pg_stat_statements`` counters, the
texts of entries not seen before, and ``pg_stat_activity`` summarized by wait.

Each read is one small query, marked as planguard's own (``planguard.db.MARK``, ``TAIL``) so
that its cost can be accounted and capture leaves it out.  The counters are read without their texts
(``pg_stat_statements(false)``: the texts file is not read every interval); a text is read
once per entry, when it first appears.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

import psycopg
from psycopg import errors

from planguard import db
from planguard.errors import CaptureError, InsufficientPrivilege
from planguard.statdelta import Counters, EntryKey, Reading


@dataclass(frozen=True)
class Activity:
    """Client sessions of the cluster right now (planguard's own left out), by what they wait on."""

    sessions: int  # client backends connected
    active: int  # running a statement
    waiting_lock: int  # wait_event_type Lock (row, relation, transaction id)
    waiting_io: int  # wait_event_type IO
    waiting_lwlock: int  # wait_event_type LWLock (buffer mapping, WAL, ...)
    waiting_client: int  # active but waiting on the client (ClientRead/ClientWrite)
    idle_in_transaction: int
    max_connections: int
    reserved_connections: int  # superuser_reserved_connections (+ reserved_connections on 16+)
    top_waits: tuple[tuple[str, int], ...] = ()  # "Lock:transactionid" -> sessions, largest first

    @property
    def capacity(self) -> int:
        """Connections the application can open."""
        return max(self.max_connections - self.reserved_connections, 1)


def _stat_sql(version_num: int) -> str:
    exec_col = "total_exec_time" if version_num >= 130000 else "total_time"
    toplevel = "toplevel" if version_num >= 140000 else "true"
    return (db.MARK + f"SELECT userid::bigint, dbid::bigint, queryid, {toplevel}, calls, {exec_col}, "
            "rows, shared_blks_hit, shared_blks_read FROM pg_stat_statements(false) "
            "WHERE queryid IS NOT NULL")


def read_counters(conn: psycopg.Connection) -> Reading:
    """One reading of every entry's counters, with the reset time, deallocations and start time."""
    version = db.server_version_num(conn)
    try:
        rows = conn.execute(_stat_sql(version)).fetchall()
    except errors.UndefinedFunction as exc:
        raise CaptureError("pg_stat_statements is not installed in the database watched: "
                           "CREATE EXTENSION pg_stat_statements; (it also needs shared_preload_libraries)"
                           ) from exc
    except errors.ObjectNotInPrerequisiteState as exc:
        raise CaptureError("pg_stat_statements is installed but not loaded: add it to "
                           "shared_preload_libraries on NEW and restart it") from exc
    except errors.InsufficientPrivilege as exc:
        raise InsufficientPrivilege("cannot read pg_stat_statements: GRANT pg_read_all_stats TO <role>;"
                                    ) from exc
    at = time.monotonic()
    info_sql = ("SELECT clock_timestamp()::text, pg_postmaster_start_time()::text"
                + (", (SELECT stats_reset::text FROM pg_stat_statements_info), "
                   "(SELECT dealloc FROM pg_stat_statements_info)" if version >= 140000 else ", NULL, NULL"))
    info = conn.execute(db.MARK + info_sql).fetchone()
    assert info is not None
    entries = {(int(r[0]), int(r[1]), int(r[2]), bool(r[3])):
               Counters(int(r[4]), float(r[5]), int(r[6]), int(r[7]), int(r[8])) for r in rows}
    dealloc = None if info[3] is None else int(info[3])
    return Reading(at, str(info[0]), entries, info[2], dealloc, str(info[1]))


def read_texts(conn: psycopg.Connection, keys: Collection[EntryKey]) -> dict[EntryKey, tuple[str, str]]:
    """The normalized text and the database name of these entries (those still in the view)."""
    if not keys:
        return {}
    ids = sorted({k[2] for k in keys})
    rows = conn.execute(
        db.MARK + "SELECT s.userid::bigint, s.dbid::bigint, s.queryid, "
        + ("s.toplevel" if db.server_version_num(conn) >= 140000 else "true")
        + ", s.query, d.datname FROM pg_stat_statements(true) s JOIN pg_database d ON d.oid = s.dbid "
        "WHERE s.queryid = ANY(%s)", (ids,)).fetchall()
    wanted = set(keys)
    out = {}
    for r in rows:
        key = (int(r[0]), int(r[1]), int(r[2]), bool(r[3]))
        if key in wanted:
            out[key] = (str(r[4]), str(r[5]))
    return out


def read_activity(conn: psycopg.Connection) -> Activity:
    """Client sessions by state and wait event, planguard's own sessions left out."""
    version = db.server_version_num(conn)
    reserved = ("current_setting('superuser_reserved_connections')::int"
                + (" + current_setting('reserved_connections')::int" if version >= 160000 else ""))
    row = conn.execute(db.MARK + f"""
        SELECT count(*), count(*) FILTER (WHERE state = 'active'),
               count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'),
               count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'IO'),
               count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'LWLock'),
               count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Client'),
               count(*) FILTER (WHERE state LIKE 'idle in transaction%%'),
               current_setting('max_connections')::int, {reserved},
               coalesce((SELECT json_agg(json_build_array(w, n) ORDER BY n DESC, w)
                         FROM (SELECT wait_event_type || ':' || wait_event AS w, count(*) AS n
                               FROM pg_stat_activity
                               WHERE backend_type = 'client backend' AND state = 'active'
                                 AND wait_event IS NOT NULL AND pid <> pg_backend_pid()
                                 AND application_name IS DISTINCT FROM %s
                               GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5) w), '[]'::json)
        FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND application_name IS DISTINCT FROM %s""", (db.APP_NAME, db.APP_NAME)).fetchone()
    assert row is not None
    counts = [int(v) for v in row[:9]]
    return Activity(counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], counts[7],
                    counts[8], tuple((str(w), int(n)) for w, n in row[9]))
