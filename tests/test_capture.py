"""capture on a real cluster: the workload must be executable and say what it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from planguard.capture import capture
from planguard.errors import CaptureError
from planguard.explain import QueryFailed, explain_once, needs_rollback
from planguard.loader import load
from planguard.safety import Policy
from tests.conftest import Pair

pytestmark = pytest.mark.db


@pytest.fixture
def app_old(clusters: Pair, olddb: str, dbname: str) -> str:
    """The demo's app schema on OLD at a small scale, with traffic in pg_stat_statements."""
    from planguard.demo import load_old

    load_old(clusters.old, rows=30_000, iterations=300, dbname=dbname)
    return olddb


def test_captured_parameter_sets_execute_and_find_rows(app_old: str) -> None:
    wl = capture(app_old, top=20)
    assert wl.source.database.startswith("t") and wl.format_version == 1
    kinds = {s.kind for s in wl.statements}
    assert {"select", "update", "insert"} <= kinds
    assert all("planguard" not in s.query for s in wl.statements)
    assert not any("_seq" in s.query for s in wl.statements), "sequence reads are not app statements"
    by_query = {s.query.split(" FROM ")[0]: s for s in wl.statements}
    lookup = by_query["SELECT id, tenant_id, status"]
    assert lookup.bindings[0].table == "public.accounts" and lookup.bindings[0].column == "email"
    with psycopg.connect(app_old, autocommit=True) as conn:
        for s in wl.statements:
            assert s.skip_reason is None, (s.query, s.skip_reason)
            assert s.param_sets and s.calls > 0 and s.tables
            for ps in s.param_sets:
                try:
                    run = explain_once(conn, s.query, ps.values, needs_rollback(s.query))
                except QueryFailed as exc:  # pragma: no cover - the assertion message is the point
                    pytest.fail(f"{s.query!r} with {ps.label} {ps.values}: {exc}")
                if s.kind == "select" and any(b.role == "compare" for b in s.bindings):
                    assert (run.plan.root.actual_rows or 0) > 0, f"lookup found no row: {s.query} {ps.values}"


def test_typical_heavy_and_rare_sets_are_real_correlated_rows(app_old: str) -> None:
    wl = capture(app_old, top=20)
    listing = next(s for s in wl.statements if "ORDER BY created_at DESC LIMIT" in s.query)
    sets = {p.label: p.values for p in listing.param_sets}
    assert set(sets) == {"typical", "heavy hitter", "rare"}
    assert sets["heavy hitter"][0] == "1"  # tenant 1 owns half the rows
    assert sets["rare"][0] not in ("1", "2", "3")  # a small tenant
    assert all(v[2] == "50" for v in sets.values())  # LIMIT is normalized away: the documented default
    with psycopg.connect(app_old) as conn:
        for label, values in sets.items():
            found = conn.execute("SELECT count(*) FROM transactions WHERE tenant_id = %s AND status = %s",
                                 (int(values[0]), values[1])).fetchone()
            assert found and found[0] > 0, f"{label} set {values} matches no row"


def test_timestamp_lower_bound_gets_the_recent_24_hours(app_old: str) -> None:
    wl = capture(app_old, top=20)
    dash = next(s for s in wl.statements if "created_at > $2" in s.query)
    assert dash.bindings[1].op == ">"
    with psycopg.connect(app_old) as conn:
        for ps in dash.param_sets:
            gap = conn.execute("SELECT (SELECT max(created_at) FROM transactions) - %s::timestamptz",
                               (ps.values[1],)).fetchone()
            assert gap is not None and abs(gap[0].total_seconds() - 86400) < 3600, (ps.label, gap)


def test_snapshot_of_old_catalog(app_old: str) -> None:
    """The workload carries OLD's catalog as the readiness checks read it: for `check` against
    the recorded OLD, and to tell the indexes production used from those it never scanned."""
    from planguard.checks.readiness import ClusterSnapshot

    wl = capture(app_old, top=20)
    (snap,) = (ClusterSnapshot.from_dict(d) for d in wl.catalog.values())
    assert snap.statistics is not None and snap.indexes is not None
    tables = {t.name: t for t in snap.statistics.tables}
    assert tables["public.transactions"].reltuples > 20_000
    scans = {ix.name: ix.idx_scan for ix in snap.indexes.indexes}
    assert scans["public.transactions_status_tenant_idx"] == 0
    assert (scans["public.transactions_tenant_created_idx"] or 0) > 0


def test_cli_capture_writes_no_password(app_old: str, tmp_path: Path) -> None:
    out = tmp_path / "workloads" / "w.json"
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "capture", "--dsn",
                          app_old + " password=s3cret-pw", "--top", "5", "-o", str(out), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "captured 5 statements" in res.stdout
    assert "s3cret-pw" not in out.read_text()
    assert len(load(out).statements) == 5
    assert json.loads(out.read_text())["statements"][0]["calls"] > 0


def test_missing_extension_is_a_clear_error(clusters: Pair, olddb: str) -> None:
    with psycopg.connect(olddb, autocommit=True) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    with pytest.raises(CaptureError, match="CREATE EXTENSION pg_stat_statements"):
        capture(olddb)


