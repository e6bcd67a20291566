"""``compare``: run a workload on OLD and NEW in lockstep, then judge the difference.

Before anything runs, both clusters are checked (``planguard.preflight``) and the workload
is screened (``planguard.safety``: statements refused, writes by policy, budgets).  The I/O
is ``planguard.runner`` (both clusters step by step, run times taken in pairs, stopped
cleanly on a signal, a budget or a fault); the judgement is ``planguard.judge`` (pure), on
what the two sides recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from planguard import db, runner
from planguard.analysis import export_runs
from planguard.budget import Budget
from planguard.catalog.readiness import gather_all
from planguard.config import Thresholds
from planguard.interrupt import Stop
from planguard.judge import comparison_of
from planguard.model import Comparison
from planguard.preflight import preflight
from planguard.progress import OnStep
from planguard.recording import Recording
from planguard.safety import Policy, effective_writes, screened
from planguard.sampling import fill_values, needs_values
from planguard.shard import ran_as, select
from planguard.workload import Workload

Progress = Callable[[str], None]


def compare(old_dsn: str, new_dsn: str, workload: Workload, *, repeat: int = 5,
            thresholds: Thresholds | None = None, limits: db.SessionLimits | None = None,
            progress: Progress | None = None, generic: bool = True, redact: bool = False,
            check_results: bool = False, save_recording: Path | None = None,
            runs: Path | None = None, policy: Policy | None = None, budget: Budget | None = None,
            stop: Stop | None = None, resume: Recording | None = None,
            partial_recording: Path | None = None, on_step: OnStep | None = None,
            shard: tuple[int, int] | None = None, save_workload: Path | None = None,
            adaptive: bool = True) -> Comparison:
    """Run ``workload`` on both clusters in lockstep and return the full comparison.

    ``save_recording``: also keep what both clusters answered (every run's plan and timing,
    the catalog snapshots), which ``comparison_of`` judges again without a server;
    ``runs``: every measured run as a table (CSV, or Parquet where pyarrow is installed).
    ``policy``: writes, ``max_query_ms``, same cluster (``planguard.safety.Policy``);
    ``budget``: time and load limits (``planguard.interrupt.Budget``); ``stop``: set from
    elsewhere (a signal) to end the run early.  A run that ends early is judged as it
    stands (``Comparison.stopped``) and its recording saved to ``save_recording`` or
    ``partial_recording``, from which ``resume`` completes it later.  ``on_step``: progress
    (``planguard.progress.Step``) after each statement.

    ``shard``: (I, N), run only shard I of N (``planguard.shard.select``); only shard 1 reads
    and judges the catalog checks.  ``save_workload``: also save the whole workload with this
    run's statements as they ran (values filled, screened), which ``planguard merge`` joins.
    ``adaptive``: a parameter set stops as soon as its call is settled (False: ``repeat``
    pairs each, the fixed rule, kept for comparison: ``make bench``).
    """
    thresholds = thresholds or Thresholds()
    limits = limits or db.SessionLimits()
    policy = policy or Policy()
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    redact = redact or workload.redacted
    full, info = workload, None
    if shard is not None:
        workload, info = select(workload, *shard)
        if progress:
            progress(f"shard {info.index} of {info.count}: {len(workload.statements)} of "
                     f"{len(full.statements)} statements"
                     + ("; the catalog checks run here" if info.catalog_checks else
                        "; the catalog checks run in shard 1"))
    old_side, new_side = preflight(old_dsn, new_dsn, workload, limits,
                                   allow_same_cluster=policy.allow_same_cluster)
    replica = old_side.in_recovery or new_side.in_recovery
    if replica and progress:
        which = " and ".join(s.label.upper() for s in (old_side, new_side) if s.in_recovery)
        progress(f"{which} in recovery (a replica): writes are planned only, never executed")
    writes = effective_writes(policy.writes, replica)
    workload = screened(workload, policy, replica)
    if needs_values(workload):
        multi = len(workload.databases) > 1
        for dbname in workload.databases:
            with db.connect(db.with_dbname(old_dsn, dbname, override=multi), label="old",
                            limits=limits) as conn:
                workload = fill_values(conn, workload, database=dbname)
    rec = runner.run(old_dsn, new_dsn, workload, repeat=repeat, thresholds=thresholds, limits=limits,
                     progress=progress, generic=generic, redact=redact, check_results=check_results,
                     writes=writes, stop=stop, budget=budget, resume=resume, on_step=on_step,
                     read_catalog=gather_all if info is None or info.catalog_checks else None,
                     adaptive=adaptive)
    kept = save_recording or (partial_recording if rec.stopped else None)
    if kept is not None:
        rec.save(kept)
    if save_workload is not None:
        ran_as(full, workload).save(save_workload)
    if runs is not None:
        export_runs(rec, workload, runs)
    result = comparison_of(workload, rec, thresholds, repeat=repeat, redact=redact,
                           started_at=started.isoformat(timespec="seconds"), duration_s=time.monotonic() - t0)
    return replace(result, policy=replace(policy, writes=writes), budget=budget or Budget(),
                   recording=str(kept.resolve()) if kept is not None else None, shard=info)
