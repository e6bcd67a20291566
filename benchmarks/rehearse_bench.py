"""The cutover rehearsal on the demo's morning: the rates NEW holds, where it stops keeping up,
what the replay itself costs, and how fast a Ctrl-C stops it.

Two throwaway clusters.  OLD is loaded with the demo's app and serves its traffic at a steady
``--rate`` statements per second (``planguard.demo.serve``) so that ``pg_stat_statements`` holds
the application's call rates; the workload is captured from it.  NEW is restored with
``pg_dump``, its big table not analyzed.  Reported, each from this one run:

- NEW as restored at 1.0x: target and achieved calls/s, the verdict and its first reason;
- the ramp on NEW as restored: the first rate it cannot hold (the saturation point);
- Ctrl-C during a rehearsal with slow calls in flight: seconds to exit, and replay sessions left;
- after ``ANALYZE``: 1.0x held, and the ramp's headroom;
- the replay's own overhead: its CPU time over the wall time (1.0 = one core) and its
  dispatch lag (p95), at 1.0x and at the highest rate tried.

    python -m benchmarks.rehearse_bench [--rows 1000000] [--rate 120] [--duration 20]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from planguard import demo
from planguard.capture import capture
from planguard.clusters import cluster_pair
from planguard.rehearsal import Rehearsal, RehearseOptions, headline
from planguard.rehearser import REPLAY_APP, rehearse
from planguard.report.rehearsal import rehearsal_dict, write

CMD = "python -m benchmarks.rehearse_bench"


def _sessions(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (REPLAY_APP,)).fetchone()
    return int(row[0]) if row else 0


def _ctrl_c(dsn: str, workload_path: Path, tmp: Path) -> tuple[float, float, int]:
    """Seconds from SIGINT to the CLI's exit, to no replay session left, and sessions left then."""
    proc = subprocess.Popen([sys.executable, "-m", "planguard.cli", "rehearse", dsn, "--workload",
                             str(workload_path), "--duration", "120", "--rate", "4", "-q",
                             "--json", str(tmp / "c.json"), "-o", str(tmp / "c.html")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while _sessions(dsn) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    exited = time.monotonic() - sent
    while _sessions(dsn) and time.monotonic() - sent < 10:
        time.sleep(0.05)
    return exited, time.monotonic() - sent, _sessions(dsn)


def _line(r: Rehearsal) -> str:
    s = r.steps[0]
    return (f"{s.achieved_rate:,.1f} of {s.target_rate:,.1f} calls/s, held: {s.held}, verdict {r.verdict}; "
            f"replay CPU {s.client_cpu:.2f} core, dispatch lag p95 {s.lag_p95_ms:.0f} ms")


def _ramp(r: Rehearsal) -> str:
    """How far a ramp held: up to its last step when it never fell behind."""
    held = "held nothing" if r.headroom is None else f"held up to {r.headroom:g}x"
    return held + (f", fell behind at {r.saturation_rate:g}x" if r.saturation_rate is not None
                   else ", every step held (the ramp's top)")


def _steps(r: Rehearsal) -> str:
    return ", ".join(f"{s.rate:g}x {s.achieved_rate:,.0f}/{s.target_rate:,.0f}" for s in r.steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=120.0, help="OLD's application traffic, statements/s")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per rehearsal step")
    ap.add_argument("--reports", default="reports", help="where the ramp's and the GO run's reports go")
    args = ap.parse_args()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory() as tmpdir, cluster_pair(new_settings={"autovacuum": "off"}) as (old, new):
        tmp = Path(tmpdir)
        os.chmod(tmp, 0o755)
        demo.load_old(old, args.rows, 200)
        with psycopg.connect(old.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")
        stop = threading.Event()
        traffic = threading.Thread(target=demo.serve, args=(old.dsn(), stop), kwargs={
            "rate": args.rate, "accounts": args.rows // 10, "connections": 4}, daemon=True)
        traffic.start()
        time.sleep(15)
        stop.set()
        traffic.join(30)
        workload = capture(old.dsn(), top=20)
        wl = tmp / "app.json"
        workload.save(wl)
        demo.restore_new(old, new, tmp)
        d = args.duration
        bad = rehearse(new.dsn(), workload, options=RehearseOptions(duration_s=d))
        bad_ramp = rehearse(new.dsn(), workload, options=RehearseOptions(duration_s=d / 2,
                                                                          ramp=(0.125, 0.25, 0.5, 1)))
        exited, gone, left = _ctrl_c(new.dsn(), wl, tmp)
        with psycopg.connect(new.dsn(), autocommit=True) as conn:
            conn.execute("ANALYZE")
        good = rehearse(new.dsn(), workload, options=RehearseOptions(duration_s=d))
        good_ramp = rehearse(new.dsn(), workload, options=RehearseOptions(
            duration_s=d / 2, ramp=(1, 2, 4, 8, 16)))
    top = good_ramp.steps[-1]
    for name, r in (("restored", bad_ramp), ("analyzed", good)):
        doc = rehearsal_dict(r, dsn="host=new (throwaway)", workload="workloads/demo-bench.json",
                             started_at=started, seconds=sum(s.duration_s for s in r.steps))
        write(doc, json_path=Path(args.reports) / f"rehearse-bench-{name}.json",
              html_path=Path(args.reports) / f"rehearse-bench-{name}.html")
    print(f"rehearse on the demo ({args.rows:,} rows; OLD served {args.rate:g} statements/s; captured "
          f"{bad.plan.total_rate:,.1f} calls/s over {len(bad.plan.targets)} statements; pool "
          f"{bad.plan.connections} connections; {d:g} s a step)")
    print(f"  NEW as restored, 1.0x:      {_line(bad)}")
    print(f"    {headline(bad)[:230]}")
    print(f"  ramp as restored:           {_ramp(bad_ramp)} ({_steps(bad_ramp)} calls/s)")
    print(f"  Ctrl-C with slow calls in flight: exited in {exited:.2f} s, no replay session left after "
          f"{gone:.2f} s ({left} left)")
    print(f"  after ANALYZE, 1.0x:        {_line(good)}")
    print(f"  ramp after ANALYZE:         {_ramp(good_ramp)} ({_steps(good_ramp)} calls/s)")
    print(f"    highest step {top.rate:g}x: replay CPU {top.client_cpu:.2f} core, dispatch lag p95 "
          f"{top.lag_p95_ms:.0f} ms, client-bound: {top.client_bound}")
    print(f"  reproduce: {CMD} --rows {args.rows} --rate {args.rate:g} --duration {d:g}")


if __name__ == "__main__":
    main()
