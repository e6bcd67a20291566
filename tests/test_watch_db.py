"""``planguard watch`` on real clusters: the postmortem's morning after, replayed.

OLD serves the demo's payments app and is captured (the baseline); NEW is restored from it
with ``pg_dump`` and its big table is not analyzed.  The demo's traffic generator
(``planguard.demo.serve``) then runs the application's statements against NEW while the
watch reads NEW's ``pg_stat_statements``.  Assertions are on calls, states, named causes and
events, never on durations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from planguard import demo
from planguard.capture import capture
from planguard.interrupt import Stop
from planguard.watch import OK, RECOVERED, REGRESSION, ROLLBACK, Interval, WatchOptions
from planguard.watcher import WatchResult, watch
from planguard.workload import Workload
from tests.conftest import Pair, create_db, drop_db

pytestmark = [pytest.mark.db, pytest.mark.slow]

ROWS = 200_000
ACCOUNTS = ROWS // 10
ALARMS = (REGRESSION, ROLLBACK)


@pytest.fixture(scope="module")
def baseline(clusters: Pair, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Workload]]:
    """OLD loaded with the demo's app and its traffic, and the workload captured from it."""
    name = "watch_old"
    create_db(clusters.old, name)
    demo.load_old(clusters.old, ROWS, 600, dbname=name)
    workload = capture(clusters.old.dsn(name), top=20)
    assert all(s.plan for s in workload.statements), "capture records OLD's plan of every statement"
    yield name, workload
    drop_db(clusters.old, name)


def restored(clusters: Pair, tmp_path: Path, name: str, *, analyze: bool) -> str:
    """NEW restored from OLD's database ``watch_old`` into ``name``: big table not analyzed."""
    create_db(clusters.new, name)
    old = clusters.old
    # restore_new reads OLD's database of the same name: dump watch_old under the new name.
    demo.restore_new(_Renamed(old, "watch_old"), _Renamed(clusters.new, name), tmp_path, dbname=name)
    if analyze:
        with psycopg.connect(clusters.new.dsn(name), autocommit=True) as conn:
            conn.execute("ANALYZE")
    return clusters.new.dsn(name)


class _Renamed:
    """A cluster whose ``dsn(x)`` is always one database: to restore OLD's into another name."""

    def __init__(self, cluster: Any, dbname: str) -> None:
        self.cluster, self.dbname, self.install = cluster, dbname, cluster.install

    def dsn(self, _dbname: str = "") -> str:
        return self.cluster.dsn(self.dbname)


class Watching:
    """The watch in a thread, every interval collected; traffic that can be started later."""

    def __init__(self, dsn: str, workload: Workload, options: WatchOptions, **kw: Any) -> None:
        self.dsn = dsn
        self.intervals: list[Interval] = []
        self.seen = threading.Condition()
        self.stop = Stop()
        self.traffic_stop = threading.Event()
        self.traffic: threading.Thread | None = None
        self.result: WatchResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = watch(dsn, workload, options=options, stop=self.stop, emit=self._emit, **kw)
            except BaseException as exc:  # pragma: no cover - surfaced by the test
                self.error = exc
            with self.seen:
                self.seen.notify_all()

        self.thread = threading.Thread(target=run, daemon=True)

    def _emit(self, iv: Interval) -> None:
        with self.seen:
            self.intervals.append(iv)
            self.seen.notify_all()

    def __enter__(self) -> Watching:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.traffic_stop.set()
        self.stop.request("test done")
        self.thread.join(60)
        if self.traffic is not None:
            self.traffic.join(30)

    def start_traffic(self, rate: float = 30.0, connections: int = 4) -> int:
        """Start the app's traffic; the number of the interval it starts in."""
        self.traffic = threading.Thread(target=demo.serve, args=(self.dsn, self.traffic_stop), kwargs={
            "rate": rate, "accounts": ACCOUNTS, "connections": connections}, daemon=True)
        self.traffic.start()
        return len(self.intervals) + 1

    def until(self, predicate: Any, intervals: int) -> Interval | None:
        """Wait for an interval that satisfies ``predicate``, for at most ``intervals`` more."""
        limit = len(self.intervals) + intervals
        with self.seen:
            while True:
                hit = next((iv for iv in self.intervals if predicate(iv)), None)
                if hit is not None or len(self.intervals) >= limit or not self.thread.is_alive():
                    assert self.error is None, self.error
                    return hit
                self.seen.wait(30)


