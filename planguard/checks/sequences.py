"""Sequences behind the data, or running out of room.

Why it matters: logical replication copies rows but not sequences, and a restore
copies a sequence's value as it was at dump time.  A NEW whose sequence is behind
the rows it holds, or behind what OLD already handed out, fails every INSERT that
draws a duplicate id: the postmortem's duplicate-primary-key failure.  A sequence
near the end of its type, or wider than the column it feeds (a ``bigint`` sequence
into an ``integer`` column), stops inserts when it gets there.

Kinds:

``sequence_behind`` (blocker)
    for a sequence owned by or serving a column (serial, identity, or a
    ``nextval()`` default, found through ``pg_depend``), NEW's next value is not past
    ``max(column)`` on NEW, or not past OLD's ``last_value`` (compare once writes to
    OLD are frozen).  ``max(column)`` is read only when it is cheap: through a btree
    index on the column, or on a table smaller than ``max_scan_bytes``; otherwise a
    ``check_skipped`` finding says so.
    Fix: ``SELECT setval('schema.seq', (SELECT max(col) FROM schema.tbl));``.
``sequence_capacity`` (warning; info when only wider than its column)
    ``sequence_capacity_fraction`` of the range is used, counting up to the smaller
    of the sequence's maximum and its column type's, or the sequence is wider than
    its column.  Fix: ``ALTER TABLE ... ALTER COLUMN ... TYPE bigint;`` and
    ``ALTER SEQUENCE ... AS bigint;``.

Reading a sequence needs SELECT on it, ``max(column)`` SELECT on the table
(``pg_read_all_data`` gives both on PostgreSQL 14+); without them a
``check_skipped`` finding names the grant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import sql

from planguard.checks import Finding, human_size, listing, sql_literal
from planguard.checks.freshness import USER_RELATION
from planguard.config import Thresholds
from planguard.db import MARK

DEFAULT_MAX_SCAN_BYTES = 128 << 20  # read max(column) without an index only below this size
_CHUNK = 100  # sequences or columns read per statement

TYPE_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


@dataclass(frozen=True)
class ServedColumn:
    """A column a sequence fills, and its largest value (smallest for descending sequences)."""

    table: str  # schema-qualified, quoted
    column: str  # quoted
    column_type: str  # format_type
    how: str  # "owned" (serial / OWNED BY), "identity" or "default" (nextval() default only)
    extreme: int | None = None  # max(column), min(column) for a descending sequence; None: not read
    skipped: str | None = None  # why it was not read
    needs_privilege: bool = False  # ... because this role may not SELECT the column


@dataclass(frozen=True)
class SequenceInfo:
    name: str  # schema-qualified, quoted
    data_type: str  # smallint, integer, bigint
    start: int
    increment: int
    min_value: int
    max_value: int
    cycle: bool
    readable: bool  # this role may SELECT the sequence
    last_value: int | None  # None when not readable
    is_called: bool | None
    columns: tuple[ServedColumn, ...] = ()

    @property
    def issued(self) -> int | None:
        """The last value nextval() returned, None when none was (or it is not readable)."""
        return self.last_value if self.is_called else None

    @property
    def next_value(self) -> int | None:
        if self.last_value is None:
            return None
        return self.last_value + self.increment if self.is_called else self.last_value


@dataclass(frozen=True)
class SequenceSnapshot:
    server_version_num: int
    role: str  # current_user, quoted
    sequences: tuple[SequenceInfo, ...]


_SEQ_SQL = MARK + """
SELECT c.oid, format('%I.%I', ns.nspname, c.relname), ns.nspname, c.relname,
       format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle,
       has_sequence_privilege(c.oid, 'SELECT')
