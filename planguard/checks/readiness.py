"""Cluster readiness: every check family, OLD against NEW (pure).

:func:`planguard.catalog.readiness.gather_all` reads one cluster's catalog into a
:class:`ClusterSnapshot` (I/O, catalog reads plus cheap index-backed ``max()`` per
sequence column); ``evaluate_all(old, new, thresholds)`` turns two snapshots into
findings (pure); :func:`planguard.catalog.readiness.run_check` does both for two
clusters at once.

Families (each module's docstring says why its kinds matter and what SQL fixes them):

- :mod:`~planguard.checks.statistics`: ``never_analyzed``, ``stale_stats``, ``stats_coverage``
- :mod:`~planguard.checks.indexes`: ``missing_index``, ``extra_index``, ``invalid_index``,
  ``unused_index``, ``duplicate_index``, ``harmful_index``
- :mod:`~planguard.checks.sequences`: ``sequence_behind``, ``sequence_capacity``
- :mod:`~planguard.checks.settings`: ``setting_diff``
- :mod:`~planguard.checks.environment`: ``extension_diff``, ``collation_version``

A family whose gather fails (a lock timeout, a missing catalog) does not stop the
others: its snapshot is ``None``, the error is recorded, and ``evaluate_all`` reports
a ``check_incomplete`` blocker, because a GO cannot rest on a check that did not run.
A check the role lacks the privilege for reports ``check_skipped`` naming the grant.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from planguard.checks import environment, indexes, sequences, settings, statistics
from planguard.checks.snapshot import from_dict
from planguard.config import Thresholds
from planguard.errors import SnapshotError
from planguard.findings import CHECK_INCOMPLETE, SEVERITIES, Finding, Subject

SNAPSHOT_FORMAT = 1
FAMILIES = ("statistics", "indexes", "sequences", "settings", "environment")


@dataclass(frozen=True)
class FamilyError:
    family: str
    message: str


@dataclass(frozen=True)
class ClusterSnapshot:
    """One cluster's catalog state, as every check family read it."""

    server_version_num: int
    server_version: str
    database: str
    statistics: statistics.StatisticsSnapshot | None
    indexes: indexes.IndexSnapshot | None
    sequences: sequences.SequenceSnapshot | None
    settings: settings.SettingsSnapshot | None
    environment: environment.EnvironmentSnapshot | None
    errors: tuple[FamilyError, ...] = ()
    format: int = SNAPSHOT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ClusterSnapshot:
        """Rebuild a snapshot from :meth:`to_dict` output (e.g. a recorded JSON file)."""
        if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise SnapshotError(f"not a planguard cluster snapshot of format {SNAPSHOT_FORMAT} "
                                f"(found format {found!r})")
        return from_dict(cls, data)


def save_snapshot(snapshot: ClusterSnapshot, path: Path) -> None:
    path.write_text(json.dumps(snapshot.to_dict(), indent=1, sort_keys=True) + "\n")


def load_snapshot(path: Path) -> ClusterSnapshot:
    """A snapshot written by :func:`save_snapshot`; SnapshotError when unreadable."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot {path} is not JSON: {exc}") from exc
    return ClusterSnapshot.from_dict(data)


def merge_findings(*groups: Iterable[Finding]) -> list[Finding]:
    """One finding per (kind, object), the most severe kept; order of first appearance.

    Use it to combine ``compare``'s freshness findings with these (both report
    ``never_analyzed``/``stale_stats`` for the same tables).
    """
    kept: dict[tuple[str, str], Finding] = {}
    for group in groups:
        for f in group:
            key = (f.kind, f.object)
            prior = kept.get(key)
            if prior is None or SEVERITIES.index(f.severity) < SEVERITIES.index(prior.severity):
                kept[key] = f
    return list(kept.values())


def evaluate_all(old: ClusterSnapshot, new: ClusterSnapshot, thresholds: Thresholds,
                 used_on_new: frozenset[str] = frozenset()) -> list[Finding]:
    """All readiness findings for NEW compared with OLD (pure).

    ``used_on_new``: names of the indexes NEW's plans for the workload use (as EXPLAIN
    prints them, bare or schema-qualified); they feed ``harmful_index``.  Subjects name
    NEW's database where they have one.
    """
    findings: list[Finding] = []
    if old.statistics and new.statistics:
        findings += statistics.evaluate(old.statistics, new.statistics, thresholds)
    if old.indexes and new.indexes:
        findings += indexes.evaluate(old.indexes, new.indexes, thresholds, used_on_new, database=new.database)
    if old.sequences and new.sequences:
        findings += sequences.evaluate(old.sequences, new.sequences, thresholds, database=new.database)
    if old.settings and new.settings:
        findings += settings.evaluate(old.settings, new.settings, thresholds, database=new.database)
    if old.environment and new.environment:
        findings += environment.evaluate(old.environment, new.environment, thresholds)
    for label, snap in (("OLD", old), ("NEW", new)):
        for err in snap.errors:
            findings.append(Finding(
                CHECK_INCOMPLETE, "blocker", f"{err.family} on {label}",
                f"could not read {err.family} on {label}: {err.message}; a GO cannot be given on a "
                "check that did not run",
                "-- run the check again (a lock held by a migration? raise --lock-timeout), "
                "or fix the error above",
                subject=Subject("check", err.family, scope=label),
            ))
    return merge_findings(findings)
