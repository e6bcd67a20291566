"""``planguard.explain`` on real clusters (OLD PostgreSQL 15, NEW 18): the plan cache's choice
in one pipeline, and a failure anywhere in it leaving the session as it found it."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from planguard import db
from planguard.explain import GenericPlan, QueryFailed, auto_chooses_generic, explain_once

TABLE = """
CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL);
INSERT INTO items SELECT g, g % 1000 FROM generate_series(1, 20000) g;
CREATE INDEX items_v_idx ON items (v);
ANALYZE items;
"""


def _clean(conn: psycopg.Connection) -> None:
    """Nothing left behind: no transaction open, no statement prepared, the session usable."""
    assert conn.info.transaction_status == TransactionStatus.IDLE
    row = conn.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'planguard%'",
                       prepare=False).fetchone()
    assert row == (0,)


@pytest.mark.parametrize("side", ["old", "new"])
def test_the_plan_cache_choice_in_one_pipeline(olddb: str, newdb: str, side: str) -> None:
    dsn = olddb if side == "old" else newdb
    with db.connect(dsn, label=side) as conn:
        conn.execute(TABLE)
        version = conn.info.server_version
        # A primary-key lookup costs the same whatever the value: the generic plan is taken.
        assert auto_chooses_generic(conn, "SELECT v FROM items WHERE id = $1", ("7",), version) is True
        _clean(conn)
        # A range whose custom plan (an index scan for 5 rows' worth of v) is far cheaper than
        # the generic estimate (a third of the table): custom plans are kept.
        assert auto_chooses_generic(conn, "SELECT id FROM items WHERE v < $1", ("1",), version) is False
        _clean(conn)
        # A write is planned only, never executed: the table is unchanged.
        assert auto_chooses_generic(conn, "DELETE FROM items WHERE id = $1", ("7",), version) is not None
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (20000,)
        _clean(conn)


@pytest.mark.parametrize(("query", "values", "says"), [
    ("SELECT nope FROM items WHERE id = $1", ("7",), "nope"),  # PREPARE fails: nothing after it runs
    ("SELECT v FROM items WHERE id = $1", ("seven",), "invalid input syntax"),  # EXPLAIN EXECUTE fails
])
def test_a_failure_in_the_pipeline_leaves_nothing_behind(newdb: str, query: str, values: tuple[str, ...],
                                                         says: str) -> None:
    with db.connect(newdb, label="new") as conn:
        conn.execute(TABLE)
        with pytest.raises(QueryFailed, match=says):
            auto_chooses_generic(conn, query, values, conn.info.server_version)
        _clean(conn)
        assert auto_chooses_generic(conn, "SELECT v FROM items WHERE id = $1", ("7",),
                                    conn.info.server_version) is True


def test_more_than_one_statement_is_refused_unsent(newdb: str) -> None:
    with db.connect(newdb, label="new") as conn:
        conn.execute(TABLE)
        with pytest.raises(QueryFailed, match="not exactly one statement"):
            auto_chooses_generic(conn, "SELECT 1; DROP TABLE items", (), conn.info.server_version)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (20000,)


@pytest.mark.parametrize("side", ["old", "new"])
def test_a_generic_plan_is_forced_for_its_runs_only(olddb: str, newdb: str, side: str) -> None:
    """The PREPARE rides on the first run, ``plan_cache_mode`` is forced in each run's own
    transaction: the generic plan is what runs (its index scan cannot use the value), and the
    session's setting is untouched between runs and after."""
    dsn = olddb if side == "old" else newdb
    with db.connect(dsn, label=side) as conn:
        conn.execute(TABLE)
        mode = conn.execute("SHOW plan_cache_mode").fetchone()
        generic = GenericPlan(conn, "SELECT id FROM items WHERE v < $1")
        runs = [generic.run(("1",)) for _ in range(3)]
        assert conn.execute("SHOW plan_cache_mode").fetchone() == mode
        # The generic plan estimates a third of the table whatever the value; the custom plan
        # for v < 1 expects the 20 rows it finds.
        assert all(r.plan.root.plan_rows > 1000 for r in runs), [r.plan.root.plan_rows for r in runs]
        custom = explain_once(conn, "SELECT id FROM items WHERE v < $1", ("1",), False)
        assert custom.plan.root.plan_rows < 100
        generic.close()
        _clean(conn)
        # A statement that fails on its first run (PREPARE passes, the value does not bind)
        # leaves nothing prepared, and the next run prepares afresh.
        failing = GenericPlan(conn, "SELECT v FROM items WHERE id = $1")
        with pytest.raises(QueryFailed, match="invalid input syntax"):
            failing.run(("seven",))
        _clean(conn)
        assert failing.run(("7",)).plan.root.plan_rows == 1
        failing.close()
        # A PREPARE that fails: the error is the server's, nothing is left behind.
        with pytest.raises(QueryFailed, match="nope"):
            GenericPlan(conn, "SELECT nope FROM items WHERE id = $1").run(("7",))
        _clean(conn)
