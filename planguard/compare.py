"""``compare``: run a workload on OLD and NEW in lockstep, then judge the difference.

The I/O is ``planguard.runner`` (both clusters step by step, run times taken in pairs);
the judgement is ``planguard.judge`` (pure), on what the two sides recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from planguard import db, runner
from planguard.analysis import export_runs
from planguard.config import Thresholds
from planguard.judge import comparison_of
from planguard.model import Comparison
from planguard.sampling import fill_values, needs_values
from planguard.workload import Workload

Progress = Callable[[str], None]


def compare(old_dsn: str, new_dsn: str, workload: Workload, *, repeat: int = 5,
            thresholds: Thresholds | None = None, limits: db.SessionLimits | None = None,
            progress: Progress | None = None, generic: bool = True, redact: bool = False,
            check_results: bool = False, save_recording: Path | None = None,
            runs: Path | None = None) -> Comparison:
    """Run ``workload`` on both clusters in lockstep and return the full comparison.

    ``save_recording``: also keep what both clusters answered (every run's plan and timing,
    the catalog snapshots), which ``comparison_of`` judges again without a server;
    ``runs``: every measured run as a table (CSV, or Parquet where pyarrow is installed).
    """
    thresholds = thresholds or Thresholds()
    limits = limits or db.SessionLimits()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    redact = redact or workload.redacted
    if needs_values(workload):
        multi = len(workload.databases) > 1
        for dbname in workload.databases:
            with db.connect(db.with_dbname(old_dsn, dbname, override=multi), label="old",
                            limits=limits) as conn:
                workload = fill_values(conn, workload, database=dbname)
    rec = runner.run(old_dsn, new_dsn, workload, repeat=repeat, thresholds=thresholds, limits=limits,
                     progress=progress, generic=generic, redact=redact, check_results=check_results)
    if save_recording is not None:
        rec.save(save_recording)
    if runs is not None:
        export_runs(rec, workload, runs)
    return comparison_of(workload, rec, thresholds, repeat=repeat, redact=redact,
                         started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - t0)
