"""Trust figures, measured in one run (prints, asserts nothing).

- A/A: a template copy (same data and statistics) compared with its original 10 times:
  false NO-GO verdicts, statements called regressed or unstable, runs per statement.
- Injected regressions (tests/fixtures/trust_scenarios.py): detected or not, with the
  expected cause or not, and the runs it took.

    .venv/bin/python -m benchmarks.trust
"""

from __future__ import annotations

import statistics
import time

import psycopg

from planguard.capture import capture
from planguard.clusters import Cluster, pick_pair
from planguard.compare import Comparison, compare
from tests.fixtures.trust_scenarios import PARALLEL_OFF, SCENARIOS, build_base, copy_with_fault, drop

AA_RUNS = 10


def runs_per_statement(result: Comparison) -> list[int]:
    return [m.runs for r in result.statements for p in r.param_sets for m in (p.old, p.new) if m.runs]


def main() -> None:
    _, newest = pick_pair()
    with Cluster(newest, name="trust") as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(PARALLEL_OFF)
        build_base(cluster, "base")
        dsn = cluster.dsn("base")
        wl = capture(dsn, top=20)
        print(f"PostgreSQL {cluster.major}; workload of {len(wl.statements)} statements")
        copy = copy_with_fault(cluster, "base", "aa", [])
        false_nogo = regressed = unstable = 0
        runs: list[int] = []
        t = time.perf_counter()
        for _ in range(AA_RUNS):
            result = compare(dsn, copy, wl, repeat=5)
            false_nogo += result.verdict.decision == "NO-GO"
            regressed += sum(r.status == "regressed" or r.generic_status == "regressed"
                             for r in result.statements)
            unstable += sum(r.status == "unstable" for r in result.statements)
            runs += runs_per_statement(result)
        took = time.perf_counter() - t
        drop(cluster, "aa")
        print(f"A/A x{AA_RUNS}: {false_nogo} false NO-GO, {regressed} statement calls regressed, "
              f"{unstable} unstable, over {AA_RUNS * len(wl.statements)} statement comparisons; "
              f"runs per statement and side: median {statistics.median(runs):.0f}, max {max(runs)}; "
              f"{took / AA_RUNS:.1f} s per compare")
        for name, (fault, cause) in sorted(SCENARIOS.items()):
            copy = copy_with_fault(cluster, "base", name, fault)
            result = compare(dsn, copy, wl, repeat=5)
            drop(cluster, name)
            blockers = [f for f in result.findings if f.severity == "blocker"
                        and f.kind in ("plan_regression", "generic_plan_regression")]
            right = any(cause in f.message for f in blockers)
            print(f"{name:>20}: {result.verdict.decision:5} {len(blockers)} regression blocker(s), "
                  f"cause {'named' if right else 'NOT named'}; "
                  f"runs per side max {max(runs_per_statement(result))}")


if __name__ == "__main__":
    main()
