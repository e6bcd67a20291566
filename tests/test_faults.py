"""Faults injected on real clusters: a side killed, a session terminated, a lock held, SIGINT
and SIGTERM; then ``--resume``.  What must hold every time: the other side stops working
(its server log shows the cancel), nothing of planguard's is left on either server, the
partial result is kept, exit code 2 with one line and no traceback, and a resumed run
reaches the verdict an uninterrupted one reaches.

The pair is this module's own (it is crashed and restarted): OLD the oldest PostgreSQL
found, NEW the newest, NEW restored with its biggest table never analyzed (a regression to
find).  A one-row ``knob`` table sets how long the ``pg_sleep(secs)`` statement in the
workload runs: long while a fault is injected, short when the run resumes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from planguard.budget import Budget
from planguard.capture import capture
from planguard.clusters import Cluster, pick_pair
from planguard.compare import compare
from planguard.demo import load_old, restore_new
from planguard.errors import ClusterError
from planguard.model import Comparison
from planguard.params import analyze
from planguard.recording import Recording
from planguard.workload import Statement

pytestmark = [pytest.mark.db, pytest.mark.slow]

KNOB = "SELECT pg_sleep(secs) FROM knob"
LONG = 60.0  # seconds the knob statement sleeps while a fault is injected


@dataclass
class FaultPair:
    old: Cluster
    new: Cluster
    workload: Path
    reference: Comparison  # the uninterrupted comparison, knob short

    def knob(self, secs: float) -> None:
        for c in (self.old, self.new):
            with psycopg.connect(c.dsn(), autocommit=True) as conn:
                conn.execute("UPDATE knob SET secs = %s", (secs,))


def _knob_statement(dbname: str) -> Statement:
    shape = analyze(KNOB)
    return Statement(fingerprint=shape.fingerprint, query=KNOB, kind="select", calls=10, total_ms=10.0,
                     mean_ms=1.0, tables=("public.knob",), database=dbname)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultPair]:
    work = tmp_path_factory.mktemp("faults")
    try:
        old_install, new_install = pick_pair()
        old = Cluster(old_install, name="fault-old").start()
        new = Cluster(new_install, name="fault-new", settings={"autovacuum": "off"}).start()
    except ClusterError as exc:
        pytest.exit(f"cannot start the fault-injection clusters: {exc}", returncode=3)
    try:
        load_old(old, 30_000, 120)
        restore_new(old, new, work)
        wl = capture(old.dsn(), top=20)
        for c in (old, new):  # after the capture: its own statements are not the workload's
            with psycopg.connect(c.dsn(), autocommit=True) as conn:
                conn.execute("CREATE TABLE knob (secs float8 NOT NULL); INSERT INTO knob VALUES (0.01); "
                             "ANALYZE knob")
        # The knob statement second: a fault in it leaves statements measured before it and
        # statements not reached after it.
        wl = replace(wl, statements=(wl.statements[0], _knob_statement("postgres"), *wl.statements[1:]))
        path = work / "faults.json"
        wl.save(path)
        reference = compare(old.dsn(), new.dsn(), wl, repeat=5)
        assert reference.verdict.decision == "NO-GO" and not reference.partial
        yield FaultPair(old, new, path, reference)
    finally:
        new.stop()
        old.stop()


def _blockers(result: Comparison | dict) -> set[tuple[str, str]]:
    if isinstance(result, dict):
        return {(f["kind"], f["object"]) for f in result["findings"] if f["severity"] == "blocker"}
    return {(f.kind, f.object) for f in result.findings if f.severity == "blocker"}


def _planguard_sessions(cluster: Cluster) -> list[tuple[str, str]]:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            "SELECT state, query FROM pg_stat_activity WHERE application_name = 'planguard'").fetchall()]


def _none_left(cluster: Cluster) -> bool:
    """Nothing of planguard's on ``cluster``: backends end just after their client closes."""
    for _ in range(50):
        if not _planguard_sessions(cluster):
            return True
        time.sleep(0.2)
    return False


def _sleeping_on(cluster: Cluster) -> bool:
    return any(state == "active" and "pg_sleep(secs)" in q for state, q in _planguard_sessions(cluster))