FROM pg_sequence s
JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace ns ON ns.oid = c.relnamespace
WHERE """ + USER_RELATION + """
ORDER BY 2
"""

# Columns a sequence serves: OWNED BY / serial ('a'), identity ('i'), and plain
# nextval('seq') defaults (a 'n' dependency of the column default on the sequence).
# Partitions are left out: max() over their partitioned parent covers them.
_COLUMNS_SQL = MARK + """
WITH served AS (
    SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS attnum,
           CASE d.deptype WHEN 'i' THEN 'identity' ELSE 'owned' END AS how
      FROM pg_depend d
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
    UNION
    SELECT d.refobjid, ad.adrelid, ad.adnum, 'default'
      FROM pg_attrdef ad
      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                      AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
)
SELECT s.seq, format('%I.%I', ns.nspname, c.relname), ns.nspname, c.relname,
       quote_ident(a.attname), a.attname, format_type(a.atttypid, a.atttypmod),
       (array_agg(s.how ORDER BY CASE s.how WHEN 'identity' THEN 0 WHEN 'owned' THEN 1 ELSE 2 END))[1],
       has_column_privilege(c.oid, a.attnum, 'SELECT'),
       EXISTS (SELECT FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                 JOIN pg_am am ON am.oid = ic.relam
                WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum AND i.indpred IS NULL
                  AND i.indisvalid AND am.amname = 'btree'),
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_relation_size(p.relid)), 0)::bigint FROM pg_partition_tree(c.oid) p)
            ELSE pg_relation_size(c.oid) END
FROM served s
JOIN pg_class sc ON sc.oid = s.seq AND sc.relkind = 'S'
JOIN pg_class c ON c.oid = s.rel AND c.relkind IN ('r', 'p') AND NOT c.relispartition
JOIN pg_namespace ns ON ns.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = s.rel AND a.attnum = s.attnum AND NOT a.attisdropped
WHERE """ + USER_RELATION + """
GROUP BY 1, 2, 3, 4, 5, 6, 7, 9, 10, 11
ORDER BY 1, 2, 5
"""

_INTEGER_TYPES = {"smallint", "integer", "bigint"}
T = TypeVar("T")


def _chunks(items: list[T], size: int = _CHUNK) -> list[list[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def gather(conn: psycopg.Connection, *, max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES) -> SequenceSnapshot:
    """Every sequence with its value and, where cheap and allowed, its columns' max()."""
    version = int(conn.info.server_version)
    role_row = conn.execute(MARK + "SELECT quote_ident(current_user)").fetchone()
    assert role_row is not None
    seqs = conn.execute(_SEQ_SQL).fetchall()
    values: dict[int, tuple[int, bool]] = {}
    readable = [r for r in seqs if r[10]]
    for chunk in _chunks(readable):
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::oid, last_value, is_called FROM {}").format(
                sql.Literal(r[0]), sql.Identifier(r[2], r[3]))
            for r in chunk
        )
        for oid, last, called in conn.execute(sql.SQL(MARK) + query).fetchall():
            values[oid] = (int(last), bool(called))

    increments = {r[0]: r[6] for r in seqs}
    cols = conn.execute(_COLUMNS_SQL).fetchall()
    to_read: list[tuple[int, tuple[int, str, str, str]]] = []
    served: dict[int, list[ServedColumn]] = {}
    for i, (seq, table, nsp, rel, col, attname, ctype, how, can_read, indexed, size) in enumerate(cols):
        skipped, needs = None, False
        if not can_read:
            skipped, needs = f"this role may not SELECT {table}.{col}", True
        elif ctype not in _INTEGER_TYPES and not ctype.startswith("numeric"):
            skipped = f"column type {ctype} is not an integer type"
        elif not indexed and size > max_scan_bytes:
            skipped = (f"{table}.{col} has no btree index and {table} is {human_size(size)}: "
                       "reading max() would scan the whole table")
        served.setdefault(seq, []).append(ServedColumn(table, col, ctype, how, None, skipped, needs))
        if skipped is None:
            to_read.append((i, (seq, nsp, rel, attname)))
    extremes: dict[int, int | None] = {}
    for chunk in _chunks(to_read):
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {}::int, (SELECT {}({})::text FROM {})").format(
                sql.Literal(i), sql.SQL("min" if increments.get(seq, 1) < 0 else "max"),
                sql.Identifier(attname), sql.Identifier(nsp, rel))
            for i, (seq, nsp, rel, attname) in chunk
        )
        for i, value in conn.execute(sql.SQL(MARK) + query).fetchall():
            extremes[i] = int(value) if value is not None else None
    index_of = {(row[0], row[1], row[4]): i for i, row in enumerate(cols)}
    result = []
    for r in seqs:
        oid = r[0]
        columns = tuple(
            ServedColumn(c.table, c.column, c.column_type, c.how,
                         extremes.get(index_of[(oid, c.table, c.column)]), c.skipped, c.needs_privilege)
            for c in served.get(oid, [])
        )
        last, called = values.get(oid, (None, None))
        result.append(SequenceInfo(r[1], r[4], r[5], r[6], r[7], r[8], r[9], r[10], last, called, columns))
    return SequenceSnapshot(version, role_row[0], tuple(result))


