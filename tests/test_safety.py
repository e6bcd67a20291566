"""Safety against production: what is refused, how writes run, budgets, replicas, and a partial
result judged.  Pure parts on recorded data; the rest on real clusters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import psycopg
import pytest

from planguard.budget import Budget
from planguard.cli import Duration
from planguard.clusters import Cluster
from planguard.compare import compare
from planguard.config import Thresholds
from planguard.judge import comparison_of
from planguard.loader import load
from planguard.recording import CUSTOM, Recording, SideRecord, Stopped
from planguard.safety import Policy, effective_writes, one_statement, refusal_of, screen
from tests.conftest import Pair
from tests.fixtures.record_recordings import OUT
from tests.test_compare import TABLE, WRITES, _checksum, _workload

# -- pure ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "single"), [
    ("SELECT 1", True), ("SELECT 1;", True), ("SELECT ';' AS semi", True), ("SELECT $$a;b$$", True),
    ("/* ; */ SELECT 1 -- ;", True), ("SELECT 1; COMMIT; DROP TABLE t", False),
    ("EXPLAIN (FORMAT JSON) SELECT 1; DROP TABLE t", False), ("SELECT 'unterminated", False),
])
def test_one_statement_is_what_the_scanner_says(text: str, single: bool) -> None:
    assert one_statement(text) is single


@pytest.mark.parametrize(("query", "refused"), [
    ("SELECT * FROM t WHERE id = $1", None),
    ("WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d", None),
    ("DROP TABLE t", "utility or DDL statement (DROP)"),
    ("SET work_mem = '1GB'", "utility or DDL statement (SET)"),
    ("LOCK TABLE t", "utility or DDL statement (LOCK)"),
    ("CALL p()", "utility or DDL statement (CALL)"),
    ("CREATE TABLE x AS SELECT 1", "utility or DDL statement (CREATE)"),
    ("SELECT 1; DELETE FROM t", "not one statement"),
])
def test_what_is_refused(query: str, refused: str | None) -> None:
    why = refusal_of(query)
    assert (why is None) if refused is None else (why is not None and refused in why)


def test_writes_follow_the_policy_and_a_replica_plans_them_only() -> None:
    (insert,) = _workload("db", WRITES[2:3]).statements
    (select,) = _workload("db", [("SELECT * FROM items WHERE owner = $1", ("1",))]).statements
    assert screen(insert, writes="rollback") is None
    assert "planned only (--writes explain)" in (screen(insert, writes="explain") or "")
    assert "not run (--writes skip)" in (screen(insert, writes="skip") or "")
    assert "NEW is a replica" in (screen(insert, writes="rollback", new_in_recovery=True) or "")
    assert screen(select, writes="skip", new_in_recovery=True) is None
    assert effective_writes("rollback", True) == "explain" and effective_writes("skip", True) == "skip"
    slow = replace(select, mean_ms=900.0)
    assert "exceeds --max-query-ms 100" in (screen(slow, writes="rollback", max_query_ms=100) or "")
    with pytest.raises(ValueError):
        Policy(writes="sometimes")


def test_budgets() -> None:
    b = Budget(max_total_s=60, max_old_server_s=5, polite_active=4, polite_lag_s=10)
    assert b.spent(59, 4999) is None
    assert "--max-total 60 s" in (b.spent(60, 0) or "")
    assert "--max-old-server-time 5 s" in (b.spent(1, 5000) or "")
    assert b.busy(4, None) is None and "5 active sessions" in (b.busy(5, None) or "")
    assert "lags by 12.0 s" in (b.busy(0, 12.0) or "")
    assert not Budget().polite and Budget().spent(1e9, 1e9) is None


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0)])
def test_durations(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


def test_a_bad_duration_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert("soon", None, None)


def test_a_partial_recording_is_judged_partial() -> None:
    """The demo's real recording, cut as a stop after its first statements would leave it."""
    rec = Recording.load(OUT / "demo_as_restored.recording.json")
    workload = load(OUT / "demo_as_restored.workload.json")
    first, second = workload.statements[0].key, workload.statements[1].key
    in_flight = next(k for k in rec.old.runs if k[0] == second and k[2] == CUSTOM)
    keep = {first}

    def cut(side: SideRecord) -> SideRecord:
        s = side.kept()
        s.runs = {k: v for k, v in s.runs.items() if k[0] in keep}
        s.errors = {k: v for k, v in s.errors.items() if k[0] in keep}
        s.errors[in_flight] = "not finished: interrupted by SIGTERM"
        s.plan_only = {}
        return s

    partial = Recording(cut(rec.old), cut(rec.new), Stopped("interrupted by SIGTERM", "interrupted", (in_flight,)))
    result = comparison_of(workload, partial, Thresholds(), repeat=5, redact=False, started_at="x",
                           duration_s=0.0)
    assert result.partial and result.verdict.decision == "NO-GO"
    statuses = [r.status for r in result.statements]
    assert statuses[0] not in ("skipped", "error") and statuses[1] == "error"
    assert all(r.not_reached for r in result.statements[2:])
    stopped = next(f for f in result.findings if f.kind == "run_stopped")
    assert stopped.severity == "blocker" and "1 of 8 statements were compared, 1 cut short, 6 not reached" \
        in stopped.message
    assert not [f for f in result.findings if f.kind == "statement_skipped"]  # said once, not per statement
    coverage = next(f for f in result.findings if f.kind == "incomplete_coverage")
    assert "6 statements not reached: the run stopped before them (interrupted by SIGTERM)" in coverage.message
    assert coverage.message.count("not reached") == 1
    budget = replace(partial, stopped=Stopped("the time budget (--max-total 1 s) is spent", "budget", ()))
    judged = comparison_of(workload, budget, Thresholds(), repeat=5, redact=False, started_at="x",
                           duration_s=0.0)
    assert next(f for f in judged.findings if f.kind == "run_stopped").severity == "warning"


