"""Fault figures, measured in one run (prints, asserts nothing; tests/test_faults.py asserts).

On the fault pair (tests/fixtures/fault_pair.py: OLD the oldest PostgreSQL found, NEW the
newest with its biggest table never analyzed), a ``planguard compare`` is started with the
knob statement sleeping, and once both servers run it, one fault is injected:

- SIGINT and SIGTERM to the compare process;
- ``pg_ctl stop -m immediate`` on NEW, then on OLD (the other side must stop working);
- ``pg_terminate_backend`` on planguard's session on NEW (it must reconnect and finish).

For each: seconds from the fault to the process's exit and to the surviving side going idle
(nothing of planguard's running or in a transaction there), planguard's sessions left on
either server 2 s after the exit, the exit code and stderr's line count; then ``--resume``:
measurements kept, parameter sets measured again, and whether its blockers equal those of an
uninterrupted run.

    .venv/bin/python -m benchmarks.faults [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from planguard.clusters import Cluster
from tests.fixtures.fault_pair import (
    LONG,
    FaultPair,
    busy_on,
    fault_pair,
    planguard_sessions,
    sleeping_on,
    wait_until,
)

FAULTS = ("SIGINT", "SIGTERM", "crash NEW", "crash OLD", "terminate NEW")


@dataclass
class Trial:
    fault: str
    exit_code: int
    stderr_lines: int
    to_exit_s: float
    to_idle_s: float | None  # the side still up (both, for a signal) has nothing of planguard's running
    left: int  # planguard sessions on either server 2 s after the exit
    kept: int | None = None
    measured_again: int | None = None
    same_blockers: bool | None = None
    resume_s: float | None = None


def _blockers(report: dict) -> set[tuple[str, str]]:
    return {(f["kind"], f["object"]) for f in report["findings"] if f["severity"] == "blocker"}


def _executions(report: dict) -> int:
    return sum(int(report["load"][side]["executions"]) for side in ("old", "new"))


def _terminate(cluster: Cluster) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE application_name = 'planguard' AND query LIKE '%pg_sleep(secs)%'")


def trial(pair: FaultPair, fault: str, out: Path, reference: set[tuple[str, str]]) -> Trial:
    pair.knob(LONG if fault != "terminate NEW" else 2.0)
    proc = subprocess.Popen(pair.cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = {"crash NEW": pair.new, "crash OLD": pair.old}.get(fault)
    survivors = [c for c in (pair.old, pair.new) if c is not victim] if fault.startswith("crash") else \
        [pair.old, pair.new]
    try:
        wait_until(lambda: sleeping_on(pair.old) and sleeping_on(pair.new), timeout=300)
        t0 = time.monotonic()
        if victim is not None:
            victim.crash()
        elif fault == "terminate NEW":
            _terminate(pair.new)
        else:
            proc.send_signal(getattr(signal, fault))
        idle_at: float | None = None
        while proc.poll() is None or idle_at is None:
            now = time.monotonic()
            if idle_at is None and not any(busy_on(c) for c in survivors):
                idle_at = now
            if now - t0 > 600:
                break
            time.sleep(0.02)
        _, stderr = proc.communicate(timeout=600)
        exited = time.monotonic() - t0  # polled: within 20 ms
        if fault == "terminate NEW":
            idle_at = None  # it reconnects and goes on: going idle is not the point
        time.sleep(2.0)
        left = sum(len(planguard_sessions(c)) for c in survivors)
    finally:
        pair.recover(proc, victim)
    t = Trial(fault, proc.returncode, len(stderr.strip().splitlines()), exited,
              None if idle_at is None else idle_at - t0, left)
    if fault == "terminate NEW":
        report = json.loads((out / "r.json").read_text())
        t.same_blockers = _blockers(report) == reference
        return t
    pair.knob(0.01)
    started = time.monotonic()
    subprocess.run(pair.cmd(out, "--resume", str(out / "r.json")), capture_output=True, text=True,
                   timeout=900)
    t.resume_s = time.monotonic() - started
    report = json.loads((out / "r.json").read_text())
    t.kept = int(report["safety"]["kept_from_resume"])
    t.measured_again = _executions(report)
    t.same_blockers = _blockers(report) == reference and report["partial"] is None
    return t


def _fmt(x: float | None, unit: str = " s") -> str:
    return "-" if x is None else f"{x:.2f}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=1, help="trials per fault")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="planguard-faults-") as tmp, fault_pair(Path(tmp)) as pair:
        reference = {(f.kind, f.object) for f in pair.reference.findings if f.severity == "blocker"}
        load = pair.reference.load
        full = (load[0].executions + load[1].executions) if load else 0
        print(f"faults: OLD PostgreSQL {pair.old.major}, NEW PostgreSQL {pair.new.major}; "
              f"{len(pair.reference.statements)} statements, an uninterrupted run executes {full} times "
              f"({pair.reference.verdict.decision}, {len(reference)} blockers)")
        trials: list[Trial] = []
        for fault in FAULTS:
            for i in range(args.rounds):
                out = Path(tmp) / f"{fault.replace(' ', '-')}-{i}"
                out.mkdir()
                t = trial(pair, fault, out, reference)
                trials.append(t)
                resumed = ("" if t.kept is None else
                           f"; resume: kept {t.kept} measurements, {t.measured_again} executions "
                           f"({t.measured_again / full:.2f} of a full run), {_fmt(t.resume_s)}")
                print(f"  {fault:14} exit {t.exit_code} ({t.stderr_lines} stderr line) after "
                      f"{_fmt(t.to_exit_s)}; other side idle after {_fmt(t.to_idle_s)}; sessions left 2 s "
                      f"later {t.left}{resumed}; blockers as uninterrupted: {t.same_blockers}")
        stopped = [t for t in trials if t.fault != "terminate NEW"]
        print(f"faults summary: fault → exit median {statistics.median(t.to_exit_s for t in stopped):.2f} s "
              f"(max {max(t.to_exit_s for t in stopped):.2f}); other side idle max "
              f"{max(t.to_idle_s or 0 for t in stopped):.2f} s; sessions left {sum(t.left for t in trials)}; "
              f"resumed runs with the uninterrupted blockers {sum(bool(t.same_blockers) for t in stopped)}"
              f"/{len(stopped)}")


if __name__ == "__main__":
    main()
