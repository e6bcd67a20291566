"""``check``: OLD's catalog against NEW's, the checklist for minutes before the switch.

The catalog reads are ``planguard.catalog`` (both clusters at once, read-only, no statement
of the workload runs); the evaluation is ``planguard.checks`` (pure).  OLD may be a workload
file captured from it: its catalog as recorded then (production's sequence values and index
usage, when OLD is now a replica or gone).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from planguard import db
from planguard.catalog.readiness import run_check
from planguard.checks.readiness import ClusterSnapshot
from planguard.checks.sequences import DEFAULT_MAX_SCAN_BYTES
from planguard.config import Thresholds
from planguard.errors import WorkloadError
from planguard.loader import load
from planguard.model import CheckResult
from planguard.progress import OnStep, Step
from planguard.verdict import decide


def recorded_old(old: str) -> ClusterSnapshot | None:
    """OLD's catalog as a workload recorded it, when ``old`` names a workload file (else None)."""
    path = Path(old)
    if not (path.suffix == ".json" and path.is_file()):
        return None
    workload = load(path)
    if not workload.catalog:
        raise WorkloadError(f"{path} holds no catalog snapshot: capture it again with this planguard")
    if len(workload.catalog) > 1:
        raise WorkloadError(f"{path} holds catalogs of {len(workload.catalog)} databases; "
                            "check them one by one with their DSNs")
    return ClusterSnapshot.from_dict(next(iter(workload.catalog.values())))


def check(old: str, new: str, *, thresholds: Thresholds | None = None, limits: db.SessionLimits | None = None,
          max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES, on_step: OnStep | None = None) -> CheckResult:
    """Read both catalogs (OLD: a DSN or a workload file) and judge NEW against OLD.

    ``on_step``: progress (``planguard.progress.Step``): the catalogs read and judged, with
    the blockers found (as regressions)."""
    thresholds = thresholds or Thresholds()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.monotonic()
    recorded = recorded_old(old)
    if on_step:
        on_step(Step(0, 1, what="reading both catalogs"))
    findings, old_snap, new_snap = run_check(old, new, thresholds=thresholds, limits=limits,
                                             max_scan_bytes=max_scan_bytes, old_snapshot=recorded)
    if on_step:
        on_step(Step(1, 1, sum(1 for f in findings if f.severity == "blocker"), "catalogs judged"))
    old_label = f"catalog recorded in {old}" if recorded is not None else db.redact_dsn(old)
    return CheckResult(tuple(findings), decide(findings), old_snap, new_snap, old_label, db.redact_dsn(new),
                       thresholds, started, time.monotonic() - t0)
