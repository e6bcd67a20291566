"""Capture coverage on workloads nobody here wrote, and on our own (prints, asserts nothing).

Each workload runs on OLD with literals in the SQL (as BI tools, reports and pgbench's
``-M simple`` send them), is captured from pg_stat_statements, and is compared with NEW
restored with the same data and statistics (``pg_dump --statistics``):

- executable statements of those captured, and how many rest partly on guessed values;
- the verdict's coverage (share of OLD's captured time judged) and its statuses.

    .venv/bin/python -m benchmarks.capture_coverage [--only pgbench,demo,tpch,tpcds,reporting]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections import Counter

import psycopg

from planguard.capture import capture
from planguard.clusters import Cluster, pick_pair
from planguard.compare import compare
from planguard.demo import load_old
from tests.fixtures import tpch
from tests.fixtures.reporting import REPORTS, SCHEMA
from tests.fixtures.trust_scenarios import restore_copy


def run_literals(dsn: str, statements: list[str] | tuple[str, ...], times: int = 1) -> int:
    ran = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SET statement_timeout = '30s'")
        for _ in range(times):
            for q in statements:
                try:
                    conn.execute(q)
                    ran += 1
                except psycopg.Error:
                    pass  # a query the dialect translation got wrong: not in pg_stat_statements
    return ran


def report(name: str, old: Cluster, new: Cluster, dbname: str) -> None:
    t = time.perf_counter()
    wl = capture(old.dsn(dbname), top=200)
    took = time.perf_counter() - t
    executable = [s for s in wl.statements if not s.skip_reason]
    new_dsn = restore_copy(old, new, dbname)
    result = compare(old.dsn(dbname), new_dsn, wl, repeat=3, generic=False)
    statuses = Counter(r.status for r in result.statements)
    errors = [r.reason for r in result.statements if r.status == "error"][:3]
    assert result.coverage is not None
    print(f"{name:>10}: captured {len(wl.statements)}, {wl.summary()} "
          f"({len(executable) / max(len(wl.statements), 1):.1%}); capture {took:.1f} s; compare: "
          f"{result.verdict.decision}, {result.coverage.text()}; "
          + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
          + (f"; errors: {errors}" if errors else ""))
    for s in wl.statements:
        if s.skip_reason:
            print(f"{'':>12}not executable: {s.query[:80]!r}: {s.skip_reason}")
    for r in result.coverage.guessed_only:
        print(f"{'':>12}compared with guessed values only: {r.statement.query[:100]!r}")
    if result.verdict.decision == "NO-GO":
        print(f"{'':>12}NO-GO: {'; '.join(x[:140] for x in result.verdict.reasons[:3])}")
    for r in result.statements:
        if r.status == "error":
            print(f"{'':>12}error: {r.reason} in {r.statement.query[:200]!r} with "
                  f"{[(p.label, p.values) for p in r.param_sets][:2]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default="pgbench,demo,tpch,tpcds,reporting")
    only = set(ap.parse_args().only.split(","))
    old_install, new_install = pick_pair()
    with Cluster(old_install, name="cov-old") as old, \
            Cluster(new_install, name="cov-new", settings={"autovacuum": "off"}) as new:
        print(f"OLD PostgreSQL {old.major}, NEW PostgreSQL {new.major}")
        if "pgbench" in only:
            with psycopg.connect(old.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench")
            dsn = old.dsn("bench")
            pgbench = old.install.tool("pgbench")
            subprocess.run([pgbench, "-i", "-s", "2", "-q", dsn], check=True, capture_output=True)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
            subprocess.run([pgbench, "-M", "simple", "-b", "tpcb-like", "-b", "simple-update",
                            "-b", "select-only", "-c", "2", "-t", "500", dsn],
                           check=True, capture_output=True)
            report("pgbench", old, new, "bench")
        if "demo" in only:
            with psycopg.connect(old.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE demo")
            load_old(old, rows=200_000, iterations=600, dbname="demo")
            report("demo", old, new, "demo")
        if "tpch" in only:
            tpch.load(old, "tpch", 0.05)
            run_literals(old.dsn("tpch"), tpch.queries())
            report("TPC-H", old, new, "tpch")
        if "tpcds" in only:
            tpch.load_ds(old, "tpcds", 0.01)
            ran = run_literals(old.dsn("tpcds"), tpch.ds_queries())
            print(f"{'':>12}TPC-DS: {ran} of {len(tpch.ds_queries())} queries run on OLD "
                  "(the others do not translate to PostgreSQL)")
            report("TPC-DS", old, new, "tpcds")
        if "reporting" in only:
            with psycopg.connect(old.dsn(), autocommit=True) as conn:
                conn.execute("CREATE DATABASE reporting")
            with psycopg.connect(old.dsn("reporting"), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
                conn.execute(SCHEMA)
            run_literals(old.dsn("reporting"), REPORTS, times=3)
            report("reporting", old, new, "reporting")


if __name__ == "__main__":
    main()
