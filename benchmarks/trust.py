"""Trust figures, measured in one run (prints, asserts nothing).

Every cell runs twice: on the machine as it is, and with a CPU hog that keeps every core
busy (started and stopped here, bounded in time), which is what shared CI runners and
staging hosts look like.

- A/A on one cluster: a template copy (same data and statistics) compared with its original;
- cross-version A/A: the same database on PostgreSQL OLD (e.g. 15) and restored on NEW
  (e.g. 18) with its statistics (``pg_dump --statistics``);
- decision support across versions: TPC-H's 22 queries (DuckDB's generator and query set) on
  OLD and on NEW with the same data and statistics, where plans legitimately differ;
- injected faults (tests/fixtures/trust_scenarios.py): caught or not, with their cause or not.

For each: false NO-GO verdicts, statement calls regressed / slower_same_plan / unstable, runs
per statement and side (median, max), executions per side, and the compare wall time.

    .venv/bin/python -m benchmarks.trust [--compares 20] [--no-hog] [--only aa,xv,tpch,faults]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from planguard.capture import capture
from planguard.clusters import Cluster, pick_pair
from planguard.compare import compare
from planguard.model import Comparison
from planguard.safety import Policy
from planguard.workload import Workload
from tests.fixtures import tpch
from tests.fixtures.trust_scenarios import (
    SCENARIOS,
    build_base,
    copy_with_fault,
    drop,
    parallel_off,
    restore_copy,
)

HOG_MAX_S = 3600


def _spin(deadline: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (it stops clusters)
    while time.monotonic() < deadline:
        pass


@contextlib.contextmanager
def cpu_hog(enabled: bool) -> Iterator[None]:
    """One busy process per core while the block runs (at most HOG_MAX_S seconds)."""
    if not enabled:
        yield
        return
    deadline = time.monotonic() + HOG_MAX_S
    procs = [multiprocessing.Process(target=_spin, args=(deadline,), daemon=True)
             for _ in range(os.cpu_count() or 2)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()


@dataclass
class Tally:
    compares: int = 0
    nogo: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    runs: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    worst_ratio: float = 0.0
    notes: list[str] = field(default_factory=list)

    def add(self, result: Comparison, wall: float) -> None:
        self.compares += 1
        self.walls.append(wall)
        if result.verdict.decision == "NO-GO":
            self.nogo += 1
            self.notes.append("; ".join(r[:160] for r in result.verdict.reasons[:2]))
        for r in result.statements:
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            if getattr(r, "generic_status", None) == "regressed":
                self.statuses["generic regressed"] = self.statuses.get("generic regressed", 0) + 1
            for p in r.param_sets:
                for m in (p.old, p.new):
                    if m.runs:
                        self.runs.append(m.runs)
                if p.old.median_ms and p.new.median_ms and p.old.median_ms >= 1:
                    self.worst_ratio = max(self.worst_ratio, p.new.median_ms / p.old.median_ms)

    def line(self, name: str) -> str:
        st = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        runs = (f"runs/side median {statistics.median(self.runs):.0f} max {max(self.runs)}"
                if self.runs else "no runs")
        wall = f"wall median {statistics.median(self.walls):.1f} s" if self.walls else ""
        return (f"{name}: {self.nogo} false NO-GO of {self.compares}; calls: {st}; {runs}; {wall}; "
                f"worst NEW/OLD median ratio (statements >= 1 ms) {self.worst_ratio:.2f}")


def timed(old_dsn: str, new_dsn: str, workload: Workload) -> tuple[Comparison, float]:
    t = time.perf_counter()
    result = compare(old_dsn, new_dsn, workload, repeat=5, policy=Policy(allow_same_cluster=True))
    return result, time.perf_counter() - t


BUFFER_FAULTS = ("drop_index", "misleading_index", "unanalyzed")  # their blocker must cite buffers


def faults(new: Cluster, base: str, wl: Workload, rounds: int = 1) -> None:
    """Each injected fault on a copy of ``base``, compared with it ``rounds`` times: caught, its
    cause named (with buffers as the evidence, for the index and statistics faults), and no
    call left ``unstable`` short of ``max_runs`` pairs (what tests/test_trust.py asserts)."""
    for name, (fault, cause) in sorted(SCENARIOS.items()):
        caught = cited = short = 0
        runs: list[int] = []
        walls: list[float] = []
        for _ in range(rounds):
            fcopy = copy_with_fault(new, "base", name, fault)
            result, wall = timed(base, fcopy, wl)
            drop(new, name)
            walls.append(wall)
            blockers = [f for f in result.findings if f.severity == "blocker"]
            named = [f for f in blockers if cause in {c.kind for c in f.causes}]
            caught += bool(named) and result.verdict.decision == "NO-GO"
            cited += any("buffers" in f.message for f in named)
            short += sum(1 for r in result.statements for p in r.param_sets for m in (p, p.generic)
                         if m is not None and m.call.status == "unstable"
                         and m.old.runs < result.thresholds.max_runs)
            runs += [m.runs for r in result.statements for p in r.param_sets
                     for m in (p.old, p.new) if m.runs]
        evidence = f", buffers cited {cited}/{rounds}" if name in BUFFER_FAULTS else ""
        print(f"  fault {name:>22}: NO-GO with its cause named {caught}/{rounds}{evidence}; "
              f"unstable short of max_runs {short}; runs/side median {statistics.median(runs):.0f} "
              f"max {max(runs)}; wall median {statistics.median(walls):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--compares", type=int, default=20, help="compares per A/A cell")
    ap.add_argument("--tpch-compares", type=int, default=3)
    ap.add_argument("--tpch-scale", type=float, default=0.1)
    ap.add_argument("--no-hog", action="store_true", help="skip the cells with the CPU hog")
    ap.add_argument("--only", default="aa,xv,tpch,faults")
    ap.add_argument("--fault-rounds", type=int, default=1, help="compares per injected fault")
    args = ap.parse_args()
    only = set(args.only.split(","))
    old_install, new_install = pick_pair()
    hogs = (False,) if args.no_hog else (False, True)
    with Cluster(old_install, name="trust-old") as old, \
            Cluster(new_install, name="trust-new", settings={"autovacuum": "off"}) as new:
        print(f"OLD PostgreSQL {old.major}, NEW PostgreSQL {new.major}, {os.cpu_count()} cores")
        with parallel_off(new):  # both sides share its worker pool; captured as it will run
            build_base(new, "base")
            base = new.dsn("base")
            wl = capture(base, top=20)
        if "xv" in only:
            build_base(old, "xbase")
            xnew = restore_copy(old, new, "xbase")
            xwl = capture(old.dsn("xbase"), top=20)
        if "tpch" in only:
            tpch.load(old, "tpch", args.tpch_scale)
            tnew = restore_copy(old, new, "tpch")
            twl = tpch.workload("tpch")
        print(f"workloads: A/A {len(wl.statements)} statements"
              + (f", cross-version {len(xwl.statements)}" if "xv" in only else "")
              + (f", TPC-H {len(twl.statements)} at scale {args.tpch_scale}" if "tpch" in only else ""))
        for hog in hogs:
            label = "CPU hog on every core" if hog else "machine as it is"
            print(f"\n== {label}")
            # A fresh copy per cell: the faults below run INSERTs on base (OLD) only, which draw
            # its sequences (rolled back, but nextval is not transactional).
            copy = copy_with_fault(new, "base", "aa", [])
            with cpu_hog(hog):
                if "aa" in only:
                    tally = Tally()
                    with parallel_off(new):
                        for _ in range(args.compares):
                            tally.add(*timed(base, copy, wl))
                    print(tally.line(f"A/A one cluster (PG {new.major}) x{args.compares}"))
                    for n in tally.notes[:3]:
                        print(f"    NO-GO: {n}")
                if "xv" in only:
                    tally = Tally()
                    for _ in range(args.compares):
                        tally.add(*timed(old.dsn("xbase"), xnew, xwl))
                    print(tally.line(f"A/A PG {old.major} -> {new.major} x{args.compares}"))
                    for n in tally.notes[:3]:
                        print(f"    NO-GO: {n}")
                if "tpch" in only:
                    tally = Tally()
                    changed: list[int] = []
                    for _ in range(args.tpch_compares):
                        result, wall = timed(old.dsn("tpch"), tnew, twl)
                        tally.add(result, wall)
                        changed.append(sum(1 for r in result.statements for p in r.param_sets
                                           if p.old.plan_fingerprint != p.new.plan_fingerprint))
                    print(tally.line(f"TPC-H PG {old.major} -> {new.major} x{args.tpch_compares}")
                          + f"; plans that differ: {changed}")
                    for n in tally.notes[:3]:
                        print(f"    NO-GO: {n}")
                if "faults" in only:
                    with parallel_off(new):
                        faults(new, base, wl, args.fault_rounds)
        drop(new, "aa")


if __name__ == "__main__":
    main()
