"""``planguard rehearse`` on real clusters: the dry run the postmortem says was missing.

OLD serves the demo's payments app at a steady 120 statements per second (its
``pg_stat_statements`` then holds the application's call rates) and is captured; NEW is
restored from it with ``pg_dump`` and its big table is not analyzed.  The rehearsal replays
the captured workload, writes included, on NEW.  Assertions are on verdicts, named causes,
held rates, counts and checksums; the one bound on time (the stop) is generous and says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import psycopg
import pytest

from planguard import demo
from planguard.capture import capture
from planguard.rehearsal import GO, NO_GO, RehearseOptions
from planguard.rehearser import REPLAY_APP, Refused, rehearse
from planguard.report.rehearsal import schema
from planguard.workload import Workload
from tests.conftest import Pair, create_db, drop_db
from tests.test_watch_db import _Renamed

pytestmark = [pytest.mark.db, pytest.mark.slow]

ROWS = 1_000_000  # the demo's size: NEW's wrong plan then costs ~100 ms of CPU a call
ACCOUNTS = ROWS // 10
RATE = 120.0  # OLD's application traffic, statements per second
TABLES = ("tenants", "accounts", "transactions")


@pytest.fixture(scope="module")
def scenario(clusters: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Workload]]:
    """OLD with the app's data and a steady traffic captured; NEW restored, big table unanalyzed."""
    old_name, new_name = "rehearse_old", "rehearse_new"
    create_db(clusters.old, old_name)
    demo.load_old(clusters.old, ROWS, 200, dbname=old_name)
    with psycopg.connect(clusters.old.dsn(old_name), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    stop = threading.Event()
    traffic = threading.Thread(target=demo.serve, args=(clusters.old.dsn(old_name), stop), kwargs={
        "rate": RATE, "accounts": ACCOUNTS, "connections": 4}, daemon=True)
    traffic.start()
    time.sleep(8)
    stop.set()
    traffic.join(30)
    workload = capture(clusters.old.dsn(old_name), top=20)
    assert workload.statements and all(s.calls_per_second for s in workload.statements)
    create_db(clusters.new, new_name)
    demo.restore_new(_Renamed(clusters.old, old_name), _Renamed(clusters.new, new_name),
                     tmp_path_factory.mktemp("rehearse"), dbname=new_name)
    yield clusters.new.dsn(new_name), workload
    drop_db(clusters.new, new_name)
    drop_db(clusters.old, old_name)


def checksums(dsn: str) -> dict[str, tuple[int, str]]:
    """Every table's row count and an md5 of all its rows in key order."""
    out = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in TABLES:
            row = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) "
                               f"FROM {table} t").fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out


def replay_sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (REPLAY_APP,)).fetchone()
    assert row is not None
    return int(row[0])