def _active_sleeps(cluster: Cluster) -> int:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                           "AND query = 'SELECT pg_sleep(3)'").fetchone()
        return int(row[0]) if row else 0


def _wait_until(cond: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.1)


def _cmd(p: FaultPair, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "planguard.cli", "compare", p.old.dsn(), p.new.dsn(), "-w", str(p.workload),
            "-o", str(out / "r.html"), "--json", str(out / "r.json"), "--statement-timeout", "300000",
            "-q", *extra]


def _cancelled_in_log(cluster: Cluster, since: int) -> bool:
    return "canceling statement due to user request" in cluster.logfile.read_text(errors="replace")[since:]


def _log_size(cluster: Cluster) -> int:
    return len(cluster.logfile.read_text(errors="replace"))


def _resync_sequences(old: Cluster, new: Cluster) -> None:
    """Crash recovery moves OLD's sequences on by up to 32 values (what it had logged ahead of
    use), past what NEW holds: planguard reports it (sequence_behind); the next tests want the
    pair as it was, so NEW takes OLD's values, as a DBA would before a cutover."""
    with psycopg.connect(old.dsn(), autocommit=True) as o, psycopg.connect(new.dsn(), autocommit=True) as n:
        for schema, name, value in o.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences "
                                             "WHERE last_value IS NOT NULL").fetchall():
            n.execute("SELECT setval(quote_ident(%s) || '.' || quote_ident(%s), %s)", (schema, name, value))


