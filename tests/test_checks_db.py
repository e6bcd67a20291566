"""Readiness checks on real clusters: each fault injected in its own database yields
exactly its finding, the finding's remediation SQL clears it, a clean 15 -> 18 pair
yields nothing, and a pg_monitor role gets check_skipped instead of errors."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from planguard.catalog.readiness import gather_all, run_check
from planguard.checks.readiness import evaluate_all
from planguard.clusters import Cluster, cluster_pair
from planguard.config import Thresholds
from planguard.db import SessionLimits
from planguard.findings import Finding
from tests.conftest import Pair
from tests.fixtures.readiness_scenarios import (
    SCENARIOS,
    Scenario,
    build_clean_pair,
    execute,
    remediation_statements,
    setup,
    used_on_new,
)

pytestmark = pytest.mark.db

# The shared test clusters differ in one setting on purpose (conftest: NEW runs with
# autovacuum off so that unanalyzed tables stay unanalyzed); that is a real finding.
CONFTEST_NOISE = {("setting_diff", "warning", "autovacuum")}


def _keys(findings: list[Finding], kinds: frozenset[str] | None = None) -> set[tuple[str, str, str]]:
    keys = {(f.kind, f.severity, f.object) for f in findings} - CONFTEST_NOISE
    return {k for k in keys if kinds is None or k[0] in kinds}


def _check(scenario: Scenario, olddb: str, newdb: str, used: frozenset[str]) -> list[Finding]:
    kw = {"max_scan_bytes": scenario.max_scan_bytes} if scenario.max_scan_bytes else {}
    with psycopg.connect(olddb, autocommit=True) as o, psycopg.connect(newdb, autocommit=True) as n:
        old, new = gather_all(o, **kw), gather_all(n, **kw)
    assert not old.errors and not new.errors
    return evaluate_all(old, new, Thresholds(), used)


def _drop_role(clusters: Pair, role: str) -> None:
    for cluster in (clusters.old, clusters.new):
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_fault_yields_exactly_its_finding(scenario: Scenario, clusters: Pair, olddb: str, newdb: str,
                                          dbname: str) -> None:
    if clusters.new.major < scenario.min_new_major:
        pytest.skip(f"needs PostgreSQL {scenario.min_new_major}+ as NEW")
    role = f"{dbname}_r"
    try:
        setup(scenario, olddb, newdb, dbname, role)
        used = used_on_new(scenario, newdb)
        findings = _check(scenario, olddb, newdb, used)
        assert _keys(findings, scenario.kinds) == scenario.expected_for(dbname, role)
        for f in findings:
            assert f.message and f.remediation, f

        fixed = scenario.fixed_for(dbname, role)
        for f in findings:
            if (f.kind, f.object) in fixed:
                execute(newdb, remediation_statements(f.remediation))
        after = {(f.kind, f.object) for f in _check(scenario, olddb, newdb, used)}
        assert not fixed & after, f"remediation did not clear {fixed & after}"
    finally:
        if scenario.uses_role:
            _drop_role(clusters, role)


def test_remediation_quotes_odd_names(olddb: str, newdb: str) -> None:
    scenario = next(s for s in SCENARIOS if s.name == "sequence_behind")
    setup(scenario, olddb, newdb, "", "")
    findings, _, _ = run_check(olddb, newdb)
    odd = next(f for f in findings if f.object == 'public."Odd Table_Id_seq"')
    assert odd.remediation == ("SELECT setval('public.\"Odd Table_Id_seq\"', "
                               "greatest((SELECT max(\"Id\") FROM public.\"Odd Table\"), 100));")
    assert "50" in odd.message and "100" in odd.message


def test_database_collation_version_mismatch(clusters: Pair, dbname: str) -> None:
    if clusters.new.major < 17:
        pytest.skip("needs the builtin collation provider (PostgreSQL 17+) on NEW")
    name = f"{dbname}_coll"
    ident = sql.Identifier(name)
    with psycopg.connect(clusters.old.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    with psycopg.connect(clusters.new.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER builtin "
                             "BUILTIN_LOCALE 'C.UTF-8'").format(ident))
        conn.execute("UPDATE pg_database SET datcollversion = '0.9' WHERE datname = %s", (name,))
    old_dsn, new_dsn = clusters.old.dsn(name), clusters.new.dsn(name)
    try:
        for dsn in (old_dsn, new_dsn):
            execute(dsn, ["CREATE TABLE names (id int PRIMARY KEY, name text)",
                          "CREATE INDEX names_name ON names (name)"])
        findings, _, _ = run_check(old_dsn, new_dsn)
        coll = [f for f in findings if f.kind == "collation_version"]
        assert [(f.severity, f.object) for f in coll] == [("blocker", f"database {name}")]
        assert "bt_index_check('public.names_name'::regclass, true)" in coll[0].remediation
        execute(new_dsn, remediation_statements(coll[0].remediation))
        findings, _, _ = run_check(old_dsn, new_dsn)
        assert not [f for f in findings if f.kind == "collation_version"]
    finally:
        for cluster in (clusters.old, clusters.new):
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def test_a_lock_makes_the_check_incomplete_not_hang(olddb: str, newdb: str) -> None:
    for dsn in (olddb, newdb):
        execute(dsn, ["CREATE TABLE busy (id serial PRIMARY KEY, v int)",
                      "INSERT INTO busy (v) SELECT g FROM generate_series(1, 100) g", "ANALYZE busy"])
    with psycopg.connect(newdb) as locker:  # a migration holding ACCESS EXCLUSIVE on NEW
        locker.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        # It gives up on the lock (lock_timeout, said below) instead of waiting for the holder.
        findings, old, new = run_check(olddb, newdb, limits=SessionLimits(lock_timeout_ms=200))
        locker.rollback()
    assert not old.errors
    assert {e.family for e in new.errors} >= {"statistics"}
    assert all("lock timeout" in e.message for e in new.errors)
    keys = _keys(findings)
    assert ("check_incomplete", "blocker", "statistics on NEW") in keys
    assert new.settings is not None and new.environment is not None  # the other families still ran


PRIV_SCHEMA = (
    "CREATE TABLE acct (id serial PRIMARY KEY, tenant int, email text)",
    "INSERT INTO acct (tenant, email) SELECT g % 10, 'u' || g FROM generate_series(1, 3000) g",
    "CREATE INDEX acct_lower ON acct (lower(email))",
    "CREATE STATISTICS acct_te ON tenant, email FROM acct",
    "CREATE TABLE secret (id int PRIMARY KEY, v text)",
    "INSERT INTO secret SELECT g, 'v' || g FROM generate_series(1, 500) g",
    "ALTER TABLE secret ENABLE ROW LEVEL SECURITY",
    "ANALYZE secret",
)


def test_monitoring_role_gets_skips_not_errors(clusters: Pair, olddb: str, newdb: str, dbname: str) -> None:
    role = f"{dbname}_mon"
    ident = sql.Identifier(role)
    try:
        for cluster, dsn in ((clusters.old, olddb), (clusters.new, newdb)):
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
                conn.execute(sql.SQL("GRANT pg_monitor TO {}").format(ident))
            execute(dsn, PRIV_SCHEMA)
        execute(olddb, ["ANALYZE"])  # NEW: restored, never analyzed
        old_dsn, new_dsn = f"{olddb} user={role}", f"{newdb} user={role}"

        findings, old, new = run_check(old_dsn, new_dsn)
        assert not old.errors and not new.errors
        keys = _keys(findings)
        # never_analyzed still found: reltuples = -1 on PostgreSQL 14+ needs no privilege
        assert ("never_analyzed", "blocker", "public.acct") in keys
        skipped = {o for k, _, o in keys if k == "check_skipped"}
        assert skipped == {
            "stats_coverage (column statistics on OLD)", "stats_coverage (column statistics on NEW)",
            "stats_coverage (extended statistics on OLD)", "stats_coverage (extended statistics on NEW)",
            "sequence_behind (privileges on OLD)", "sequence_behind (privileges on NEW)",
        }
        msgs = {f.object: f for f in findings if f.kind == "check_skipped"}
        assert f"GRANT pg_read_all_data TO {role};" in msgs["sequence_behind (privileges on NEW)"].remediation
        assert "owns" in msgs["stats_coverage (extended statistics on NEW)"].message
        assert not {k for k, _, _ in keys} & {"check_incomplete", "sequence_behind"}

        for cluster in (clusters.old, clusters.new):
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(ident))
        findings, _, _ = run_check(old_dsn, new_dsn)
        skipped = {f.object: f for f in findings if f.kind == "check_skipped"}
        assert set(skipped) == {"stats_coverage (extended statistics on OLD)",
                                "stats_coverage (extended statistics on NEW)",
                                "stats_coverage (column statistics on OLD)",
                                "stats_coverage (column statistics on NEW)"}
        # only the table under row-level security stays hidden, and is not called unanalyzed
        assert "(public.secret)" in skipped["stats_coverage (column statistics on NEW)"].message
        never = [f for f in findings if f.kind == "never_analyzed"]
        assert [f.object for f in never] == ["public.acct"]
        assert "no column has a pg_stats row" in never[0].message
    finally:
        for dsn in (olddb, newdb):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        _drop_role(clusters, role)


# -- a clean pair: its own OLD and NEW with identical configuration ------------
@pytest.fixture(scope="module")
def clean_pair() -> Iterator[tuple[Cluster, Cluster]]:
    """OLD and NEW (15 and 18 when both exist) with the same settings, NEW restored from
    OLD with pg_dump like a real migration, then analyzed and given OLD's database settings."""
    with cluster_pair() as (old, new), tempfile.TemporaryDirectory() as tmp:
        build_clean_pair(old, new, "postgres", Path(tmp))
        yield old, new


