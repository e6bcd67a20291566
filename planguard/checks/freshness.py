"""Statistics freshness of every user table (``gather_all``, read by the ``statistics``
check family, which ``check`` and ``compare`` both run).

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

import psycopg

from planguard.checks import Finding, human_size
from planguard.config import Thresholds
from planguard.db import MARK


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


_COLUMNS = """
SELECT format('%%I.%%I', ns.nspname, c.relname), c.relkind, c.reltuples, c.relpages,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0)::bigint FROM pg_partition_tree(c.oid) p)
            ELSE pg_relation_size(c.oid) END,
       (SELECT count(*) FROM pg_attribute a
         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
       (SELECT count(DISTINCT ps.attname) FROM pg_stats ps
         WHERE ps.schemaname = ns.nspname AND ps.tablename = c.relname),
       has_table_privilege(c.oid, 'SELECT') AND (NOT c.relrowsecurity OR NOT row_security_active(c.oid)),
       s.last_analyze::text, s.last_autoanalyze::text, s.n_live_tup, s.n_mod_since_analyze
"""

# SQL condition on ``pg_class c`` / ``pg_namespace ns``: a relation of the application,
# not of the system, not temporary, not created by an extension.  Shared by the checks.
USER_RELATION = """c.relpersistence <> 't'
  AND ns.nspname NOT IN ('pg_catalog', 'information_schema') AND ns.nspname !~ '^pg_(toast|temp_)'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')"""

# Every user table, partition, partitioned parent and materialized view of the
# database; temporary tables and extension members are left out.
_ALL_SQL = MARK + _COLUMNS + """
FROM pg_class c
JOIN pg_namespace ns ON ns.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'm') AND """ + USER_RELATION + """
ORDER BY 1
"""


def gather_all(conn: psycopg.Connection) -> tuple[TableStats, ...]:
    """Catalog statistics for every user table of the connected database."""
    rows = conn.execute(_ALL_SQL, ()).fetchall()
    return tuple(TableStats(*row) for row in rows)



def is_never_analyzed(t: TableStats, server_version_num: int) -> bool:
    """The table holds data and the planner has no statistics for it at all."""
    if t.size_bytes <= 0:
        return False  # empty: nothing for the planner to misjudge
    if t.can_read_stats:
        return t.columns > 0 and t.columns_with_stats == 0
    return server_version_num >= 140000 and t.reltuples < 0


def evaluate(stats: Iterable[TableStats], thresholds: Thresholds, server_version_num: int,
             old_rows: Mapping[str, float] | None = None) -> list[Finding]:
    """Findings for tables on NEW, biggest first. ``old_rows``: reltuples on OLD by name."""
    old_rows = old_rows or {}
    findings: list[Finding] = []
    for t in sorted(stats, key=lambda s: -s.size_bytes):
        rows = old_rows.get(t.name, t.reltuples)
        rows_text = f"{rows:,.0f} rows on OLD, " if rows and rows > 0 else ""
        if is_never_analyzed(t, server_version_num):
            how = ("no column has a pg_stats row" if t.can_read_stats
                   else "reltuples = -1 (pg_stats not readable by this role: grant SELECT to check columns)")
            if t.relkind == "p":
                how += "; autovacuum never analyzes partitioned tables, only their partitions"
            findings.append(Finding(
                "never_analyzed", "blocker", t.name,
                f"{t.name} ({rows_text}{human_size(t.size_bytes)}) has never been analyzed on NEW: {how}. "
                "Without statistics the planner guesses selectivities and can choose plans and "
                "indexes production never used.",
                f"ANALYZE {t.name};",
            ))
            continue
        mod = t.n_mod_since_analyze or 0
        base = max(t.reltuples, 0.0)
        if t.columns_with_stats and mod > thresholds.stale_mod_fraction * base + 50:
            findings.append(Finding(
                "stale_stats", "warning", t.name,
                f"{t.name}: {mod:,} rows modified since its last ANALYZE "
                f"({mod / max(base, 1):.0%} of {base:,.0f}); estimates may be off.",
                f"ANALYZE {t.name};",
            ))
    return findings
