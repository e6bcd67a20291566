"""Parameter values from real server logs: stderr, csvlog, jsonlog and auto_explain."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from planguard.capture import capture
from planguard.clusters import Cluster, pick_pair
from planguard.logparse import parse_parameters, read_log

pytestmark = pytest.mark.db

LISTING = "SELECT id FROM orders WHERE customer = %s AND status = %s ORDER BY id DESC LIMIT 5"


@pytest.fixture(scope="module")
def logged() -> Iterator[tuple[Cluster, dict[str, Path]]]:
    """A cluster that logs every statement in three formats, with auto_explain, and traffic."""
    _, newest = pick_pair()
    settings = {
        "logging_collector": "on", "log_directory": "'log'", "log_filename": "'pg'",
        "log_destination": "'stderr,csvlog" + (",jsonlog'" if newest.major >= 15 else "'"),
        "log_min_duration_statement": "0",
        "shared_preload_libraries": "'pg_stat_statements,auto_explain'",
        "auto_explain.log_min_duration": "0",
    }
    if newest.major >= 16:
        settings["auto_explain.log_parameter_max_length"] = "-1"
    cluster = Cluster(newest, name="logs", settings=settings).start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, status text NOT NULL)")
            conn.execute("INSERT INTO orders SELECT g, g % 100, CASE WHEN g % 10 = 0 THEN 'open' "
                         "ELSE 'it''s done' END FROM generate_series(1, 5000) g")
            conn.execute("ANALYZE orders")
            conn.execute("SELECT pg_stat_statements_reset()")
        # Extended protocol: values in "DETAIL:  parameters: $1 = '...'".
        with psycopg.connect(cluster.dsn(), autocommit=True, prepare_threshold=None) as conn:
            for customer, status in ((7, "open"), (7, "open"), (42, "it's done")):
                conn.execute(LISTING, (customer, status))
        # Simple protocol: literals in the text.
        with psycopg.connect(cluster.dsn(), autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            conn.execute("SELECT count(*) FROM orders WHERE customer > %s AND status <> %s", (-3, "it's done"))
        time.sleep(1.0)  # the logging collector writes asynchronously
        logdir = cluster.datadir / "log"
        files = {"stderr": logdir / "pg", "csvlog": logdir / "pg.csv"}
        if newest.major >= 15:
            files["jsonlog"] = logdir / "pg.json"
        yield cluster, files
    finally:
        cluster.stop()


def test_parameters_detail() -> None:
    assert parse_parameters("parameters: $1 = '42', $2 = NULL, $3 = 'it''s, ok'") == {
        1: "42", 2: None, 3: "it's, ok"}


@pytest.mark.parametrize("fmt", ["stderr", "csvlog", "jsonlog"])
def test_every_format_gives_the_values(logged: tuple[Cluster, dict[str, Path]], fmt: str) -> None:
    cluster, files = logged
    if fmt not in files:
        pytest.skip(f"jsonlog needs PostgreSQL 15+, this is {cluster.major}")
    entries = read_log(files[fmt])
    listing = [e for e in entries if "ORDER BY id DESC LIMIT" in e.query]
    # the parameters, then the literal the application wrote (LIMIT 5), as pg_stat_statements numbers them
    assert {e.values for e in listing} >= {("7", "open", "5"), ("42", "it's done", "5")}
    assert all(e.duration_ms is not None for e in listing)
    simple = [e for e in entries if "customer >" in e.query]
    assert simple and simple[0].values == ("-3", "it's done")
    if fmt != "stderr":
        assert all(e.database == "postgres" for e in listing)


def test_auto_explain_entries_are_read(logged: tuple[Cluster, dict[str, Path]]) -> None:
    cluster, files = logged
    text = files["stderr"].read_text()
    assert "plan:" in text and "Query Text:" in text
    entries = read_log(files["stderr"])
    # each listing execution appears twice: the duration line and auto_explain's plan
    assert sum(1 for e in entries if "ORDER BY id DESC LIMIT" in e.query) >= 6
    if cluster.major >= 16:
        assert "Query Parameters:" in text


def test_capture_uses_logged_values_first(logged: tuple[Cluster, dict[str, Path]]) -> None:
    cluster, files = logged
    wl = capture(cluster.dsn(), top=10, from_log=files["csvlog"])
    listing = next(s for s in wl.statements if "ORDER BY id DESC LIMIT" in s.query)
    by_label = {p.label: p.values for p in listing.param_sets}
    logged = [label for label in by_label if label.startswith("log:")]
    assert logged and list(by_label)[:len(logged)] == logged, "logged values come first"
    assert any(label.startswith("log: slowest (") for label in logged)
    frequent = [v for label, v in by_label.items() if label.startswith("log: most frequent")]
    assert frequent in ([], [("7", "open", "5")])  # absent only when the slowest was that one
    assert ("7", "open", "5") in by_label.values()
    # LIMIT came from the log: the real value, not the default of 50
    assert all(by_label[label][2] == "5" for label in logged)
    assert any("logged executions" in n for n in wl.notes)
