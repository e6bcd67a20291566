"""The post-cutover watch on the demo's morning after: how soon it calls the regression, and
what it costs NEW.

Two throwaway clusters; OLD loaded with the demo's app and captured (the baseline); NEW restored
with ``pg_dump``, its big table not analyzed.  The watch starts on NEW; after its first interval
the app's traffic starts (``planguard.demo.serve``).  Reported: the seconds from the start of the
regressed traffic to ``REGRESSION`` (and to ``ROLLBACK RECOMMENDED``), then, after ``ANALYZE``,
to ``RECOVERED``; and the watch's own load per interval (its queries, their server time from
``pg_stat_statements``, the client's wait), with the plain EXPLAINs and catalog reads it made.

    python -m benchmarks.watch_bench [--interval 10] [--rows 1000000] [--rate 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from planguard import demo
from planguard.capture import capture
from planguard.clusters import cluster_pair
from planguard.interrupt import Stop
from planguard.watch import RECOVERED, REGRESSION, ROLLBACK, Interval, WatchOptions
from planguard.watcher import watch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, cluster_pair(new_settings={"autovacuum": "off"}) as (old, new):
        demo.load_old(old, args.rows, 600)
        demo.restore_new(old, new, Path(tmp))
        workload = capture(old.dsn(), top=20)
        seen: list[tuple[float, Interval]] = []
        cond = threading.Condition()
        stop = Stop()

        def emit(iv: Interval) -> None:
            with cond:
                seen.append((time.monotonic(), iv))
                cond.notify_all()

        def wait_for(pred, limit: float) -> tuple[float, Interval] | None:  # type: ignore[no-untyped-def]
            end = time.monotonic() + limit
            with cond:
                while time.monotonic() < end:
                    hit = next((x for x in seen if pred(x[1])), None)
                    if hit:
                        return hit
                    cond.wait(1)
            return None

        options = WatchOptions(interval_s=args.interval, cores=2)
        box: dict[str, object] = {}
        t = threading.Thread(target=lambda: box.update(r=watch(new.dsn(), workload, options=options, stop=stop,
                                                                 emit=emit)), daemon=True)
        t.start()
        wait_for(lambda iv: True, args.interval * 3)
        traffic_stop = threading.Event()
        traffic = threading.Thread(target=demo.serve, args=(new.dsn(), traffic_stop),
                                   kwargs={"rate": args.rate, "accounts": max(1000, args.rows // 10)}, daemon=True)
        started = time.monotonic()
        traffic.start()
        reg = wait_for(lambda iv: iv.call.verdict in (REGRESSION, ROLLBACK), args.interval * 8)
        rollback = wait_for(lambda iv: iv.call.verdict == ROLLBACK, args.interval * 4)
        with psycopg.connect(new.dsn(), autocommit=True) as conn:
            conn.execute("ANALYZE")
        fixed = time.monotonic()
        n_fixed = len(seen)
        rec = wait_for(lambda iv: iv.number > n_fixed and iv.call.verdict == RECOVERED, args.interval * 8)
        # Healthy intervals after the recovery: the watch's steady cost.
        time.sleep(args.interval * 3)
        traffic_stop.set()
        stop.request("bench done")
        t.join(60)
        traffic.join(30)
    loads = [iv.watch_load for _, iv in seen if iv.counted and iv.watch_load]
    result = box.get("r")
    print(f"watch on the demo ({args.rows:,} rows, {args.rate:g} statements/s over 4 sessions, "
          f"interval {args.interval:g} s)")
    print(f"  regressed traffic -> REGRESSION:          {reg[0] - started:6.1f} s" if reg else "  no REGRESSION")
    if reg:
        print(f"    call: {reg[1].call.summary[:200]}")
    print(f"  regressed traffic -> ROLLBACK RECOMMENDED: {rollback[0] - started:6.1f} s" if rollback else
          "  no ROLLBACK RECOMMENDED (added sessions under half the capacity of 2 cores)")
    print(f"  ANALYZE -> RECOVERED:                     {rec[0] - fixed:6.1f} s" if rec else "  no RECOVERED")
    if loads:
        print(f"  watch's own load per interval (median of {len(loads)}): "
              f"{statistics.median(x['queries'] for x in loads):.0f} queries, "
              f"{statistics.median(x['server_ms'] for x in loads):.2f} ms server time, "
              f"{statistics.median(x['client_ms'] for x in loads):.2f} ms client wait; max server time "
              f"{max(x['server_ms'] for x in loads):.2f} ms (the interval with the catalog read and EXPLAIN)")
    if result is not None:
        print(f"  plain EXPLAINs: {result.explains}, catalog reads: {result.catalog_reads}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