def _resume_matches_reference(p: FaultPair, out: Path) -> dict:
    p.knob(0.01)
    res = subprocess.run(_cmd(p, out, "--resume", str(out / "r.json")), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 1, res.stderr
    report = json.loads((out / "r.json").read_text())
    assert report["partial"] is None and report["verdict"] == p.reference.verdict.decision
    assert _blockers(report) == _blockers(p.reference)
    assert report["safety"]["kept_from_resume"] >= 1  # the statement before the knob was kept
    return report


@pytest.mark.parametrize("fault", ["crash NEW", "crash OLD", "SIGINT", "SIGTERM"])
def test_a_fault_mid_run_stops_both_sides_keeps_the_result_and_resumes(pair: FaultPair, tmp_path: Path,
                                                                      fault: str) -> None:
    pair.knob(LONG)
    marks = {c: _log_size(c) for c in (pair.old, pair.new)}
    proc = subprocess.Popen(_cmd(pair, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until(lambda: _sleeping_on(pair.old) and _sleeping_on(pair.new))
        victim = survivor = None
        if fault.startswith("crash"):
            victim, survivor = (pair.new, pair.old) if fault.endswith("NEW") else (pair.old, pair.new)
            victim.crash()
        else:
            proc.send_signal(getattr(signal, fault))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if victim is not None:
            victim.restart()
            if victim is pair.old:
                _resync_sequences(pair.old, pair.new)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    (line,) = stderr.strip().splitlines()
    assert line.startswith("planguard: error:") and "partial result saved to" in line and "--resume" in line
    # The side still up was cancelled at once (its server says so), not left to finish a
    # statement for a comparison that can no longer finish; nothing of planguard's is left.
    for side in [survivor] if survivor else [pair.old, pair.new]:
        assert _cancelled_in_log(side, marks[side]), f"no cancel in {side.name}'s log"
        assert _none_left(side)
    report = json.loads((tmp_path / "r.json").read_text())
    part = report["partial"]
    assert part["kind"] == ("fault" if victim else "interrupted")
    assert [x["statement"].split(":")[-1] for x in part["in_flight"]] == [analyze(KNOB).fingerprint]
    statuses = [s["status"] for s in report["statements"]]
    assert statuses[0] != "skipped" and statuses[1] == "error" and part["not_reached"] == len(statuses) - 2
    assert report["verdict"] == "NO-GO"
    assert "run_stopped" in {f["kind"] for f in report["findings"] if f["severity"] == "blocker"}
    assert Path(report["recording"]).is_file() and (tmp_path / "r.html").is_file()
    _resume_matches_reference(pair, tmp_path)


def test_a_terminated_session_is_opened_again_and_the_run_finishes(pair: FaultPair) -> None:
    from planguard.loader import load

    pair.knob(2.0)
    wl = load(pair.workload)
    terminated: list[int] = []

    def terminate_once() -> None:
        _wait_until(lambda: _sleeping_on(pair.new), timeout=300)
        with psycopg.connect(pair.new.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE application_name = 'planguard' AND query LIKE '%pg_sleep(secs)%'").fetchone()
            terminated.append(int(row[0]) if row else 0)

    watcher = threading.Thread(target=terminate_once)
    watcher.start()
    result = compare(pair.old.dsn(), pair.new.dsn(), wl, repeat=2, generic=False)
    watcher.join()
    assert terminated == [1]
    assert not result.partial and result.retries >= 1
    assert result.load is not None and result.load[1].reconnects == 1 and result.load[0].reconnects == 0
    knob = next(r for r in result.statements if r.statement.query == KNOB)
    assert knob.status not in ("error", "skipped"), knob.reason
    assert _none_left(pair.new) and _none_left(pair.old)


def test_a_lock_held_marks_the_statement_and_the_run_goes_on_then_resume_measures_it(
        pair: FaultPair, tmp_path: Path) -> None:
    from planguard.loader import load

    pair.knob(0.01)
    wl = load(pair.workload)
    holder = psycopg.connect(pair.new.dsn())
    holder.execute("LOCK TABLE knob IN ACCESS EXCLUSIVE MODE")
    saved = tmp_path / "rec.json"
    try:
        held = compare(pair.old.dsn(), pair.new.dsn(), wl, repeat=3, save_recording=saved)
    finally:
        holder.rollback()
        holder.close()
    knob = next(r for r in held.statements if r.statement.query == KNOB)
    assert knob.status == "error" and "not measured on NEW" in knob.reason and "lock_timeout" in knob.reason
    # The run went on past it: every statement after it ran as in the uninterrupted run.
    assert [r.status in ("error", "skipped") for r in held.statements[2:]] == \
        [r.status in ("error", "skipped") for r in pair.reference.statements[2:]]
    assert "not_measured" in {f.kind for f in held.findings}
    resumed = compare(pair.old.dsn(), pair.new.dsn(), wl, repeat=3, resume=Recording.load(saved))
    knob = next(r for r in resumed.statements if r.statement.query == KNOB)
    assert knob.status not in ("error", "skipped"), knob.reason
    assert resumed.kept >= len(held.statements) - 1
    assert _blockers(resumed) == _blockers(pair.reference)


def test_a_budget_spent_gives_a_partial_result_judged_as_it_stands(pair: FaultPair, tmp_path: Path) -> None:
    pair.knob(1.0)
    res = subprocess.run(_cmd(pair, tmp_path, "--max-total", "1s", "--no-generic"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "partial: the time budget (--max-total 1 s) is spent" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"]["kind"] == "budget"
    kinds = {f["kind"]: f["severity"] for f in report["findings"]}
    assert kinds["run_stopped"] == "warning" and kinds["incomplete_coverage"] == "blocker"
    assert _none_left(pair.old) and _none_left(pair.new)
    # The cap on OLD's server time stops it the same way.
    res = subprocess.run(_cmd(pair, tmp_path, "--max-old-server-time", "2s", "--no-generic"),
                         capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"]["kind"] == "budget" and "--max-old-server-time" in report["partial"]["reason"]
    assert report["load"]["old"]["server_ms"] >= 2000


def test_polite_mode_waits_while_old_is_busy(pair: FaultPair) -> None:
    from planguard.loader import load

    pair.knob(0.01)
    wl = load(pair.workload)
    busy = [psycopg.connect(pair.old.dsn(), autocommit=True) for _ in range(3)]
    threads = [threading.Thread(target=c.execute, args=("SELECT pg_sleep(3)",)) for c in busy]
    for t in threads:
        t.start()
    try:
        _wait_until(lambda: _active_sleeps(pair.old) == 3, timeout=30)
        result = compare(pair.old.dsn(), pair.new.dsn(), wl, repeat=2, generic=False,
                         budget=Budget(polite_active=1))
    finally:
        for t in threads:
            t.join()
        for c in busy:
            c.close()
    assert result.paused_s > 0 and not result.partial
    assert result.budget is not None and result.budget.polite_active == 1
