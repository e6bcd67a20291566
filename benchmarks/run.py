"""``make bench``: where planguard's time goes, measured in one run on this machine.

Prints figures, asserts nothing (machines here are noisy; compare ratios from one run):
- the demo scenario at 1M rows: load, restore, capture, compare (as restored and after
  ANALYZE), and compare's wall time against the time the statements themselves took
  (planguard's overhead) and against running the two sides one after the other
  (what the concurrency buys);
- the pure code on the recorded real plans: parse + fingerprint + diff per second.
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import tempfile
import time
from pathlib import Path

import psycopg

from planguard.capture import capture
from planguard.clusters import cluster_pair
from planguard.compare import compare
from planguard.demo import load_old, restore_new
from planguard.diff import diff_plans
from planguard.plan import parse_plan, shape_fingerprint
from planguard.report.json import to_dict
from planguard.verify import verify

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "plans"


def pure_throughput(seconds: float = 2.0) -> tuple[float, int]:
    raws = [json.loads(Path(f).read_text())["explain"] for f in sorted(glob.glob(str(FIXTURES / "*.json")))]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        plans = [parse_plan(r) for r in raws]
        for a, b in itertools.pairwise(plans):
            shape_fingerprint(a)
            diff_plans(a, b)
        n += len(raws)
    return n / (time.perf_counter() - t0), len(raws)


def server_seconds(result, side: str) -> float:  # type: ignore[no-untyped-def]
    """Server time (planning + execution) of every statement execution on one side, warm-ups,
    generic plans and confirmation rounds included, as the comparison recorded it."""
    assert result.load is not None
    return (result.load[0] if side == "old" else result.load[1]).server_ms / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rate, n = pure_throughput()
    print(f"pure: parse+fingerprint+diff {rate:,.0f} plans/s over {n} recorded plans")
    with cluster_pair(new_settings={"autovacuum": "off"}) as (old, new), tempfile.TemporaryDirectory() as tmp:
        print(f"clusters: OLD PostgreSQL {old.major}, NEW PostgreSQL {new.major}")
        t = time.perf_counter()
        load_old(old, args.rows, 600)
        print(f"load OLD ({args.rows:,} rows + 600 app statements): {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        restore_new(old, new, Path(tmp))
        print(f"pg_dump | pg_restore to NEW: {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        wl = capture(old.dsn(), top=20)
        print(f"capture: {time.perf_counter() - t:.2f} s for {len(wl.statements)} statements")
        for label in ("as restored", "after ANALYZE"):
            if label == "after ANALYZE":
                with psycopg.connect(new.dsn(), autocommit=True) as conn:
                    conn.execute("ANALYZE")
            t = time.perf_counter()
            both = compare(old.dsn(), new.dsn(), wl, repeat=args.repeat)
            wall = time.perf_counter() - t
            o, n = server_seconds(both, "old"), server_seconds(both, "new")
            print(f"compare {label}: {both.verdict.decision}; wall {wall:.2f} s; server time of the "
                  f"statements OLD {o:.2f} s + NEW {n:.2f} s ({both.load[0].executions} + "
                  f"{both.load[1].executions} executions); "
                  f"wall / (OLD + NEW) = {wall / max(o + n, 1e-9):.2f} "
                  f"(< 1: the sides ran at once); wall / slower side = {wall / max(o, n, 1e-9):.2f} "
                  f"(planguard's overhead factor, catalog reads and pairing included)")
            if label == "as restored":
                t = time.perf_counter()
                verified = verify(to_dict(both), new.dsn(), old.dsn(), repeat=args.repeat)
                took = time.perf_counter() - t
                outcomes = [f"{f['kind']}: {f['verification']['outcome']}" for f in verified["findings"]
                            if f["verification"]]
                print(f"verify fixes (on NEW, rolled back): {took:.2f} s = {took / wall:.2f} of the compare; "
                      f"{'; '.join(outcomes)}; NEW's catalog unchanged: "
                      f"{verified['verification']['catalog_unchanged']}")

if __name__ == "__main__":
    main()
