"""Readiness checks at scale: gather + evaluate on two clusters of 500 tables and 2,000 indexes.

Run with ``.venv/bin/python -m benchmarks.check_bench``.  Starts OLD and NEW throwaway
clusters (PostgreSQL 15 and 18 when both exist), builds the same schema on both (each
table: a bigserial primary key, a two-column, a one-column and an expression index,
an extended statistics object on every tenth), analyzes it, and prints how long each
check family's gather takes per side, ``run_check`` (both sides at once, then
evaluate), and ``evaluate_all`` alone.  Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import psycopg

from planguard.catalog import environment, indexes, sequences, settings, statistics
from planguard.catalog.readiness import gather_all, run_check
from planguard.checks.readiness import evaluate_all
from planguard.clusters import Cluster, cluster_pair
from planguard.config import Thresholds

BUILD = """
DO $$
BEGIN
  FOR i IN 1..%(tables)s LOOP
    EXECUTE format('CREATE TABLE bench_%%s (id bigserial PRIMARY KEY, tenant int NOT NULL, '
                   'status text NOT NULL, created timestamptz NOT NULL, note text)', i);
    EXECUTE format('INSERT INTO bench_%%s (tenant, status, created, note) '
                   'SELECT g %%%% 20, (ARRAY[''new'', ''paid'', ''void''])[1 + g %%%% 3], '
                   'timestamptz ''2026-01-01'' + g * interval ''1 minute'', ''note '' || g '
                   'FROM generate_series(1, %(rows)s) g', i);
    EXECUTE format('CREATE INDEX bench_%%s_tenant_created ON bench_%%s (tenant, created)', i, i);
    EXECUTE format('CREATE INDEX bench_%%s_status ON bench_%%s (status)', i, i);
    EXECUTE format('CREATE INDEX bench_%%s_note_lower ON bench_%%s (lower(note))', i, i);
    IF i %% 10 = 0 THEN
      EXECUTE format('CREATE STATISTICS bench_%%s_st ON tenant, status FROM bench_%%s', i, i);
    END IF;
    IF i %% 50 = 0 THEN
      COMMIT;
    END IF;
  END LOOP;
END $$
"""


def build(cluster: Cluster, tables: int, rows: int) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(BUILD % {"tables": tables, "rows": rows})
        conn.execute("ANALYZE")
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best of ``repeat`` runs, in seconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tables", type=int, default=500)
    ap.add_argument("--rows", type=int, default=200, help="rows per table")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is printed)")
    args = ap.parse_args()

    with cluster_pair() as (old, new):
        print(f"OLD PostgreSQL {old.major}, NEW PostgreSQL {new.major}; "
              f"{args.tables} tables x {args.rows} rows, {args.tables * 4} indexes, "
              f"{args.tables} sequences, {args.tables // 10} extended statistics")
        for label, cluster in (("OLD", old), ("NEW", new)):
            print(f"  build {label}: {build(cluster, args.tables, args.rows):.1f} s")

        families: dict[str, Callable[[psycopg.Connection], Any]] = {
            "statistics": statistics.gather, "indexes": indexes.gather, "sequences": sequences.gather,
            "settings": settings.gather, "environment": environment.gather,
        }
        for label, cluster in (("OLD", old), ("NEW", new)):
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                parts = ", ".join(f"{name} {timed(lambda f=fn: f(conn), args.repeat)[0] * 1000:.0f} ms"
                                  for name, fn in families.items())
                total, snap = timed(lambda: gather_all(conn), args.repeat)
            errors = list(snap.errors) or "none"
            print(f"gather_all {label}: {total * 1000:.0f} ms ({parts}); errors: {errors}")

        with psycopg.connect(old.dsn(), autocommit=True) as o:
            old_snap = gather_all(o)
        with psycopg.connect(new.dsn(), autocommit=True) as n:
            new_snap = gather_all(n)
        ev, findings = timed(lambda: evaluate_all(old_snap, new_snap, Thresholds()), args.repeat)
        print(f"evaluate_all: {ev * 1000:.0f} ms, {len(findings)} findings "
              f"({', '.join(sorted({f.kind for f in findings})) or 'none'})")
        wall, _ = timed(lambda: run_check(old.dsn(), new.dsn()), args.repeat)
        print(f"run_check (connect, gather both sides at once, evaluate): {wall:.2f} s")


if __name__ == "__main__":
    main()