def test_no_statements_is_a_clear_error(olddb: str) -> None:
    with pytest.raises(CaptureError, match="no plannable statements"):
        capture(olddb)


def test_database_option_overrides_the_dsn(app_old: str, dbname: str) -> None:
    other = app_old.replace(f"dbname={dbname}", "dbname=postgres")
    wl = capture(other, top=3, databases=[dbname])
    assert wl.source.database == dbname and len(wl.statements) == 3


def test_sampling_a_table_it_cannot_read_marks_the_statement(app_old: str) -> None:
    with psycopg.connect(app_old, autocommit=True) as conn:
        conn.execute("CREATE ROLE planguard_reader LOGIN")
        conn.execute("GRANT pg_read_all_stats TO planguard_reader")
        conn.execute("GRANT SELECT ON accounts, tenants TO planguard_reader")
    try:
        wl = capture(app_old + " user=planguard_reader", top=20)
        by_table = {s.tables[0]: s for s in wl.statements if len(s.tables) == 1}
        txn = by_table["public.transactions"]
        assert txn.skip_reason and "public.transactions" in txn.skip_reason
        assert by_table["public.tenants"].skip_reason is None
    finally:
        with psycopg.connect(app_old, autocommit=True) as conn:
            conn.execute("DROP OWNED BY planguard_reader")
            conn.execute("DROP ROLE planguard_reader")


def test_redact_keeps_values_out_of_workload_and_reports(app_old: str, clusters: Pair, dbname: str,
                                                         tmp_path: Path) -> None:
    from planguard.compare import compare
    from planguard.report import write_reports

    plain = capture(app_old, top=20)
    emails = {v for s in plain.statements for p in s.param_sets for v in p.values
              if v and "@example.com" in v}
    assert emails, "the plain capture samples e-mail values"

    res = subprocess.run([sys.executable, "-m", "planguard.cli", "capture", "--dsn", app_old, "--top", "20",
                          "--redact", "-o", str(tmp_path / "w.json"), "-q"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "w.json").read_text()
    assert not any(e in text for e in emails) and '"redacted": true' in text
    wl = load(tmp_path / "w.json")
    assert all(not s.param_sets for s in wl.statements if s.bindings)

    result = compare(app_old, app_old, wl, repeat=1, generic=False,
                     policy=Policy(allow_same_cluster=True))
    assert result.redacted and not [r for r in result.statements if r.status in ("skipped", "error")]
    paths = write_reports(result, tmp_path / "r.html", tmp_path / "r.json")
    for path in paths.values():
        body = path.read_text()
        assert not any(e in body for e in emails), f"a sampled value leaked into {path.name}"
        assert "'settled'" not in body and "&#39;settled&#39;" not in body
    report = json.loads(paths["json"].read_text())
    lookup = next(s for s in report["statements"] if "email = $1" in s["query"])
    assert lookup["param_sets"][0]["values"] == ["<redacted>"]
    assert "email = $1" in lookup["new"]["plan_text"]


def test_keep_values_needs_redact(app_old: str, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "capture", "--dsn", app_old,
                          "--keep-values", "-o", str(tmp_path / "w.json")], capture_output=True, text=True)
    assert res.returncode == 2 and "--keep-values only makes sense with --redact" in res.stderr


def test_capture_and_compare_across_databases(clusters: Pair, olddb: str, dbname: str, tmp_path: Path) -> None:
    """--all-databases: the same statement text in two databases stays two statements,
    each sampled and compared in its own database."""
    from planguard.compare import compare
    from tests.conftest import create_db, drop_db

    second = f"{dbname}_b"
    other = create_db(clusters.old, second)
    try:
        for dsn, owners in ((olddb, 10), (other, 3)):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL)")
                conn.execute("INSERT INTO items SELECT g, g %% %s FROM generate_series(1, 2000) g", (owners,))
                conn.execute("CREATE INDEX ON items (owner)")
                conn.execute("ANALYZE items")
            with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
                for i in range(20):
                    conn.execute("SELECT count(*) FROM items WHERE owner = %s", (i % owners,))
        out = tmp_path / "w.json"
        res = subprocess.run([sys.executable, "-m", "planguard.cli", "capture", "--dsn", olddb,
                              "--all-databases", "-o", str(out), "-q"], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        wl = load(out)
        mine = [s for s in wl.statements if s.database in (dbname, second) and "owner = $1" in s.query]
        assert sorted(s.database for s in mine if "owner = $1" in s.query) == sorted([dbname, second])
        owners = {s.database: int(s.param_sets[0].values[0]) for s in mine if "owner = $1" in s.query}
        assert owners[second] < 3  # sampled in its own database
        scoped = type(wl)(source=wl.source, statements=tuple(mine))
        result = compare(clusters.old.dsn(), clusters.old.dsn(), scoped, repeat=1, generic=False,
                         policy=Policy(allow_same_cluster=True))
        assert {r.status for r in result.statements} <= {"unchanged", "plan_changed", "improved"}
        assert len(result.statements) == len(mine)
    finally:
        drop_db(clusters.old, second)
