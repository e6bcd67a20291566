"""Shared fixtures: real throwaway clusters, started once per test session.

OLD is the oldest PostgreSQL found (Debian's 15 when present), NEW the newest (the
embedded 18), so integration tests cross a real major-version boundary when both
exist.  Each test that needs a database gets its own (``olddb``/``newdb``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from planguard.clusters import Cluster, all_installs, pick_pair
from planguard.errors import ClusterError

FIXTURES = Path(__file__).parent / "fixtures"
_counter = itertools.count()


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        old, new = pick_pair()
    except ClusterError as exc:
        return [f"planguard: no PostgreSQL: {exc}"]
    found = ", ".join(str(i) for i in all_installs())
    return [f"planguard clusters: OLD = PostgreSQL {old.major}, NEW = PostgreSQL {new.major}",
            f"planguard installs found: {found}"]


@dataclass
class Pair:
    old: Cluster
    new: Cluster


@pytest.fixture(scope="session")
def clusters() -> Iterator[Pair]:
    """OLD and NEW clusters for the whole session; one clear stop if they cannot start."""
    try:
        old_install, new_install = pick_pair()
        old = Cluster(old_install, name="test-old").start()
        new = Cluster(new_install, name="test-new", settings={"autovacuum": "off"}).start()
    except ClusterError as exc:
        pytest.exit(f"cannot start test clusters: {exc}", returncode=3)
    try:
        yield Pair(old, new)
    finally:
        new.stop()
        old.stop()


def create_db(cluster: Cluster, name: str) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(cluster.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    return cluster.dsn(name)


def drop_db(cluster: Cluster, name: str) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def dbname(request: pytest.FixtureRequest) -> str:
    """A database name unique to this test, the same on OLD and NEW."""
    base = "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:40]
    return f"t{next(_counter)}_{base}"


@pytest.fixture
def olddb(clusters: Pair, dbname: str) -> Iterator[str]:
    """A fresh database on OLD (with pg_stat_statements); yields its DSN."""
    yield create_db(clusters.old, dbname)
    drop_db(clusters.old, dbname)


@pytest.fixture
def newdb(clusters: Pair, dbname: str) -> Iterator[str]:
    """A fresh database on NEW with the same name as ``olddb``'s; yields its DSN."""
    yield create_db(clusters.new, dbname)
    drop_db(clusters.new, dbname)


def plan_fixture(name: str) -> dict:
    """A recorded EXPLAIN (FORMAT JSON) result from tests/fixtures/plans."""
    return json.loads((FIXTURES / "plans" / f"{name}.json").read_text())["explain"]


def fixture_names(prefix: str = "") -> list[str]:
    return sorted(p.stem for p in (FIXTURES / "plans").glob(f"{prefix}*.json"))
