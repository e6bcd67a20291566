"""Indexes: OLD against NEW, compared by definition, not by name.

Why it matters: an index missing on NEW turns index scans into sequential scans (or
stops enforcing uniqueness); an index only NEW has, or one OLD never used, gives
NEW's planner a choice production never made (the postmortem's outage); an invalid
index (a failed ``CREATE INDEX CONCURRENTLY``, a ``_ccnew`` left by ``REINDEX
CONCURRENTLY``, a partitioned index with partitions not attached) is maintained on
every write but never used; duplicates cost writes and space for nothing.

Kinds:

``missing_index``
    an index of OLD has no index of the same definition on NEW (``pg_get_indexdef``
    with the name removed).  *blocker* when it is unique, a primary key, an
    exclusion constraint or used on OLD (``idx_scan > 0``), else *warning*.
    Fix: OLD's definition, ``CREATE INDEX CONCURRENTLY ...;``.
``extra_index`` (warning)
    a valid index on NEW with no index of the same definition on OLD.
    Fix: review, then ``DROP INDEX CONCURRENTLY schema.index;``.
``invalid_index``
    ``indisvalid`` or ``indisready`` is false on NEW.  *warning* when a valid index of
    the same definition exists next to it (a leftover), else *blocker*.
    Fix: ``DROP INDEX CONCURRENTLY`` the leftover, ``REINDEX INDEX CONCURRENTLY``, or
    for a partitioned index create and ``ATTACH`` the partitions' indexes.
``unused_index`` (info)
    ``idx_scan = 0`` on OLD since its statistics were reset; primary key, unique,
    exclusion and replica-identity indexes are left out.  Fix: review, then
    ``DROP INDEX CONCURRENTLY``.
``duplicate_index`` (warning)
    on NEW, an index with the same table, method, key columns, operator classes,
    collations, ordering, predicate and INCLUDE columns as another, or a btree
    index whose keys are a leading prefix of another's (read from ``pg_index``:
    ``indkey``, ``indclass``, ``indcollation``, ``indoption``, ``indexprs``,
    ``indpred``, ``indnkeyatts``).  Fix: ``DROP INDEX CONCURRENTLY`` the redundant one.
``harmful_index`` (warning)
    NEW's plans for the workload use an index that OLD never used (``idx_scan =
    0``) or does not have: :func:`harmful_indexes`.  Fix: ``ANALYZE`` the table; if
    NEW still prefers it, drop it (``DROP INDEX CONCURRENTLY``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from planguard.config import Thresholds
from planguard.findings import (
    DUPLICATE_INDEX,
    EXTRA_INDEX,
    HARMFUL_INDEX,
    INVALID_INDEX,
    MISSING_INDEX,
    UNUSED_INDEX,
    Finding,
    Subject,
    human_size,
    quoted_ident,
)


@dataclass(frozen=True)
class Partition:
    """A partition, by its qualified name, its quoted schema and its bare name."""

    name: str
    schema: str
    relname: str


@dataclass(frozen=True)
class IndexInfo:
    """One index as the catalog describes it."""

    name: str  # schema-qualified, quoted
    relname: str  # unquoted, as EXPLAIN prints it ("Index Name")
    bare: str  # quoted, unqualified (CREATE INDEX takes no schema)
    table: str  # schema-qualified, quoted
    relkind: str  # 'i', or 'I' for an index on a partitioned table
    method: str  # btree, hash, gin, ...
    definition: str  # pg_get_indexdef without the index name
    columns: tuple[str, ...]  # each column or expression: keys, then INCLUDE columns
    key_count: int  # indnkeyatts
    opclasses: tuple[str, ...]  # per key column
    collations: tuple[str, ...]  # per key column; "" when not collatable
    options: tuple[int, ...]  # indoption per key column (DESC, NULLS FIRST)
    predicate: str | None  # partial index condition
    unique: bool
    primary: bool
    exclusion: bool
    replica_identity: bool
    nulls_not_distinct: bool
    valid: bool
    ready: bool
    is_partition: bool  # attached to an index on the partitioned parent
    constraint: str | None  # quoted name of the constraint it backs
    constraint_def: str | None
    idx_scan: int | None  # summed over the partitions for a partitioned index
    last_idx_scan: str | None  # PostgreSQL 16+
    size_bytes: int
    unattached: tuple[Partition, ...] = ()  # partitioned index: partitions without an attached index


@dataclass(frozen=True)
class IndexSnapshot:
    server_version_num: int
    stats_reset: str | None  # pg_stat_database.stats_reset of this database
    indexes: tuple[IndexInfo, ...]


def _key(ix: IndexInfo) -> tuple[str, str]:
    return ix.table, ix.definition


def _create_sql(ix: IndexInfo) -> str:
    """Copyable SQL that creates ``ix`` (as it is on the other cluster)."""
    if ix.constraint and ix.constraint_def:
        return f"ALTER TABLE {ix.table} ADD CONSTRAINT {ix.constraint} {ix.constraint_def};"
    if ix.relkind == "I":  # CONCURRENTLY is not supported on partitioned tables
        return ix.definition.replace(" INDEX ON ONLY ", f" INDEX {ix.bare} ON ", 1) + ";"
    return ix.definition.replace(" INDEX ON ", f" INDEX CONCURRENTLY {ix.bare} ON ", 1) + ";"


def _drop_sql(ix: IndexInfo) -> str:
    if ix.constraint:
        return f"ALTER TABLE {ix.table} DROP CONSTRAINT {ix.constraint};"
    return f"DROP INDEX {'' if ix.relkind == 'I' else 'CONCURRENTLY '}{ix.name};"


def _usage(ix: IndexInfo) -> str:
    if ix.idx_scan is None:
        return "usage unknown"
    scans = f"{ix.idx_scan:,} scan{'' if ix.idx_scan == 1 else 's'}"
    return scans + (f", last {ix.last_idx_scan}" if ix.last_idx_scan else "")


def _live(ix: IndexInfo) -> bool:
    return ix.valid and ix.ready


def _missing_extra(old: IndexSnapshot, new: IndexSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    new_keys: dict[tuple[str, str], list[IndexInfo]] = {}
    for ix in new.indexes:
        new_keys.setdefault(_key(ix), []).append(ix)
    old_keys: dict[tuple[str, str], list[IndexInfo]] = {}
    for ix in old.indexes:
        if _live(ix):
            old_keys.setdefault(_key(ix), []).append(ix)
    for key, olds in sorted(old_keys.items()):
        # A partition's index follows its parent's: a valid partitioned index on NEW has them all.
        if key in new_keys or olds[0].is_partition:
            continue
        ix = olds[0]
        critical = ix.unique or ix.primary or ix.exclusion or (ix.idx_scan or 0) > 0
        why = ("NEW does not enforce the constraint it backs and loses its scans"
               if ix.unique or ix.primary or ix.exclusion else
               f"OLD used it ({_usage(ix)}): the queries it served scan differently on NEW"
               if (ix.idx_scan or 0) > 0 else "OLD never used it, so it may not be needed")
        out.append(Finding(
            MISSING_INDEX, "blocker" if critical else "warning", ix.name,
            f"index {ix.name} on {ix.table} ({human_size(ix.size_bytes)} on OLD) has no index of the "
            f"same definition on NEW: {why}.",
            _create_sql(ix),
            subject=Subject("index", ix.name, database=database),
        ))
    for key, news in sorted(new_keys.items()):
        for ix in news:
            if key in old_keys or not _live(ix) or ix.is_partition:
                continue
            out.append(Finding(
                EXTRA_INDEX, "warning", ix.name,
                f"index {ix.name} on {ix.table} exists on NEW only: the planner on NEW can choose it "
                "where OLD had no such option, and every write maintains it.",
                f"-- keep it only if it was added on purpose; otherwise:\n{_drop_sql(ix)}",
                subject=Subject("index", ix.name, database=database),
            ))
    return out


def _invalid(new: IndexSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    live = {_key(ix) for ix in new.indexes if _live(ix)}
    for ix in new.indexes:
        if _live(ix):
            continue
        state = "invalid" if not ix.valid else "not ready"
        if ix.relkind == "I":
            parts = ", ".join(p.name for p in ix.unattached) or "some partitions"
            fixes = [f"-- create the partition indexes without blocking writes, then attach them ({parts}):"]
            for p in ix.unattached:
                name = quoted_ident(f"{p.relname}_{ix.relname}"[:63])
                fixes.append(ix.definition.replace(" INDEX ON ONLY ", f" INDEX CONCURRENTLY {name} ON ", 1)
                             .replace(f" ON {ix.table} ", f" ON {p.name} ", 1) + ";")
                fixes.append(f"ALTER INDEX {ix.name} ATTACH PARTITION {p.schema}.{name};")
            out.append(Finding(
                INVALID_INDEX, "blocker", ix.name,
                f"partitioned index {ix.name} on {ix.table} is {state}: {parts} have no attached index, "
                "so the index does not cover the whole table and cannot back a constraint.",
                "\n".join(fixes),
                subject=Subject("index", ix.name, database=database),
            ))
            continue
        twin = _key(ix) in live
        if twin:
            out.append(Finding(
                INVALID_INDEX, "warning", ix.name,
                f"index {ix.name} on {ix.table} is {state} and a valid index of the same definition exists: "
                "a leftover of a failed CREATE INDEX / REINDEX CONCURRENTLY (_ccnew), maintained on every "
                "write for nothing.",
                f"DROP INDEX CONCURRENTLY {ix.name};",
                subject=Subject("index", ix.name, database=database),
            ))
        else:
            out.append(Finding(
                INVALID_INDEX, "blocker", ix.name,
                f"index {ix.name} on {ix.table} is {state} on NEW (a failed CREATE INDEX CONCURRENTLY?): "
                "the planner cannot use it"
                + (" and it may not enforce uniqueness" if ix.unique else "")
                + ", while every write still maintains it.",
                f"REINDEX INDEX CONCURRENTLY {ix.name};\n-- or, if the build fails again "
                "(duplicates?): fix the data, DROP INDEX CONCURRENTLY and create it again",
                subject=Subject("index", ix.name, database=database),
            ))
    return out


def _unused(old: IndexSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    since = f"since statistics were reset at {old.stats_reset}" if old.stats_reset else \
        "since OLD's statistics began (never reset)"
    for ix in sorted(old.indexes, key=lambda i: (-i.size_bytes, i.name)):
        if (not _live(ix) or ix.is_partition or ix.idx_scan != 0 or ix.primary or ix.unique
                or ix.exclusion or ix.replica_identity or ix.constraint):
            continue
        out.append(Finding(
            UNUSED_INDEX, "info", ix.name,
            f"index {ix.name} on {ix.table} ({human_size(ix.size_bytes)}) has not been scanned on OLD "
            f"{since}: it costs every write and its space, and can still attract a plan on NEW.",
            f"-- review (is it used by a monthly job? on a replica?), then:\n{_drop_sql(ix)}",
            subject=Subject("index", ix.name, database=database),
        ))
    return out


def _redundant_to(a: IndexInfo, b: IndexInfo) -> bool:
    """Whether ``b`` makes ``a`` redundant (``a`` is the one to drop)."""
    if a.table != b.table or a.method != b.method or a.predicate != b.predicate:
        return False
    if a.unique or a.primary or a.exclusion or a.constraint or a.replica_identity:
        # a unique index is only redundant to an identical unique index
        same = (b.unique and a.columns == b.columns and a.key_count == b.key_count
                and a.opclasses == b.opclasses and a.collations == b.collations and a.options == b.options
                and a.nulls_not_distinct == b.nulls_not_distinct and not a.exclusion and not b.exclusion)
        return same and not (a.primary or a.constraint or a.replica_identity)
    n = a.key_count
    a_keys, b_keys = a.columns[:n], b.columns[:b.key_count]
    identical = (a.columns == b.columns and n == b.key_count and a.opclasses == b.opclasses
                 and a.collations == b.collations and a.options == b.options)
    if identical:
        return True
    if a.method != "btree" or n > b.key_count:
        return False
    prefix = (a_keys == b_keys[:n] and a.opclasses == b.opclasses[:n] and a.collations == b.collations[:n]
              and a.options == b.options[:n])
    return prefix and set(a.columns[n:]) <= set(b.columns)


def _duplicates(new: IndexSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    by_table: dict[str, list[IndexInfo]] = {}
    for ix in new.indexes:
        if _live(ix) and not ix.is_partition:
            by_table.setdefault(ix.table, []).append(ix)
    for table in sorted(by_table):
        group = sorted(by_table[table], key=lambda i: i.name)
        reported: set[str] = set()
        for a in group:
            for b in group:
                if a is b or b.name in reported or not _redundant_to(a, b):
                    continue
                exact = a.columns == b.columns and a.key_count == b.key_count
                if exact and _redundant_to(b, a) and a.name < b.name and not (a.unique and not b.unique):
                    continue  # identical pair: report the later name only, once
                reported.add(a.name)
                what = "an exact duplicate of" if exact else "a leading prefix of"
                out.append(Finding(
                    DUPLICATE_INDEX, "warning", a.name,
                    f"index {a.name} on {table} ({human_size(a.size_bytes)}) is {what} {b.name}: "
                    f"{b.name} serves every query it serves, so it only costs writes and space.",
                    _drop_sql(a),
                    subject=Subject("index", a.name, database=database),
                ))
                break
    return out


def harmful_indexes(old: IndexSnapshot, new: IndexSnapshot, used_on_new: Collection[str], *,
                    database: str | None = None) -> list[Finding]:
    """``harmful_index``: indexes NEW's plans use (``used_on_new``: names from NEW's EXPLAIN,
    bare as in "Index Name" or schema-qualified) that OLD never used or does not have.
    ``database``: NEW's database, for the findings' subjects."""
    if not used_on_new:
        return []
    wanted = set(used_on_new)
    old_by_key: dict[tuple[str, str], list[IndexInfo]] = {}
    for ix in old.indexes:
        old_by_key.setdefault(_key(ix), []).append(ix)
    out: list[Finding] = []
    for ix in new.indexes:
        if not wanted & {ix.name, ix.relname, ix.bare}:
            continue
        olds = old_by_key.get(_key(ix), [])
        if olds and all(o.idx_scan == 0 for o in olds):
            why = f"OLD has it ({olds[0].name}) but never scanned it (idx_scan = 0)"
        elif not olds:
            why = "OLD has no index of this definition"
        else:
            continue
        out.append(Finding(
            HARMFUL_INDEX, "warning", ix.name,
            f"NEW's plans for the workload use index {ix.name} on {ix.table}, and {why}: "
            "production never ran these queries this way, which is how the postmortem's outage "
            "started (NEW chose an index OLD never used).",
            f"ANALYZE {ix.table};\n-- compare the plans again; if NEW still prefers it:\n{_drop_sql(ix)}",
            subject=Subject("index", ix.name, database=database),
        ))
    return out


def evaluate(old: IndexSnapshot, new: IndexSnapshot, thresholds: Thresholds,
             used_on_new: Iterable[str] = (), *, database: str | None = None) -> list[Finding]:
    """Index findings: definitions compared OLD to NEW, NEW's invalid and duplicate indexes,
    OLD's unused ones, and (given NEW's plans' indexes) the harmful ones.  ``database``:
    NEW's database, for the findings' subjects (the index snapshot does not name it)."""
    del thresholds  # no index threshold yet; kept for the uniform evaluate signature
    return (_missing_extra(old, new, database) + _invalid(new, database) + _duplicates(new, database)
            + _unused(old, database) + harmful_indexes(old, new, frozenset(used_on_new), database=database))