def test_unanalyzed_new_cannot_hold_the_rate_then_holds_it_after_analyze(
        scenario: tuple[str, Workload]) -> None:
    dsn, workload = scenario
    assert any(s.is_write for s in workload.statements), "the replay includes writes"
    before = checksums(dsn)

    # At the captured rate NEW is a NO-GO for its wrong plan, whether or not this machine's
    # cores keep up with it (CI's, a little faster than this one, held 1x at 68 ms a call).
    captured = rehearse(dsn, workload, options=RehearseOptions(duration_s=8))
    assert captured.verdict == NO_GO, captured.reasons
    wrong = captured.steps[0].top
    assert wrong is not None and "FROM transactions" in wrong.query
    slow = [r for r in captured.reasons if r.blocks and r.statement == wrong.key]
    assert slow and slow[0].kind in ("cannot_sustain", "slower_under_load"), [r.text for r in captured.reasons]
    assert slow[0].causes and slow[0].causes[0].kind == "never_analyzed"
    # At 4x that plan needs ~8 cores' worth of CPU (the pool is 3 connections, the machine has
    # 2 cores): no machine like CI's holds it, so the saturation itself is what is judged.
    bad = rehearse(dsn, workload, options=RehearseOptions(duration_s=8, rate=4))
    assert bad.verdict == NO_GO, bad.reasons
    first = bad.reasons[0]
    assert first.kind == "cannot_sustain", [r.text for r in bad.reasons]
    step = bad.steps[0]
    assert not step.held and step.saturation > 0.3
    top = step.top
    assert top is not None and "FROM transactions" in top.query and top.key == first.statement
    assert top.time_share > 0.5, "the statement that starves the pool takes most of the connections' time"
    kinds = [c.kind for c in first.causes]
    assert kinds[0] == "never_analyzed" and "public.transactions" in first.causes[0].text
    assert first.causes[0].fix == "ANALYZE public.transactions;"
    # Its calls on NEW's server read far more buffers than OLD's: the planner's doing, said as such.
    assert any(r.kind == "slower_under_load" and r.statement == top.key for r in bad.reasons)

    assert checksums(dsn) == before, "a rehearsal with writes leaves every row as it was"
    assert replay_sessions(dsn) == 0

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")
    good = rehearse(dsn, workload, options=RehearseOptions(duration_s=8))
    assert good.verdict == GO, [r.text for r in good.reasons]
    assert good.steps[0].held and not any(r.blocks for r in good.reasons)
    assert good.steps[0].served >= 0.95 * good.steps[0].arrived
    assert all(not load.errors for load in good.steps[0].statements)
    assert checksums(dsn) == before


