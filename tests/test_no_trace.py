"""planguard's executions leave no trace in a cluster's activity statistics (issue 15's
trust work): ``pg_stat_user_indexes.idx_scan`` says whether OLD ever used an index, and a
comparison that counted its own scans would make the next one see an index as used that
production never scanned (the postmortem's index).  Real clusters; asserts on counters.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from planguard.compare import compare
from planguard.db import APP_NAME
from planguard.params import analyze
from planguard.workload import ParamSet, Source, Statement, Workload
from tests.conftest import Pair

pytestmark = pytest.mark.db

ITEMS = """
CREATE TABLE items (id bigserial PRIMARY KEY, owner int NOT NULL, qty int NOT NULL);
INSERT INTO items (owner, qty) SELECT g % 1000, g FROM generate_series(1, 20000) g;
CREATE INDEX items_owner_idx ON items (owner);
ANALYZE items;
"""
QUERY = "SELECT count(*), sum(qty) FROM items WHERE owner = $1"


def _workload(dbname: str) -> Workload:
    stmt = Statement(fingerprint=analyze(QUERY).fingerprint, query=QUERY, kind="select", calls=100,
                     tables=("public.items",), param_sets=(ParamSet("given", ("7",)),))
    return Workload(Source("x", 0, dbname, "", "2026-01-01"), (stmt,))


def _scans(dsn: str) -> int:
    """items_owner_idx's idx_scan once planguard's sessions are gone: a backend flushes its
    counters before it leaves pg_stat_activity."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (APP_NAME,)).fetchone() != (0,) and time.monotonic() < deadline:
            time.sleep(0.1)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute("SELECT idx_scan FROM pg_stat_user_indexes "
                           "WHERE indexrelname = 'items_owner_idx'").fetchone()
    assert row is not None
    return int(row[0])


def test_a_comparison_leaves_idx_scan_as_it_found_it(olddb: str, newdb: str, dbname: str) -> None:
    for dsn in (olddb, newdb):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ITEMS)
    before = (_scans(olddb), _scans(newdb))
    said: list[str] = []
    result = compare(olddb, newdb, _workload(dbname), repeat=3, progress=said.append)
    (r,) = result.statements
    assert r.param_sets[0].old.plan is not None
    assert "items_owner_idx" in {n.index_name for n in r.param_sets[0].old.plan.nodes()}
    assert result.load is not None and result.load[0].executions >= 4  # it ran, with the index
    assert (_scans(olddb), _scans(newdb)) == before
    assert not [m for m in said if "track_counts" in m]
    assert not [f for f in result.findings if f.kind == "activity_counted"]
    # The control: the same executions from a session that counts do show.
    with psycopg.connect(olddb, autocommit=True, application_name=APP_NAME) as conn:
        conn.execute("SELECT count(*), sum(qty) FROM items WHERE owner = 7")
    assert _scans(olddb) == before[0] + 1


def test_a_role_that_may_not_set_track_counts_is_told_before_it_counts(clusters: Pair, olddb: str,
                                                                      newdb: str, dbname: str) -> None:
    role = f"r_{dbname}"[:60]
    for dsn in (olddb, newdb):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ITEMS)
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT SELECT ON items TO {role}")
    as_role = [dsn.replace("user=postgres", f"user={role}") for dsn in (olddb, newdb)]
    said: list[str] = []
    try:
        before = _scans(olddb)
        result = compare(*as_role, _workload(dbname), repeat=3, progress=said.append, generic=False)
        counted = _scans(olddb) - before
        # Granted the parameter (PostgreSQL 15+), the same role leaves no trace.
        with psycopg.connect(olddb, autocommit=True) as conn:
            conn.execute(f"GRANT SET ON PARAMETER track_counts TO {role}")
        with psycopg.connect(newdb, autocommit=True) as conn:
            conn.execute(f"GRANT SET ON PARAMETER track_counts TO {role}")
        told: list[str] = []
        before = _scans(olddb)
        compare(*as_role, _workload(dbname), repeat=3, progress=told.append, generic=False)
        granted = _scans(olddb) - before
    finally:
        for c in (clusters.old, clusters.new):
            with psycopg.connect(c.dsn(dbname), autocommit=True) as conn:
                conn.execute(f"REVOKE SET ON PARAMETER track_counts FROM {role}")
                conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    assert result.load is not None and counted == result.load[0].executions
    warned = [m for m in said if "track_counts" in m]
    assert [m.split(":")[0] for m in warned] == ["OLD", "NEW"], said
    assert "permission denied to set parameter" in warned[0]
    first_run = next(i for i, m in enumerate(said) if "SELECT count(*)" in m)
    assert said.index(warned[0]) < first_run  # said before anything ran
    assert granted == 0 and not [m for m in told if "track_counts" in m]
    # The report says it too, for each side, with the grant for that role.
    counted = [f for f in result.findings if f.kind == "activity_counted"]
    assert [(f.object, f.severity) for f in counted] == [("OLD", "info"), ("NEW", "info")]
    assert "permission denied to set parameter" in counted[0].message
    assert counted[0].remediation.startswith(f'GRANT SET ON PARAMETER track_counts TO "{role}";')
    assert f"{result.load[0].executions:,} executions on OLD" in counted[0].message