# -- evaluate (pure) -----------------------------------------------------------
def _behind(seq: SequenceInfo, old_issued: int | None) -> tuple[list[str], int | None]:
    """Why NEW's next value collides, and the value setval() must reach."""
    nxt = seq.next_value
    if nxt is None:
        return [], None
    sign = 1 if seq.increment > 0 else -1
    reasons: list[str] = []
    targets: list[int] = []
    for c in seq.columns:
        if c.extreme is not None and sign * (nxt - c.extreme) <= 0:
            reasons.append(f"{c.table}.{c.column} already holds {c.extreme:,} on NEW")
            targets.append(c.extreme)
    if old_issued is not None and sign * (nxt - old_issued) <= 0:
        reasons.append(f"OLD already handed out up to {old_issued:,}")
        targets.append(old_issued)
    if not targets:
        return [], None
    return reasons, (max(targets) if sign > 0 else min(targets))


def _setval(seq: SequenceInfo, old_issued: int | None) -> str:
    fn = "max" if seq.increment > 0 else "min"
    parts = [f"(SELECT {fn}({c.column}) FROM {c.table})" for c in seq.columns]
    if old_issued is not None:
        parts.append(str(old_issued))
    pick = "greatest" if seq.increment > 0 else "least"
    value = parts[0] if len(parts) == 1 else f"{pick}({', '.join(parts)})"
    return f"SELECT setval({sql_literal(seq.name)}, {value});"


def _old_index(old: SequenceSnapshot) -> tuple[dict[tuple[str, str], SequenceInfo], dict[str, SequenceInfo]]:
    by_col = {(c.table, c.column): s for s in old.sequences for c in s.columns}
    return by_col, {s.name: s for s in old.sequences}