def test_unanalyzed_table_is_a_regression_then_recovers_after_analyze(
        clusters: Pair, baseline: tuple[str, Workload], tmp_path: Path) -> None:
    dsn = restored(clusters, tmp_path, "watch_new_regress", analyze=False)
    try:
        with Watching(dsn, baseline[1], WatchOptions(interval_s=2, cores=2)) as w:
            assert w.until(lambda iv: True, 3) is not None  # a first, quiet interval
            first = w.start_traffic()
            hit = w.until(lambda iv: iv.call.verdict in ALARMS, 6)
            assert hit is not None, [iv.call.verdict for iv in w.intervals]
            # Confirmed within two intervals of the regressed traffic: the one it started in and
            # the next (the first of the two may hold a partial interval's traffic).
            assert hit.number <= first + 2, (first, hit.number)
            top = hit.rows[0]
            assert top.state == "regressed" and top.short_id in hit.call.summary
            assert "FROM transactions WHERE tenant_id = $1 AND status = $2" in top.query
            assert top.share > 0.5 and (top.ratio or 0) > 20
            assert "public.transactions" in hit.call.summary
            assert "never been analyzed" in hit.call.summary
            assert hit.call.fixes[0] == "ANALYZE public.transactions;"
            kinds = [c.kind for c in top.causes]
            assert kinds[0] == "never_analyzed" and "harmful_index" in kinds, kinds
            assert top.plan_note and "transactions_status_tenant_idx" in top.plan_note
            assert hit.watch_load is not None and hit.watch_load["queries"] >= 3

            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ANALYZE public.transactions")
            fixed_at = len(w.intervals)
            recovered = w.until(lambda iv: iv.number > fixed_at and iv.call.verdict == RECOVERED, 8)
            assert recovered is not None, [iv.call.verdict for iv in w.intervals]
            row = next(r for r in recovered.rows if r.key == top.key)
            assert row.state == "ok" and (row.ratio or 99) < 10
        assert w.result is not None and w.result.explains == 1  # one plain EXPLAIN for one statement
    finally:
        drop_db(clusters.new, "watch_new_regress")


def test_a_reset_a_new_statement_and_a_restart_raise_no_alarm(
        clusters: Pair, baseline: tuple[str, Workload], tmp_path: Path) -> None:
    dsn = restored(clusters, tmp_path, "watch_new_faults", analyze=True)
    extra = threading.Event()

    def unknown_statement() -> None:  # a statement the baseline never saw
        while not extra.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
                    while not extra.is_set():
                        conn.execute("SELECT count(*) FROM tenants WHERE plan = %s", ("free",))
                        extra.wait(0.1)
            except psycopg.OperationalError:
                extra.wait(0.5)

    t = threading.Thread(target=unknown_statement, daemon=True)
    t.start()
    try:
        with Watching(dsn, baseline[1], WatchOptions(interval_s=2, cores=2)) as w:
            w.start_traffic(rate=20)
            new_seen = w.until(lambda iv: any(r.state == "new" and "FROM tenants WHERE plan" in r.query
                                              for r in iv.rows), 5)
            assert new_seen is not None
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
            assert w.until(lambda iv: any("was reset" in e for e in iv.events), 3) is not None
            clusters.new.restart()
            assert w.until(lambda iv: any("lost the connection" in e for e in iv.events), 4) is not None
            back = w.until(lambda iv: any("reconnected to NEW" in e for e in iv.events), 6)
            assert back is not None and any("restarted" in e for e in back.events)
            after = w.until(lambda iv: iv.number > back.number + 1 and iv.counted, 4)
            assert after is not None and after.rows, "counting resumes after the reconnect"
        assert w.result is not None and w.result.reconnects >= 1
        assert [iv.number for iv in w.intervals if iv.call.verdict in ALARMS] == []
    finally:
        extra.set()
        t.join(10)
        drop_db(clusters.new, "watch_new_faults")


