"""Cluster readiness (I/O): every family's catalog read, and the check on two clusters.

``gather_all(conn)`` reads one cluster's catalog into a
:class:`~planguard.checks.readiness.ClusterSnapshot`, one family at a time, each in its
own read-only transaction; a family whose read fails is recorded as a ``FamilyError``
instead of stopping the others.  ``run_check(old_dsn, new_dsn)`` gathers both clusters at
once and evaluates them with :func:`planguard.checks.readiness.evaluate_all` (pure).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from planguard import db
from planguard.catalog import environment, indexes, sequences, settings, statistics
from planguard.checks.readiness import ClusterSnapshot, FamilyError, evaluate_all
from planguard.checks.sequences import DEFAULT_MAX_SCAN_BYTES
from planguard.config import Thresholds
from planguard.errors import one_line
from planguard.findings import Finding


def gather_all(conn: psycopg.Connection, *,
               max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES) -> ClusterSnapshot:
    """Every family's snapshot of the connected database (read-only, one family at a time).

    ``max_scan_bytes``: read ``max(column)`` for a sequence's column without a btree
    index only on tables smaller than this.
    """
    info = conn.execute(db.MARK + "SELECT current_setting('server_version'), current_database()").fetchone()
    assert info is not None
    readers: dict[str, Callable[[psycopg.Connection], Any]] = {
        "statistics": statistics.gather,
        "indexes": indexes.gather,
        "sequences": lambda c: sequences.gather(c, max_scan_bytes=max_scan_bytes),
        "settings": settings.gather,
        "environment": environment.gather,
    }
    snaps: dict[str, Any] = {}
    errors: list[FamilyError] = []
    for family, read in readers.items():
        try:
            with conn.transaction():
                conn.execute(db.MARK + "SET TRANSACTION READ ONLY")
                # Definitions (pg_get_indexdef, pg_get_statisticsobjdef) qualify every name
                # outside pg_catalog, whatever the role's search_path on either cluster.
                conn.execute(db.MARK + "SET LOCAL search_path = pg_catalog, pg_temp")
                snaps[family] = read(conn)
        except psycopg.Error as exc:
            snaps[family] = None
            errors.append(FamilyError(family, one_line(exc)))
    return ClusterSnapshot(db.server_version_num(conn), str(info[0]), str(info[1]), errors=tuple(errors),
                           **snaps)


def run_check(old_dsn: str, new_dsn: str, *, thresholds: Thresholds | None = None,
              limits: db.SessionLimits | None = None,
              max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES,
              old_snapshot: ClusterSnapshot | None = None,
              ) -> tuple[list[Finding], ClusterSnapshot, ClusterSnapshot]:
    """Gather both clusters at once (one thread and connection each) and evaluate.

    ``old_snapshot``: OLD as recorded earlier (a workload's catalog) instead of a live read.
    Raises ConnectionFailed / PlanguardError when a cluster cannot be reached.
    """
    thresholds = thresholds or Thresholds()
    limits = limits or db.SessionLimits()

    def side(label: str, dsn: str) -> ClusterSnapshot:
        with db.connect(dsn, label=label, limits=limits) as conn:
            return gather_all(conn, max_scan_bytes=max_scan_bytes)

    if old_snapshot is not None:
        new = side("new", new_dsn)
        return evaluate_all(old_snapshot, new, thresholds), old_snapshot, new
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="planguard-check") as pool:
        f_old = pool.submit(side, "old", old_dsn)
        f_new = pool.submit(side, "new", new_dsn)
        old, new = f_old.result(), f_new.result()
    return evaluate_all(old, new, thresholds), old, new