def _capacity(seq: SequenceInfo, old_seq: SequenceInfo | None, th: Thresholds) -> Finding | None:
    if seq.cycle:
        return None
    col_max = [TYPE_MAX[c.column_type] for c in seq.columns if c.column_type in TYPE_MAX]
    up = seq.increment > 0
    limit = min([seq.max_value, *col_max]) if up else seq.min_value
    narrow = [c for c in seq.columns if c.column_type in TYPE_MAX
              and TYPE_MAX[c.column_type] < TYPE_MAX.get(seq.data_type, 0)]
    values = [v for v in (seq.issued, old_seq.issued if old_seq else None) if v is not None]
    used = None
    if values and up:
        span = limit - seq.min_value
        used = (max(values) - seq.min_value) / span if span > 0 else 1.0
    elif values:
        span = seq.max_value - limit
        used = (seq.max_value - min(values)) / span if span > 0 else 1.0
    near = used is not None and used >= th.sequence_capacity_fraction
    if not near and not narrow:
        return None
    parts = []
    if near:
        parts.append(f"{used:.0%} of its range up to {limit:,} is used (last value "
                     f"{(max(values) if up else min(values)):,})")
    if narrow:
        parts.append(f"it is {seq.data_type} but feeds "
                     + ", ".join(f"{c.table}.{c.column} ({c.column_type})" for c in narrow)
                     + ", so inserts fail once it passes the column's maximum")
    fixes = [f"ALTER TABLE {c.table} ALTER COLUMN {c.column} TYPE bigint;  -- rewrites the table: plan it"
             for c in (narrow or [c for c in seq.columns if c.column_type in ("smallint", "integer")])]
    if seq.data_type != "bigint":
        fixes.append(f"ALTER SEQUENCE {seq.name} AS bigint;")
    return Finding(
        "sequence_capacity", "warning" if near else "info", seq.name,
        f"sequence {seq.name}: {' and '.join(parts)}. From then on every INSERT that draws from it fails.",
        "\n".join(fixes) or f"-- {seq.name} is already bigint: plan a wider key or a new id scheme",
    )


def evaluate(old: SequenceSnapshot, new: SequenceSnapshot, thresholds: Thresholds) -> list[Finding]:
    """sequence_behind / sequence_capacity for NEW's sequences, compared with OLD's."""
    by_col, by_name = _old_index(old)
    findings: list[Finding] = []
    for seq in new.sequences:
        olds = {id(o): o for c in seq.columns if (o := by_col.get((c.table, c.column))) is not None}
        if not olds and seq.name in by_name:
            olds = {0: by_name[seq.name]}
        issued = [o.issued for o in olds.values() if o.issued is not None]
        old_issued = (max(issued) if seq.increment > 0 else min(issued)) if issued else None
        reasons, _ = _behind(seq, old_issued)
        if reasons:
            findings.append(Finding(
                "sequence_behind", "blocker", seq.name,
                f"sequence {seq.name} on NEW would next hand out {seq.next_value:,}, but "
                f"{'; '.join(reasons)}: INSERTs that draw from it fail with duplicate keys "
                "(logical replication does not copy sequences).",
                _setval(seq, old_issued),
            ))
        old_seq = next(iter(olds.values()), None)
        cap = _capacity(seq, old_seq, thresholds)
        if cap:
            findings.append(cap)
    findings += _skipped(old, new)
    return findings


def _skipped(old: SequenceSnapshot, new: SequenceSnapshot) -> list[Finding]:
    out: list[Finding] = []
    for label, snap in (("OLD", old), ("NEW", new)):
        hidden = [s.name for s in snap.sequences if not s.readable]
        no_col = [f"{c.table}.{c.column}" for s in snap.sequences for c in s.columns if c.needs_privilege]
        if hidden or (no_col and label == "NEW"):
            what = []
            if hidden:
                what.append(f"the values of {len(hidden)} sequence(s) ({listing(hidden, 5)})")
            if no_col and label == "NEW":
                what.append(f"max() of {len(no_col)} column(s) ({listing(no_col, 5)})")
            out.append(Finding(
                "check_skipped", "info", f"sequence_behind (privileges on {label})",
                f"role {snap.role} may not read {' nor '.join(what)} on {label}, so whether those "
                "sequences are behind was not checked.",
                f"GRANT pg_read_all_data TO {snap.role};  -- PostgreSQL 14+; or GRANT SELECT ON the "
                "sequences and tables",
            ))
    for s in new.sequences:
        for c in s.columns:
            if c.skipped and not c.needs_privilege:
                out.append(Finding(
                    "check_skipped", "warning", f"{s.name} ({c.table}.{c.column})",
                    f"max({c.column}) on NEW was not read: {c.skipped}; whether {s.name} is behind "
                    "the rows of that column is unknown.",
                    f"-- read it off-peak, and if the sequence is behind:\n{_setval(s, None)}",
                ))
    return out
