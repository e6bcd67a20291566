"""Planner statistics on NEW, for every table, and compared with OLD.

Why it matters: the planner chooses scans, indexes and joins from ``pg_statistic``
(per column), ``pg_statistic_ext_data`` (extended statistics) and ``reltuples``.
None of them travels with ``pg_dump``/restore or logical replication, PostgreSQL
18's pg_upgrade carries them without the ``last_analyze`` timestamps, and autovacuum
never analyzes partitioned parents.  A cluster that misses them plans on fixed
guesses, which is how the postmortem's cutover picked an index production never used.

Kinds:

``never_analyzed``
    *blocker*: a non-empty table (partitioned parents included) has no column
    statistics at all (``reltuples < 0`` on PostgreSQL 14+ when ``pg_stats`` is not
    readable): see :mod:`planguard.checks.freshness`, whose logic this reuses; a
    *warning* when OLD has none for it either (both plan it blind).
    *warning*: the table was analyzed but some statistics that PostgreSQL 18's
    ``vacuumdb --missing-stats-only`` looks for are missing: columns without a
    ``pg_stats`` row (added after the last ANALYZE), expression-index columns, or an
    inheritance parent's statistics over its children.
    Fix: ``ANALYZE schema.table;`` biggest first, or on PostgreSQL 18
    ``vacuumdb --analyze-in-stages --missing-stats-only``.
``stale_stats`` (warning)
    rows modified since the last ANALYZE exceed ``stale_mod_fraction`` of the
    table, or NEW's row estimate is ``row_estimate_ratio`` times off OLD's.
    Fix: ``ANALYZE schema.table;``.
``stats_coverage`` (warning)
    NEW's statistics say something else than OLD's: a column's distinct values
    (``ndistinct_ratio``) or NULL fraction (``null_frac_delta``) diverge, a column's
    statistics target differs, or an extended statistics object is missing or not
    built on NEW.  Fix: ``ALTER TABLE ... ALTER COLUMN ... SET STATISTICS n;``,
    ``CREATE STATISTICS ...;`` and ``ANALYZE schema.table;``.

Where this role cannot read a statistic (``pg_stats`` needs SELECT on the table,
``pg_stats_ext`` needs ownership of it), a ``check_skipped`` finding names the
privilege instead of failing.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, replace

from planguard.checks import freshness
from planguard.checks.freshness import TableStats
from planguard.config import Thresholds
from planguard.findings import (
    CHECK_SKIPPED,
    NEVER_ANALYZED,
    STALE_STATS,
    STATS_COVERAGE,
    Finding,
    Subject,
    listing,
)

_MIN_ROW_DELTA = 1000  # stale_stats: row estimates closer than this never count
_MIN_DISTINCT_DELTA = 100  # stats_coverage: distinct-value estimates closer than this never count


@dataclass(frozen=True)
class ColumnStats:
    """What ``pg_stats`` holds for one column (or one expression of an index)."""

    table: str  # schema-qualified, quoted
    column: str  # quoted; for an expression index, the index column's name
    readable: bool  # this role sees the column's pg_stats row
    has_stats: bool  # a pg_stats row at the table's own level (over the partitions for a partitioned table)
    null_frac: float | None = None
    n_distinct: float | None = None  # > 0: count; < 0: minus the fraction of rows
    stattarget: int | None = None  # per-column statistics target; None: default_statistics_target
    index: str | None = None  # expression-index column: the schema-qualified index
    expression: str | None = None  # ... and its expression
    inherited_stats: bool | None = None  # inheritance parent (not partitioned): stats over its children


@dataclass(frozen=True)
class ExtendedStats:
    """One ``CREATE STATISTICS`` object and whether ANALYZE has built it."""

    name: str  # schema-qualified, quoted
    table: str
    definition: str  # pg_get_statisticsobjdef
    stattarget: int | None  # None: the columns' targets
    readable: bool  # this role may read pg_stats_ext for it (owner or superuser)
    built: bool  # pg_statistic_ext_data has a row (only meaningful when readable)


@dataclass(frozen=True)
class StatisticsSnapshot:
    server_version_num: int
    database: str  # unquoted, for vacuumdb
    role: str  # current_user, quoted, for GRANT remediations
    tables: tuple[TableStats, ...]
    columns: tuple[ColumnStats, ...]
    extended: tuple[ExtendedStats, ...]


def _distinct(n_distinct: float, reltuples: float) -> float:
    return n_distinct if n_distinct >= 0 else -n_distinct * max(reltuples, 0.0)


def _target(t: int | None) -> str:
    return "default" if t is None else str(t)


def _by_table(columns: Iterable[ColumnStats]) -> dict[str, list[ColumnStats]]:
    out: dict[str, list[ColumnStats]] = {}
    for c in columns:
        out.setdefault(c.table, []).append(c)
    return out


def _as_on_old(f: Finding, old: TableStats | None, old_version: int) -> Finding:
    """A table with no statistics on OLD either is planned the same blind way on both: what the
    cutover changes is not that, so it warns instead of blocking."""
    if old is None or not freshness.is_never_analyzed(old, old_version):
        return f
    return replace(f, severity="warning", message=f.message.rstrip(".") + "; it has none on OLD "
                   "either, so both plan it blind: analyze it, but the cutover does not make it worse.")


def _partial(t: TableStats, cols: list[ColumnStats], old_cols: dict[tuple[str, str | None, str], ColumnStats],
             database: str) -> Finding | None:
    """never_analyzed (warning): analyzed, but missing what vacuumdb --missing-stats-only looks for."""
    missing: list[str] = []
    on_old: list[str] = []
    if any(c.inherited_stats is False and c.readable and c.stattarget != 0 for c in cols):
        missing.append("its columns over the inheritance children")
    for c in cols:
        if not c.readable or c.stattarget == 0:
            continue
        if c.index is None and not c.has_stats:
            missing.append(f"column {c.column}")
            o = old_cols.get((c.table, None, c.column))
            if o is not None and o.has_stats:
                on_old.append(c.column)
        elif c.index is not None and not c.has_stats:
            missing.append(f"expression {c.expression} of index {c.index}")
    if not missing:
        return None
    old_note = f" (OLD has statistics for {listing(on_old)})" if on_old else ""
    return Finding(
        NEVER_ANALYZED, "warning", t.name,
        f"{t.name} was analyzed on NEW, but has no statistics for {listing(missing)}{old_note}: "
        "the planner falls back to fixed selectivity guesses wherever they are used "
        "(typically a column added or an expression index created after the last ANALYZE).",
        f"ANALYZE {t.name};",
        subject=Subject("table", t.name, database=database),
    )


def _stale_rows(t: TableStats, old: TableStats | None, ratio: float) -> str | None:
    if old is None or old.reltuples < 0 or t.reltuples < 0:
        return None
    lo, hi = sorted((old.reltuples, t.reltuples))
    if hi - lo < _MIN_ROW_DELTA or hi < ratio * max(lo, 1.0):
        return None
    return (f"NEW estimates {t.reltuples:,.0f} rows where OLD estimates {old.reltuples:,.0f} "
            f"({hi / max(lo, 1.0):.1f}× apart)")


def _coverage(t: TableStats, cols: list[ColumnStats], old_t: TableStats,
              old_cols: dict[tuple[str, str | None, str], ColumnStats], th: Thresholds,
              database: str) -> Finding | None:
    diverging: list[str] = []
    targets: list[tuple[str, int | None, int | None]] = []
    for c in cols:
        if c.index is not None:
            continue
        o = old_cols.get((c.table, None, c.column))
        if o is None:
            continue
        if o.stattarget != c.stattarget:
            targets.append((c.column, o.stattarget, c.stattarget))
        if not (c.readable and o.readable and c.has_stats and o.has_stats):
            continue
        if c.n_distinct is not None and o.n_distinct is not None and t.reltuples > 0 and old_t.reltuples > 0:
            dn, do = _distinct(c.n_distinct, t.reltuples), _distinct(o.n_distinct, old_t.reltuples)
            lo, hi = sorted((dn, do))
            if hi - lo >= _MIN_DISTINCT_DELTA and hi >= th.ndistinct_ratio * max(lo, 1.0):
                diverging.append(f"{c.column}: {do:,.0f} distinct values on OLD, {dn:,.0f} on NEW")
        if c.null_frac is not None and o.null_frac is not None and \
                abs(c.null_frac - o.null_frac) > th.null_frac_delta:
            diverging.append(f"{c.column}: {o.null_frac:.0%} NULL on OLD, {c.null_frac:.0%} on NEW")
    if not diverging and not targets:
        return None
    parts = []
    if diverging:
        parts.append("its column statistics diverge from OLD's (" + "; ".join(diverging) + ")")
    if targets:
        parts.append("statistics targets differ (" + "; ".join(
            f"{col}: {_target(o)} on OLD, {_target(n)} on NEW" for col, o, n in targets) + ")")
    fixes = [f"ALTER TABLE {t.name} ALTER COLUMN {col} SET STATISTICS {-1 if o is None else o};"
             for col, o, _ in targets]
    fixes.append(f"ANALYZE {t.name};")
    if diverging:
        fixes.append("-- if the estimates still differ after ANALYZE, compare the data itself "
                     "(rows missing on NEW? a backfill not replicated?)")
    return Finding(
        STATS_COVERAGE, "warning", t.name,
        f"{t.name}: {' and '.join(parts)}; the planner's selectivity estimates on NEW will "
        "not match OLD's, so plans may change.",
        "\n".join(fixes),
        subject=Subject("table", t.name, database=database),
    )


def _extended(old: StatisticsSnapshot, new: StatisticsSnapshot, never: set[str]) -> list[Finding]:
    out: list[Finding] = []
    new_x = {x.name: x for x in new.extended}
    new_tables = {t.name: t for t in new.tables}
    for o in old.extended:
        if o.name not in new_x and o.table in new_tables:
            out.append(Finding(
                STATS_COVERAGE, "warning", o.name,
                f"extended statistics {o.name} on {o.table} exist on OLD but not on NEW: the planner "
                "loses the correlations between columns it captured and misestimates combined conditions.",
                f"{o.definition};\nANALYZE {o.table};",
                subject=Subject("statistics", o.name, database=new.database),
            ))
    for x in new.extended:
        t = new_tables.get(x.table)
        if (not x.readable or x.built or x.stattarget == 0 or t is None or t.size_bytes <= 0
                or x.table in never):
            continue
        out.append(Finding(
            STATS_COVERAGE, "warning", x.name,
            f"extended statistics {x.name} exist on NEW but have not been built (no "
            f"pg_statistic_ext_data row): the planner ignores them until {x.table} is analyzed.",
            f"ANALYZE {x.table};",
            subject=Subject("statistics", x.name, database=new.database),
        ))
    return out


def _skipped(old: StatisticsSnapshot, new: StatisticsSnapshot) -> list[Finding]:
    out: list[Finding] = []
    for label, snap in (("OLD", old), ("NEW", new)):
        hidden = sorted({c.table for c in snap.columns if not c.readable})
        if hidden:
            scope = f"column statistics on {label}"
            out.append(Finding(
                CHECK_SKIPPED, "info", f"stats_coverage ({scope})",
                f"column statistics of {len(hidden)} table(s) on {label} are not visible to role "
                f"{snap.role} ({listing(hidden, 5)}): pg_stats only shows columns the role may SELECT, "
                "and none of a table whose row-level security applies to the role, so missing or "
                "diverging column statistics there were not checked (never_analyzed falls back to "
                "reltuples on PostgreSQL 14+).",
                f"GRANT pg_read_all_data TO {snap.role};  -- PostgreSQL 14+; or GRANT SELECT ON the tables;\n"
                "-- for tables with row-level security: run as their owner or a role with BYPASSRLS",
                subject=Subject("check", "statistics", scope=scope),
            ))
        hidden_x = sorted(x.name for x in snap.extended if not x.readable)
        if hidden_x:
            scope = f"extended statistics on {label}"
            out.append(Finding(
                CHECK_SKIPPED, "info", f"stats_coverage ({scope})",
                f"whether {len(hidden_x)} extended statistics object(s) on {label} are built "
                f"({listing(hidden_x, 5)}) is not visible to role {snap.role}: pg_stats_ext only "
                "shows objects on tables the role owns.",
                "-- run the check as the tables' owner or a superuser",
                subject=Subject("check", "statistics", scope=scope),
            ))
    return out


def evaluate(old: StatisticsSnapshot, new: StatisticsSnapshot, thresholds: Thresholds) -> list[Finding]:
    """Findings about NEW's planner statistics, biggest tables first."""
    old_tables = {t.name: t for t in old.tables}
    old_rows = {name: t.reltuples for name, t in old_tables.items() if t.reltuples >= 0}
    base = freshness.evaluate(new.tables, thresholds, new.server_version_num, old_rows, database=new.database)
    never = {f.object for f in base if f.kind == NEVER_ANALYZED}
    stale = {f.object: f for f in base if f.kind == STALE_STATS}
    new_cols = _by_table(new.columns)
    old_cols = {(c.table, c.index, c.column): c for c in old.columns}

    findings: list[Finding] = [_as_on_old(f, old_tables.get(f.object), old.server_version_num)
                               for f in base if f.kind == NEVER_ANALYZED]
    coverage: list[Finding] = []
    for t in sorted(new.tables, key=lambda s: -s.size_bytes):
        if t.name in never or t.size_bytes <= 0:
            continue
        partial = _partial(t, new_cols.get(t.name, []), old_cols, new.database)
        if partial:
            findings.append(partial)
        rows_note = _stale_rows(t, old_tables.get(t.name), thresholds.row_estimate_ratio)
        if rows_note:
            prior = stale.pop(t.name, None)
            message = (prior.message.rstrip(".") + f"; {rows_note}." if prior else
                       f"{t.name}: {rows_note}; NEW's statistics describe another table than OLD's "
                       "(taken before the data was complete, or carried over from an older copy).")
            findings.append(Finding(STALE_STATS, "warning", t.name, message, f"ANALYZE {t.name};",
                                    subject=Subject("table", t.name, database=new.database)))
        elif t.name in stale:
            findings.append(stale.pop(t.name))
        old_t = old_tables.get(t.name)
        if old_t is not None and partial is None:
            cov = _coverage(t, new_cols.get(t.name, []), old_t, old_cols, thresholds, new.database)
            if cov:
                coverage.append(cov)
    findings.extend(stale.values())
    findings.extend(coverage)
    findings.extend(_extended(old, new, never))

    missing = [f for f in findings if f.kind == NEVER_ANALYZED]
    if new.server_version_num >= 180000 and len(missing) > 1:
        db = shlex.quote(new.database)
        hint = ("\n-- or every table missing statistics at once, minimal statistics first (PostgreSQL 18+):"
                f"\n-- vacuumdb --analyze-in-stages --missing-stats-only --dbname={db}")
        findings = [replace(f, remediation=f.remediation + hint) if f.kind == NEVER_ANALYZED else f
                    for f in findings]
    return findings + _skipped(old, new)