@pytest.fixture(scope="module")
def unanalyzed(clusters: Pair, scenario: tuple[str, Workload],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another NEW database restored from OLD and left unanalyzed (the first test analyzes its own)."""
    name = "rehearse_unanalyzed"
    create_db(clusters.new, name)
    demo.restore_new(_Renamed(clusters.old, "rehearse_old"), _Renamed(clusters.new, name),
                     tmp_path_factory.mktemp("copy"), dbname=name)
    yield clusters.new.dsn(name)
    drop_db(clusters.new, name)


def test_ramp_finds_where_unanalyzed_new_stops_keeping_up(unanalyzed: str, scenario: tuple[str, Workload]) -> None:
    r = rehearse(unanalyzed, scenario[1], options=RehearseOptions(duration_s=5, ramp=(0.5, 1, 2, 4)))
    assert r.verdict == NO_GO
    # This machine falls behind at 1x, CI's at 2x or 4x; none like them holds 4x (see above).
    assert r.saturation_rate is not None and r.saturation_rate <= 4
    assert r.steps[-1].rate == r.saturation_rate and not r.steps[-1].held, "the ramp stops there"
    assert r.headroom is None or r.headroom < r.saturation_rate


def test_a_busy_cluster_is_refused_unless_asked(scenario: tuple[str, Workload], tmp_path: Path) -> None:
    dsn, workload = scenario
    apps = [psycopg.connect(dsn, application_name="payments-api", autocommit=True) for _ in range(5)]
    try:
        with pytest.raises(Refused, match=r"5 client sessions .* looks like production .*"
                                          r"--i-know-this-is-production"):
            rehearse(dsn, workload, options=RehearseOptions(duration_s=1))
        wl = tmp_path / "wl.json"
        workload.save(wl)
        cli = subprocess.run([sys.executable, "-m", "planguard.cli", "rehearse", dsn, "--workload", str(wl),
                              "--duration", "1", "--json", str(tmp_path / "r.json"), "-o",
                              str(tmp_path / "r.html")], capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2, cli.stderr
        assert cli.stderr.count("\n") == 1 and "looks like production" in cli.stderr
        assert "Traceback" not in cli.stderr and not (tmp_path / "r.json").exists()
        anyway = rehearse(dsn, workload, options=RehearseOptions(duration_s=2), allow_production=True)
        assert any("rehearsed anyway" in n for n in anyway.notes)
    finally:
        for c in apps:
            c.close()


def test_cli_writes_reports_and_ctrl_c_stops_with_nothing_left_running(
        unanalyzed: str, scenario: tuple[str, Workload], tmp_path: Path) -> None:
    dsn, workload = unanalyzed, scenario[1]  # NEW's slow plan: calls are in flight when the stop comes
    wl = tmp_path / "app.json"
    workload.save(wl)
    out_json, out_html = tmp_path / "rehearse.json", tmp_path / "rehearse.html"
    proc = subprocess.Popen([sys.executable, "-m", "planguard.cli", "rehearse", dsn, "--workload", str(wl),
                             "--duration", "120", "--rate", "4", "--json", str(out_json), "-o", str(out_html)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while replay_sessions(dsn) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    # The target is 2 s (measured in make bench); this bound only catches a hang on a loaded machine.
    assert took < 10, took
    assert proc.returncode == 1, err
    assert "interrupted by SIGINT" in err and "Traceback" not in err
    gone = time.monotonic() + 5
    while replay_sessions(dsn) and time.monotonic() < gone:
        time.sleep(0.1)
    assert replay_sessions(dsn) == 0, "every replay session is closed"
    doc = json.loads(out_json.read_text())
    jsonschema.validate(doc, schema())
    assert doc["type"] == "rehearsal" and doc["verdict"] in ("INCONCLUSIVE", "NO-GO")
    assert doc["steps"][0]["stopped"] == "interrupted by SIGINT"
    assert doc["steps"][0]["arrived"] > 0 and doc["steps"][0]["timeline"]
    html = out_html.read_text()
    assert "<svg" in html and "Latency, p95" in html and "Active sessions" in html
    assert out.strip().startswith(doc["verdict"])


def test_pgbench_tpcb_like_replays_on_a_healthy_new_and_leaves_every_row(clusters: Pair) -> None:
    """pgbench's own TPC-B-like script (nobody here wrote it: five statements, three UPDATEs on
    contended rows and an INSERT per transaction), run on OLD at a steady rate through the
    extended protocol, captured, and rehearsed on NEW restored with OLD's statistics: GO, the
    writes rolled back, the tables as they were."""
    from tests.fixtures.trust_scenarios import drop, restore_copy

    name = "rehearse_pgbench"
    create_db(clusters.old, name)
    pgbench = clusters.old.install.tool("pgbench")
    try:
        subprocess.run([pgbench, "-i", "-s", "2", "-q", clusters.old.dsn(name)], check=True,
                       capture_output=True, timeout=300)
        with psycopg.connect(clusters.old.dsn(name), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("SELECT pg_stat_statements_reset()")
        subprocess.run([pgbench, "-M", "prepared", "-b", "tpcb-like", "-c", "2", "-R", "40", "-T", "6",
                        clusters.old.dsn(name)], check=True, capture_output=True, timeout=300)
        wl = capture(clusters.old.dsn(name), top=20)
        writes = [s for s in wl.statements if s.is_write]
        assert len(writes) >= 4 and all(s.calls_per_second for s in wl.statements)
        new = restore_copy(clusters.old, clusters.new, name)
        tables = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")
        def sums() -> dict[str, str]:
            with psycopg.connect(new, autocommit=True) as conn:
                return {t: str(conn.execute(f"SELECT count(*) || ':' || md5(coalesce(string_agg(x::text, '|' "
                                            f"ORDER BY x::text), '')) FROM {t} x").fetchone())
                        for t in tables}
        before = sums()
        r = rehearse(new, wl, options=RehearseOptions(duration_s=6))
        assert r.verdict == GO, [x.text for x in r.reasons]
        step = r.steps[0]
        assert step.held and step.served >= 0.95 * step.arrived
        replayed = {load.query.split()[0].upper() for load in step.statements if load.served}
        assert {"UPDATE", "INSERT", "SELECT"} <= replayed
        assert sums() == before, "every write was rolled back"
    finally:
        drop(clusters.new, name)
        drop_db(clusters.old, name)
