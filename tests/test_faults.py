"""Faults injected on real clusters: a side killed, a session terminated, a lock held, SIGINT
and SIGTERM; then ``--resume``.  What must hold every time: the other side stops working
(its server log shows the cancel), nothing of planguard's is left on either server, the
partial result is kept, exit code 2 with one line and no traceback, and a resumed run
reaches the verdict an uninterrupted one reaches.

The pair is this module's own (it is crashed and restarted): see tests/fixtures/fault_pair.py.
benchmarks/faults.py measures on the same pair what these tests assert: time from fault to
exit, to the other side going idle, sessions left, statements resumed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from planguard.budget import Budget
from planguard.clusters import Cluster
from planguard.compare import compare
from planguard.errors import ClusterError
from planguard.model import Comparison
from planguard.params import analyze
from planguard.recording import Recording
from tests.fixtures.fault_pair import (
    KNOB,
    LONG,
    FaultPair,
    cancelled_in_log,
    fault_pair,
    log_size,
    planguard_sessions,
    sleeping_on,
    wait_until,
)

pytestmark = [pytest.mark.db, pytest.mark.slow]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultPair]:
    try:
        with fault_pair(tmp_path_factory.mktemp("faults")) as p:
            assert p.reference.verdict.decision == "NO-GO" and not p.reference.partial
            yield p
    except ClusterError as exc:
        pytest.exit(f"cannot start the fault-injection clusters: {exc}", returncode=3)


def _blockers(result: Comparison | dict) -> set[tuple[str, str]]:
    if isinstance(result, dict):
        return {(f["kind"], f["object"]) for f in result["findings"] if f["severity"] == "blocker"}
    return {(f.kind, f.object) for f in result.findings if f.severity == "blocker"}


def _none_left(cluster: Cluster) -> bool:
    """Nothing of planguard's on ``cluster``: backends end just after their client closes."""
    try:
        wait_until(lambda: not planguard_sessions(cluster), timeout=10)
    except TimeoutError:
        return False
    return True


def _active_sleeps(cluster: Cluster) -> int:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                           "AND query = 'SELECT pg_sleep(3)'").fetchone()
        return int(row[0]) if row else 0


def _resume_matches_reference(p: FaultPair, out: Path) -> dict:
    p.knob(0.01)
    res = subprocess.run(p.cmd(out, "--resume", str(out / "r.json")), capture_output=True, text=True,
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
    marks = {c: log_size(c) for c in (pair.old, pair.new)}
    victim = survivor = None
    proc = subprocess.Popen(pair.cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: sleeping_on(pair.old) and sleeping_on(pair.new))
        if fault.startswith("crash"):
            victim, survivor = (pair.new, pair.old) if fault.endswith("NEW") else (pair.old, pair.new)
            victim.crash()
        else:
            proc.send_signal(getattr(signal, fault))
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        pair.recover(proc, victim)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    (line,) = stderr.strip().splitlines()
    assert line.startswith("planguard: error:") and "partial result saved to" in line and "--resume" in line
    # The side still up was cancelled at once (its server says so), not left to finish a
    # statement for a comparison that can no longer finish; nothing of planguard's is left.
    for side in [survivor] if survivor else [pair.old, pair.new]:
        assert cancelled_in_log(side, marks[side]), f"no cancel in {side.name}'s log"
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
        wait_until(lambda: sleeping_on(pair.new), timeout=300)
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
    res = subprocess.run(pair.cmd(tmp_path, "--max-total", "1s", "--no-generic"), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "partial: the time budget (--max-total 1 s) is spent" in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"]["kind"] == "budget"
    kinds = {f["kind"]: f["severity"] for f in report["findings"]}
    assert kinds["run_stopped"] == "warning" and kinds["incomplete_coverage"] == "blocker"
    # The reviewer sees it is partial before reading the verdict's reasons.
    page = (tmp_path / "r.html").read_text()
    assert 'id="partial"' in page and "PARTIAL RESULT" in page and "--max-total 1 s" in page
    assert page.index('id="partial"') < page.index('id="coverage"')
    assert _none_left(pair.old) and _none_left(pair.new)
    # The cap on OLD's server time stops it the same way.
    res = subprocess.run(pair.cmd(tmp_path, "--max-old-server-time", "2s", "--no-generic"),
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
        wait_until(lambda: _active_sleeps(pair.old) == 3, timeout=30)
        result = compare(pair.old.dsn(), pair.new.dsn(), wl, repeat=2, generic=False,
                         budget=Budget(polite_active=1))
    finally:
        for t in threads:
            t.join()
        for c in busy:
            c.close()
    assert result.paused_s > 0 and not result.partial
    assert result.budget is not None and result.budget.polite_active == 1
