"""Bad input, each on its own: exit code 2, one line saying what is wrong and how to fix it,
no traceback, and never a password.  Against real clusters where the input is a cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from planguard.cli import main
from planguard.clusters import Cluster, pick_pair
from planguard.params import ParseFailure, analyze
from planguard.workload import ParamSet, Source, Statement, Workload
from tests.conftest import Pair
from tests.test_cli import assert_one_line_error, run

pytestmark = pytest.mark.db

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def app(olddb: str) -> str:
    """A database with a table, traffic in pg_stat_statements and a workload of it."""
    with psycopg.connect(olddb, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int); "
                     "INSERT INTO t SELECT g, g % 7 FROM generate_series(1, 1000) g; ANALYZE t")
        for i in range(20):
            conn.execute("SELECT v FROM t WHERE id = %s", (i,))
    return olddb


def _workload(path: Path, query: str, values: tuple[str | None, ...] = ()) -> Path:
    try:
        fingerprint = analyze(query).fingerprint
    except ParseFailure:  # a statement that does not parse is what some tests want
        fingerprint = "0" * 16
    Workload(Source("18.0", 180000, "postgres", "host=x", "2026-01-01"),
             (Statement(fingerprint, query, "select", param_sets=(ParamSet("given", values),)
                        if values else ()),)).save(path)
    return path


def _no_secret(res: object) -> None:
    text = getattr(res, "stdout", "") + getattr(res, "stderr", "")
    assert SECRET not in text


# -- clusters ------------------------------------------------------------------------------


def test_malformed_dsn_quotes_no_part_of_it(tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT 1")
    res = run("compare", f"host=127.0.0.1 password={SECRET[:4]} {SECRET[4:]}", "x", "-w", str(wl))
    assert_one_line_error(res, "invalid DSN for old")
    assert SECRET[4:] not in res.stderr and SECRET[:4] not in res.stderr
    res = run("capture", "--dsn", f"postgresql://u:{SECRET}@h:notaport/db", "-o", str(tmp_path / "c.json"))
    assert_one_line_error(res, "old")
    _no_secret(res)


def test_unreachable_host(tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT 1")
    res = run("compare", f"host=127.0.0.1 port=1 password={SECRET}", "host=127.0.0.1 port=1", "-w", str(wl))
    assert_one_line_error(res, "cannot connect to old cluster")
    _no_secret(res)


def test_wrong_password(clusters: Pair, tmp_path: Path) -> None:
    c = clusters.old
    hba = c.datadir / "pg_hba.conf"
    original = hba.read_text()
    with psycopg.connect(c.dsn(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS pw_user")
        conn.execute(f"CREATE ROLE pw_user LOGIN PASSWORD '{SECRET}'")
        hba.write_text("host all pw_user 127.0.0.1/32 scram-sha-256\n" + original)
        conn.execute("SELECT pg_reload_conf()")
    try:
        wl = _workload(tmp_path / "w.json", "SELECT 1")
        dsn = f"host=127.0.0.1 port={c.port} user=pw_user dbname=postgres password=wrong-{SECRET}"
        res = run("compare", dsn, dsn, "-w", str(wl))
        assert_one_line_error(res, 'password authentication failed for user "pw_user"')
        _no_secret(res)
        res = run("capture", "--dsn", dsn, "-o", str(tmp_path / "c.json"))
        assert_one_line_error(res, "password authentication failed")
        _no_secret(res)
    finally:
        hba.write_text(original)
        with psycopg.connect(c.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("DROP ROLE pw_user")


def test_database_does_not_exist(clusters: Pair, tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT 1")
    res = run("compare", clusters.old.dsn("no_such_db"), clusters.new.dsn("no_such_db"), "-w", str(wl))
    assert_one_line_error(res, 'database "no_such_db" does not exist')


def test_pg_stat_statements_not_installed(olddb: str, tmp_path: Path) -> None:
    with psycopg.connect(olddb, autocommit=True) as conn:
        conn.execute("DROP EXTENSION pg_stat_statements")
    res = run("capture", "--dsn", olddb, "-o", str(tmp_path / "c.json"))
    assert_one_line_error(res, "CREATE EXTENSION pg_stat_statements")


@pytest.fixture(scope="module")
def unpreloaded() -> Iterator[Cluster]:
    """A cluster with the extension installed but not preloaded."""
    cluster = Cluster(pick_pair()[1], name="no-preload", settings={"shared_preload_libraries": "''"}).start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        yield cluster
    finally:
        cluster.stop()


def test_pg_stat_statements_not_preloaded(unpreloaded: Cluster, tmp_path: Path) -> None:
    res = run("capture", "--dsn", unpreloaded.dsn(), "-o", str(tmp_path / "c.json"))
    assert_one_line_error(res, "shared_preload_libraries")


def test_missing_privilege_names_the_role_to_grant(app: str, clusters: Pair, dbname: str,
                                                   tmp_path: Path) -> None:
    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS no_stats")
        conn.execute("CREATE ROLE no_stats LOGIN")
    try:
        dsn = clusters.old.dsn(dbname).replace("user=postgres", "user=no_stats")
        res = run("capture", "--dsn", dsn, "-o", str(tmp_path / "c.json"))
        assert_one_line_error(res, "GRANT pg_read_all_stats")
    finally:
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute("DROP OWNED BY no_stats")
            conn.execute("DROP ROLE no_stats")


def test_empty_pg_stat_statements(olddb: str, tmp_path: Path) -> None:
    with psycopg.connect(olddb, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    res = run("capture", "--dsn", olddb, "-o", str(tmp_path / "c.json"))
    assert_one_line_error(res, "no plannable statements in pg_stat_statements")


def test_same_cluster_is_refused_loudly(app: str, tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT v FROM t WHERE id = $1", ("1",))
    res = run("compare", app, app, "-w", str(wl), "-o", str(tmp_path / "r.html"))
    assert_one_line_error(res, "OLD and NEW are the same cluster")
    assert "proves nothing" in res.stderr


def test_a_server_older_than_the_minimum(app: str, clusters: Pair, dbname: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """No server this old can run here: the minimum is raised above the real server instead."""
    import planguard.preflight

    monkeypatch.setattr(planguard.preflight, "MIN_SERVER_VERSION", 990000)
    wl = _workload(tmp_path / "w.json", "SELECT v FROM t WHERE id = $1", ("1",))
    res = CliRunner().invoke(main, ["compare", app, clusters.new.dsn(dbname), "-w", str(wl),
                                    "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "supports PostgreSQL 99 and later" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


# -- files and options ---------------------------------------------------------------------


def test_workload_file_missing_not_json_of_another_version_or_truncated(tmp_path: Path) -> None:
    assert_one_line_error(run("compare", "a", "b", "-w", str(tmp_path / "none.json")), "cannot read workload")
    (tmp_path / "text.json").write_text("SELECT 1;\n")
    assert_one_line_error(run("compare", "a", "b", "-w", str(tmp_path / "text.json")), "is not valid JSON")
    good = _workload(tmp_path / "w.json", "SELECT 1")
    data = json.loads(good.read_text())
    (tmp_path / "v9.json").write_text(json.dumps({**data, "format_version": 9}))
    assert_one_line_error(run("compare", "a", "b", "-w", str(tmp_path / "v9.json")),
                          "format_version 9 is not supported")
    text = good.read_text()
    (tmp_path / "cut.json").write_text(text[: len(text) // 2])
    assert_one_line_error(run("compare", "a", "b", "-w", str(tmp_path / "cut.json")), "is not valid JSON")


@pytest.mark.parametrize(("query", "why"), [
    ("SELEC v FROM t", "not one statement PostgreSQL's parser can read"),
    ("SELECT 1; COMMIT; DROP TABLE t", "not one statement PostgreSQL's parser can read"),
    ("DROP TABLE t", "a utility or DDL statement (DROP)"),
    ("VACUUM t", "a utility or DDL statement (VACUUM)"),
    ("COPY t TO STDOUT", "a utility or DDL statement (COPY)"),
])
def test_a_statement_planguard_must_not_run_refuses_the_workload(app: str, clusters: Pair, dbname: str,
                                                                 tmp_path: Path, query: str, why: str) -> None:
    wl = _workload(tmp_path / "w.json", query)
    res = run("compare", app, clusters.new.dsn(dbname), "-w", str(wl), "-o", str(tmp_path / "r.html"))
    assert_one_line_error(res, why)
    assert "remove it from the workload file" in res.stderr
    with psycopg.connect(app) as conn:  # nothing ran
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)


@pytest.mark.parametrize(("args", "why"), [
    (["--time-ratio", "0.5"], "time_ratio and buffers_ratio must be at least 1.0"),
    (["--min-coverage", "1.5"], "min_coverage must be at most 1.0"),
    (["--writes", "sometimes"], "Invalid value for '--writes'"),
    (["--max-total", "soon"], "is not a duration"),
    (["--max-total", "0"], "must be more than 0"),
    (["--repeat", "0"], "Invalid value for '--repeat'"),
    (["--polite", "-1"], "Invalid value for '--polite'"),
])
def test_invalid_thresholds_and_options(tmp_path: Path, args: list[str], why: str) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT 1")
    assert_one_line_error(run("compare", "a", "b", "-w", str(wl), *args), why)


def test_an_unwritable_output_fails_before_anything_runs(app: str, clusters: Pair, dbname: str,
                                                         tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT v FROM t WHERE id = $1", ("1",))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for flag in ("-o", "--json", "--save-recording"):
        res = run("compare", app, clusters.new.dsn(dbname), "-w", str(wl), flag, str(blocker / "r.out"))
        assert_one_line_error(res, f"cannot write {blocker / 'r.out'}")
    with psycopg.connect(app) as conn:  # refused before a statement was sent
        calls = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%planguard%EXPLAIN%'"
                             ).fetchone()
    assert calls == (0,)


def test_resume_from_something_else(tmp_path: Path) -> None:
    wl = _workload(tmp_path / "w.json", "SELECT 1")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    res = run("compare", "a", "b", "-w", str(wl), "--resume", str(tmp_path / "other.json"))
    assert_one_line_error(res, "is neither a planguard JSON report nor a recording")
    res = run("compare", "a", "b", "-w", str(wl), "--resume", str(tmp_path / "missing.json"))
    assert_one_line_error(res, "cannot read")