def test_clean_pair_yields_no_finding(clean_pair: tuple[Cluster, Cluster]) -> None:
    old, new = clean_pair
    findings, old_snap, new_snap = run_check(old.dsn(), new.dsn())
    assert old_snap.server_version_num // 10000 == old.major
    assert new_snap.server_version_num // 10000 == new.major
    assert findings == [], "\n".join(f"{f.kind} {f.object}: {f.message}" for f in findings)
    # the pair does differ in built-in defaults between versions; those are not findings
    assert new_snap.settings and old_snap.settings


def test_cluster_setting_changed_on_new(clean_pair: tuple[Cluster, Cluster]) -> None:
    old, new = clean_pair
    execute(new.dsn(), ["ALTER SYSTEM SET cpu_tuple_cost = 0.03", "SELECT pg_reload_conf()"])
    try:
        for _ in range(50):  # the reload reaches new sessions within moments
            findings, _, _ = run_check(old.dsn(), new.dsn())
            if findings:
                break
        assert [(f.kind, f.severity, f.object) for f in findings] == [("setting_diff", "warning", "cpu_tuple_cost")]
        assert findings[0].remediation.startswith("ALTER SYSTEM SET cpu_tuple_cost = '0.01';")
    finally:
        execute(new.dsn(), ["ALTER SYSTEM RESET cpu_tuple_cost", "SELECT pg_reload_conf()"])


def test_a_table_unanalyzed_on_both_sides_warns_only(olddb: str, newdb: str) -> None:
    """No statistics on NEW blocks when OLD has them (the restore lost them); with none on OLD
    either both plan the table blind, and the cutover does not make that worse: a warning."""
    for dsn in (olddb, newdb):
        # autovacuum off for both tables (on both sides): OLD's must not analyze them meanwhile
        execute(dsn, ["CREATE TABLE blind (id int, v text) WITH (autovacuum_enabled = off)",
                      "CREATE TABLE lost (id int, v text) WITH (autovacuum_enabled = off)",
                      "INSERT INTO blind SELECT g, 'x' FROM generate_series(1, 500) g",
                      "INSERT INTO lost SELECT g, 'x' FROM generate_series(1, 500) g"])
    execute(olddb, ["ANALYZE lost"])
    findings, _, _ = run_check(olddb, newdb)
    never = {f.object: f for f in findings if f.kind == "never_analyzed"}
    assert never["public.lost"].severity == "blocker"
    assert never["public.blind"].severity == "warning" and "none on OLD either" in never["public.blind"].message
