"""Sequences and the columns they serve (I/O): ``gather(conn)`` -> ``SequenceSnapshot``.

Every sequence's definition and value, the columns it fills (``pg_depend``) and, where
cheap and allowed, their ``max()``; how NEW's are judged against OLD's:
:mod:`planguard.checks.sequences`.
"""

from __future__ import annotations

from typing import TypeVar

import psycopg
from psycopg import sql

from planguard.catalog.freshness import USER_RELATION
from planguard.checks.sequences import DEFAULT_MAX_SCAN_BYTES, SequenceInfo, SequenceSnapshot, ServedColumn
from planguard.db import MARK
from planguard.findings import human_size

_CHUNK = 100  # sequences or columns read per statement

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
