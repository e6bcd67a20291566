"""Before a comparison sends any statement (I/O): both clusters reachable, supported, two
different clusters, and what each can do (a replica cannot execute writes).

Each failure is one ``PlanguardError`` that says what is wrong and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

from planguard import db
from planguard.errors import ConfigError, PlanguardError
from planguard.safety import MIN_SERVER_VERSION
from planguard.workload import Workload


@dataclass(frozen=True)
class Side:
    label: str  # old, new
    version: str
    version_num: int
    identity: str
    in_recovery: bool


def _side(label: str, dsn: str, limits: db.SessionLimits) -> Side:
    with db.connect(dsn, label=label, limits=limits) as conn:
        side = Side(label, db.server_version(conn), db.server_version_num(conn), db.identity(conn),
                    db.in_recovery(conn))
    if side.version_num < MIN_SERVER_VERSION:
        raise PlanguardError(
            f"{label.upper()} runs PostgreSQL {side.version}; planguard supports PostgreSQL "
            f"{MIN_SERVER_VERSION // 10000} and later")
    return side


def preflight(old_dsn: str, new_dsn: str, workload: Workload, limits: db.SessionLimits, *,
              allow_same_cluster: bool = False) -> tuple[Side, Side]:
    """Both sides, checked; raises when one cannot be reached, is too old, or both are one
    cluster (unless ``allow_same_cluster``: planguard's own A/A tests)."""
    multi = len(workload.databases) > 1
    dbname = workload.databases[0] if workload.databases else None
    old = _side("old", db.with_dbname(old_dsn, dbname, override=multi, label="old"), limits)
    new = _side("new", db.with_dbname(new_dsn, dbname, override=multi, label="new"), limits)
    if old.identity == new.identity and not allow_same_cluster:
        raise ConfigError(
            f"OLD and NEW are the same cluster (PostgreSQL {new.version}, {new.identity}): comparing a "
            "cluster with itself proves nothing about the cutover. Point NEW at the new cluster "
            "(--allow-same-cluster exists to test planguard itself)")
    return old, new
