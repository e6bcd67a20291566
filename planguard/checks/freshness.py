"""Statistics freshness of every user table (pure; read by
:func:`planguard.catalog.freshness.gather_tables` for the ``statistics`` check family,
which ``check`` and ``compare`` both run).

``never_analyzed`` (blocker): the table holds data but the planner has no
statistics for it (no ``pg_stats`` row for any column, or ``reltuples < 0`` on
PostgreSQL 14+).  Planner statistics are not carried by ``pg_dump``/restore or by
logical replication, so a freshly built cluster has none until ANALYZE runs; the
planner then falls back to fixed guesses (0.5 % of rows per equality, a third per
range) and can pick an index nobody ever used.  ``last_analyze`` alone is not
trusted: PostgreSQL 18's pg_upgrade carries statistics but not the timestamps.
Fix: ``ANALYZE schema.table;`` (biggest first).

``stale_stats`` (warning): rows modified since the last ANALYZE exceed
``stale_mod_fraction`` of the table.  Fix: ``ANALYZE schema.table;``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from planguard.config import Thresholds
from planguard.findings import NEVER_ANALYZED, STALE_STATS, Finding, Subject, human_size


@dataclass(frozen=True)
class TableStats:
    name: str  # schema-qualified, quoted where needed
    relkind: str
    reltuples: float
    relpages: int
    size_bytes: int
    columns: int
    columns_with_stats: int
    can_read_stats: bool
    last_analyze: str | None = None
    last_autoanalyze: str | None = None
    n_live_tup: int | None = None
    n_mod_since_analyze: int | None = None


def is_never_analyzed(t: TableStats, server_version_num: int) -> bool:
    """The table holds data and the planner has no statistics for it at all."""
    if t.size_bytes <= 0:
        return False  # empty: nothing for the planner to misjudge
    if t.can_read_stats:
        return t.columns > 0 and t.columns_with_stats == 0
    return server_version_num >= 140000 and t.reltuples < 0


def evaluate(stats: Iterable[TableStats], thresholds: Thresholds, server_version_num: int,
             old_rows: Mapping[str, float] | None = None, *, database: str | None = None) -> list[Finding]:
    """Findings for tables on NEW, biggest first. ``old_rows``: reltuples on OLD by name;
    ``database``: the database the tables are in, for the findings' subjects."""
    old_rows = old_rows or {}
    findings: list[Finding] = []
    for t in sorted(stats, key=lambda s: -s.size_bytes):
        subject = Subject("table", t.name, database=database)
        rows = old_rows.get(t.name, t.reltuples)
        rows_text = f"{rows:,.0f} rows on OLD, " if rows and rows > 0 else ""
        if is_never_analyzed(t, server_version_num):
            how = ("no column has a pg_stats row" if t.can_read_stats
                   else "reltuples = -1 (pg_stats not readable by this role: grant SELECT to check columns)")
            if t.relkind == "p":
                how += "; autovacuum never analyzes partitioned tables, only their partitions"
            findings.append(Finding(
                NEVER_ANALYZED, "blocker", t.name,
                f"{t.name} ({rows_text}{human_size(t.size_bytes)}) has never been analyzed on NEW: {how}. "
                "Without statistics the planner guesses selectivities and can choose plans and "
                "indexes production never used.",
                f"ANALYZE {t.name};",
                subject=subject,
            ))
            continue
        mod = t.n_mod_since_analyze or 0
        base = max(t.reltuples, 0.0)
        if t.columns_with_stats and mod > thresholds.stale_mod_fraction * base + 50:
            findings.append(Finding(
                STALE_STATS, "warning", t.name,
                f"{t.name}: {mod:,} rows modified since its last ANALYZE "
                f"({mod / max(base, 1):.0%} of {base:,.0f}); estimates may be off.",
                f"ANALYZE {t.name};",
                subject=subject,
            ))
    return findings