def test_a_healthy_new_under_steady_traffic_for_five_minutes_raises_no_alarm(
        clusters: Pair, baseline: tuple[str, Workload], tmp_path: Path) -> None:
    dsn = restored(clusters, tmp_path, "watch_new_aa", analyze=True)
    try:
        with Watching(dsn, baseline[1], WatchOptions(interval_s=10, cores=2), duration_s=300) as w:
            w.start_traffic(rate=25)
            w.thread.join(400)
        assert w.error is None and w.result is not None
        counted = [iv for iv in w.intervals if iv.counted]
        assert len(counted) >= 25
        alarms = [(iv.number, iv.call.summary) for iv in w.intervals if iv.call.verdict != OK]
        assert alarms == []
        bad = {r.short_id for iv in counted for r in iv.rows if r.state in ("regressed", "slower")}
        assert bad == set()
        assert sum(iv.statements_seen for iv in counted) > 0
    finally:
        drop_db(clusters.new, "watch_new_aa")


def test_the_command_exits_1_on_a_confirmed_regression_and_writes_its_files(
        clusters: Pair, baseline: tuple[str, Workload], tmp_path: Path) -> None:
    dsn = restored(clusters, tmp_path, "watch_new_cli", analyze=False)
    path = tmp_path / "app.json"
    baseline[1].save(path)
    stop = threading.Event()
    traffic = threading.Thread(target=demo.serve, args=(dsn, stop),
                               kwargs={"rate": 30, "accounts": ACCOUNTS}, daemon=True)
    traffic.start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "planguard.cli", "watch", dsn, "--baseline", str(path), "--interval", "2s",
             "--duration", "60s", "--exit-on-regression", "--cores", "2", "--json-lines",
             str(tmp_path / "w.jsonl"), "--prometheus", str(tmp_path / "w.prom"), "-o", str(tmp_path / "w.html")],
            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    finally:
        stop.set()
        traffic.join(30)
        drop_db(clusters.new, "watch_new_cli")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    lines = [json.loads(x) for x in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "start" and lines[-1]["type"] == "end"
    assert lines[-1]["stopped"] == "a confirmed regression (--exit-on-regression)"
    last = [x for x in lines if x["type"] == "interval"][-1]
    assert last["verdict"] in ALARMS and last["fixes"][0] == "ANALYZE public.transactions;"
    assert last["statements"][0]["state"] == "regressed"
    metrics = {m.name: m for m in text_string_to_metric_families((tmp_path / "w.prom").read_text())}
    verdict = {s.labels["verdict"]: s.value for s in metrics["planguard_watch_verdict"].samples}
    assert verdict[last["verdict"]] == 1.0 and sum(verdict.values()) == 1.0
    ratios = [s for s in metrics["planguard_watch_latency_ratio"].samples if s.labels["state"] == "regressed"]
    assert ratios and ratios[0].value > 20
    html = (tmp_path / "w.html").read_text()
    assert last["verdict"] in html and "ANALYZE public.transactions;" in html and "<script" not in html


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = subprocess.run([sys.executable, "-m", "planguard.cli", "watch", "host=/nonexistent", "--baseline",
                              str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    workload = Path(__file__).parent / "fixtures" / "recordings" / "demo_as_restored.workload.json"
    unreachable = subprocess.run([sys.executable, "-m", "planguard.cli", "watch",
                                  "host=127.0.0.1 port=1 connect_timeout=2", "--baseline", str(workload),
                                  "-o", str(tmp_path / "w.html")], capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 2 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.startswith("planguard: error: cannot connect to new cluster")
    assert len(unreachable.stderr.strip().splitlines()) == 1
    bad_interval = subprocess.run([sys.executable, "-m", "planguard.cli", "watch", "x", "--baseline", "y",
                                   "--interval", "0"], capture_output=True, text=True, timeout=60)
    assert bad_interval.returncode == 2 and len(bad_interval.stderr.strip().splitlines()) == 1