# -- on real clusters ----------------------------------------------------------------------

pytest_db = pytest.mark.db


def _tables(*dsns: str) -> None:
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)


@pytest_db
def test_a_thousand_writes_change_nothing(olddb: str, newdb: str, dbname: str) -> None:
    _tables(olddb, newdb)
    before = (_checksum(olddb), _checksum(newdb))
    # The fixed rule: 50 pairs of each, whatever they say (adaptive measurement stops early).
    result = compare(olddb, newdb, _workload(dbname, WRITES), repeat=50, adaptive=False)
    after = (_checksum(olddb), _checksum(newdb))
    assert result.load is not None
    executions = result.load[0].executions + result.load[1].executions
    assert executions >= 1000
    for b, a in zip(before, after, strict=True):
        assert a[:2] == b[:2], "table contents changed"
    # Both sides ran each write as often (warm-ups in pairs too): the sequences moved alike.
    assert after[0][2] - before[0][2] == after[1][2] - before[1][2] > 0


@pytest_db
@pytest.mark.parametrize("writes", ["explain", "skip"])
def test_writes_explain_plans_and_skip_leaves_them(olddb: str, newdb: str, dbname: str, writes: str) -> None:
    _tables(olddb, newdb)
    before = (_checksum(olddb), _checksum(newdb))
    select = ("SELECT count(*) FROM items WHERE owner = $1", ("3",))
    result = compare(olddb, newdb, _workload(dbname, [*WRITES, select]), repeat=2,
                     policy=Policy(writes=writes))
    assert (_checksum(olddb), _checksum(newdb)) == before  # not even a sequence value drawn
    by_kind = {r.statement.query: r for r in result.statements}
    assert by_kind[select[0]].status not in ("skipped", "error")
    for query, _ in WRITES:
        r = by_kind[query]
        assert r.status == "skipped" and f"--writes {writes}" in r.reason
        planned = r.plan_only is not None and r.plan_only.old is not None and r.plan_only.new is not None
        assert planned is (writes == "explain")
    assert result.policy is not None and result.policy.writes == writes


@pytest_db
def test_max_query_ms_plans_a_slow_statement_without_running_it(olddb: str, newdb: str, dbname: str) -> None:
    _tables(olddb, newdb)
    wl = _workload(dbname, [("SELECT count(*) FROM items WHERE owner = $1", ("3",))])
    wl = replace(wl, statements=(replace(wl.statements[0], mean_ms=5000.0),))
    result = compare(olddb, newdb, wl, repeat=2, policy=Policy(max_query_ms=1000))
    (r,) = result.statements
    assert r.status == "skipped" and "exceeds --max-query-ms 1,000" in r.reason
    assert r.plan_only is not None and r.plan_only.old is not None and not r.plan_only.changes
    assert result.load is not None and result.load[0].executions == 0


