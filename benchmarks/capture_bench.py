"""Capture of a 5,000-statement workload: wall time and where it goes (prints, asserts nothing).

Builds 50 tables x 10 columns, runs 5,000 structurally distinct statements once each
through the extended protocol so pg_stat_statements holds them all, then times
``capture(top=5000)``, and a profile of the same run by phase.

    .venv/bin/python -m benchmarks.capture_bench
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time

import psycopg

from planguard.capture import capture
from planguard.clusters import Cluster, pick_pair

TABLES, COLUMNS = 50, 10


def build(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for t in range(TABLES):
            cols = ", ".join(f"c{c} int NOT NULL" for c in range(COLUMNS))
            conn.execute(f"CREATE TABLE t{t} (id int PRIMARY KEY, {cols})")
            vals = ", ".join(f"(g * {c + 1}) % {10 + c * 7}" for c in range(COLUMNS))
            conn.execute(f"INSERT INTO t{t} SELECT g, {vals} FROM generate_series(1, 2000) g")
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
    n = 0
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        for t in range(TABLES):
            for a in range(COLUMNS):
                for p in range(COLUMNS):
                    conn.execute(f"SELECT id, c{a} FROM t{t} WHERE c{p} = %s", (1,))
                    n += 1
    return n


def main() -> None:
    _, newest = pick_pair()
    with Cluster(newest, name="bench", settings={"pg_stat_statements.max": "10000"}) as cluster:
        t = time.perf_counter()
        n = build(cluster.dsn())
        took = time.perf_counter() - t
        print(f"PostgreSQL {cluster.major}: {n} distinct statements executed in {took:.1f} s")
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        wl = capture(cluster.dsn(), top=5000)
        prof.disable()
        wall = time.perf_counter() - t
        runnable = sum(1 for s in wl.statements if not s.skip_reason)
        sampled = sum(1 for s in wl.statements if s.param_sets)
        print(f"capture(top=5000): {len(wl.statements)} statements ({runnable} executable, {sampled} with "
              f"sampled parameter sets) in {wall:.1f} s "
              f"({wall / max(len(wl.statements), 1) * 1000:.2f} ms per statement)")
        print(f"P5 capture of {len(wl.statements):,} entries with sampling, one connection: {wall:.1f} s "
              f"(target ≤ 60 s: {'met' if wall <= 60 and len(wl.statements) >= 5000 else 'NOT met'}); "
              "reproduce: .venv/bin/python -m benchmarks.capture_bench")
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(12)
        lines = [line for line in out.getvalue().splitlines() if "planguard" in line or "{" in line]
        print("\n".join(lines)[:3000])


if __name__ == "__main__":
    main()