@pytest_db
def test_a_replica_as_new_runs_reads_and_plans_writes(clusters: Pair, olddb: str, newdb: str, dbname: str,
                                                     tmp_path: Path) -> None:
    _tables(olddb, newdb)
    replica = Cluster(clusters.new.install, name="replica").start_replica(clusters.new)
    try:
        with psycopg.connect(newdb, autocommit=True) as conn:  # wait until the replica replayed it
            lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        with psycopg.connect(replica.dsn(dbname), autocommit=True) as conn:
            for _ in range(200):
                row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn).fetchone()
                if row and row[0]:
                    break
                conn.execute("SELECT pg_sleep(0.05)")
        said: list[str] = []
        select = ("SELECT count(*) FROM items WHERE owner = $1", ("3",))
        result = compare(olddb, replica.dsn(dbname), _workload(dbname, [WRITES[0], select]), repeat=2,
                         progress=said.append)
    finally:
        replica.stop()
    assert any("NEW in recovery (a replica): writes are planned only" in m for m in said)
    write, read = result.statements
    assert write.status == "skipped" and "NEW is a replica" in write.reason
    assert write.plan_only is not None and write.plan_only.new is not None
    assert read.status not in ("skipped", "error")
    assert result.policy is not None and result.policy.writes == "explain"


@pytest_db
def test_a_statement_failing_on_new_only_blocks_with_the_servers_words(clusters: Pair, olddb: str, newdb: str,
                                                                      dbname: str) -> None:
    """A function removed, a column's type changed, a privilege not granted on NEW: each is an
    ``error`` call and a blocker quoting NEW's server; an error on both sides is existing."""
    role = f"r_{dbname}"[:60]
    for dsn in (olddb, newdb):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)
            conn.execute("CREATE FUNCTION bump(int) RETURNS int LANGUAGE sql AS 'SELECT $1 + 1'; "
                         "CREATE TABLE secrets (id int PRIMARY KEY, v text); "
                         "INSERT INTO secrets SELECT g, 's' || g FROM generate_series(1, 100) g; ANALYZE secrets")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT SELECT ON items, secrets TO {role}; GRANT EXECUTE ON FUNCTION bump(int) TO {role}")
    with psycopg.connect(newdb, autocommit=True) as conn:
        conn.execute(f"DROP FUNCTION bump(int); REVOKE SELECT ON secrets FROM {role}; "
                     "ALTER TABLE items ALTER COLUMN note TYPE int USING length(note)")
    queries = [
        ("SELECT bump(qty) FROM items WHERE owner = $1", ("3",)),
        ("SELECT count(*) FROM items WHERE note LIKE $1", ("n1%",)),
        ("SELECT v FROM secrets WHERE id = $1", ("7",)),
        ("SELECT no_such_column FROM items WHERE owner = $1", ("3",)),
        ("SELECT count(*) FROM items WHERE owner = $1", ("3",)),
    ]
    as_role = [dsn.replace("user=postgres", f"user={role}") for dsn in (olddb, newdb)]
    try:
        result = compare(*as_role, _workload(dbname, queries), repeat=2, generic=False)
    finally:
        for c in (clusters.old, clusters.new):
            with psycopg.connect(c.dsn(dbname), autocommit=True) as conn:
                conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    by_query = {r.statement.query: r for r in result.statements}
    words = {queries[0][0]: "function bump(integer) does not exist",
             queries[1][0]: "operator does not exist: integer ~~",
             queries[2][0]: "permission denied for table secrets"}
    errors = {f.subject.name: f for f in result.findings if f.kind == "query_error" and f.subject}
    assert set(errors) == {by_query[q].statement.short_id for q in [*words, queries[3][0]]}
    for query, said in words.items():
        r = by_query[query]
        assert r.status == "error" and r.reason.startswith("fails on NEW only") and said in r.reason, r.reason
        f = errors[r.statement.short_id]
        assert f.severity == "blocker" and said in f.message
    both = by_query[queries[3][0]]
    assert both.status == "error" and "fails on both clusters, an existing error" in both.reason
    assert errors[both.statement.short_id].severity != "blocker"
    assert by_query[queries[4][0]].status not in ("error", "skipped")
    assert result.verdict.decision == "NO-GO"
