"""Planner statistics of every user table (I/O): ``gather(conn)`` -> ``StatisticsSnapshot``.

Table statistics (:func:`planguard.catalog.freshness.gather_tables`), ``pg_stats`` per column
and per expression-index column, and extended statistics; why they matter and how they are
judged: :mod:`planguard.checks.statistics`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from planguard.catalog.freshness import USER_RELATION, gather_tables
from planguard.checks.statistics import ColumnStats, ExtendedStats, StatisticsSnapshot
from planguard.db import MARK

_COLUMNS_SQL = MARK + """
SELECT format('%I.%I', ns.nspname, c.relname), quote_ident(a.attname),
       has_column_privilege(c.oid, a.attnum, 'SELECT')
         AND (NOT c.relrowsecurity OR NOT row_security_active(c.oid)),
       s.attname IS NOT NULL, s.null_frac, s.n_distinct,
       (CASE WHEN a.attstattarget < 0 THEN NULL ELSE a.attstattarget END)::int,
       NULL::text, NULL::text,
       CASE WHEN c.relhassubclass AND c.relkind <> 'p' THEN EXISTS (
            SELECT FROM pg_stats si WHERE si.schemaname = ns.nspname AND si.tablename = c.relname
               AND si.attname = a.attname AND si.inherited) END
FROM pg_class c
JOIN pg_namespace ns ON ns.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> 'v'
LEFT JOIN pg_stats s ON s.schemaname = ns.nspname AND s.tablename = c.relname AND s.attname = a.attname
                    AND s.inherited = (c.relkind = 'p')
WHERE c.relkind IN ('r', 'p', 'm') AND """ + USER_RELATION + """
UNION ALL
SELECT format('%I.%I', ns.nspname, c.relname), quote_ident(a.attname),
       has_column_privilege(i.indexrelid, a.attnum, 'SELECT'),
       s.attname IS NOT NULL, s.null_frac, s.n_distinct,
       (CASE WHEN a.attstattarget < 0 THEN NULL ELSE a.attstattarget END)::int,
       format('%I.%I', ins.nspname, ic.relname), pg_get_indexdef(i.indexrelid, a.attnum, false),
       NULL
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace ns ON ns.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace ins ON ins.oid = ic.relnamespace
JOIN pg_attribute a ON a.attrelid = i.indexrelid AND a.attnum > 0
LEFT JOIN pg_stats s ON s.schemaname = ins.nspname AND s.tablename = ic.relname AND s.attname = a.attname
                    AND NOT s.inherited
WHERE i.indkey[a.attnum - 1] = 0 AND c.relkind IN ('r', 'm') AND """ + USER_RELATION + """
ORDER BY 1, 8 NULLS FIRST, 2
"""

# stxstattarget exists from PostgreSQL 13 on (NULL = default from 17 on, -1 before).
_EXTENDED_SQL = MARK + """
SELECT format('%I.%I', sn.nspname, x.stxname), format('%I.%I', ns.nspname, c.relname),
       pg_get_statisticsobjdef(x.oid),
       {target},
       pg_has_role(c.relowner, 'USAGE') AND (NOT c.relrowsecurity OR NOT row_security_active(c.oid)),
       EXISTS (SELECT FROM pg_stats_ext e WHERE e.statistics_schemaname = sn.nspname
               AND e.statistics_name = x.stxname)
FROM pg_statistic_ext x
JOIN pg_namespace sn ON sn.oid = x.stxnamespace
JOIN pg_class c ON c.oid = x.stxrelid
JOIN pg_namespace ns ON ns.oid = c.relnamespace
WHERE """ + USER_RELATION + """
ORDER BY 1
"""


def gather(conn: psycopg.Connection) -> StatisticsSnapshot:
    """Table, column and extended statistics of every user table (catalog reads only)."""
    version = int(conn.info.server_version)
    row = conn.execute(MARK + "SELECT current_database(), quote_ident(current_user)").fetchone()
    assert row is not None
    tables = gather_tables(conn)
    columns = tuple(ColumnStats(*r) for r in conn.execute(_COLUMNS_SQL).fetchall())
    target = sql.SQL("(CASE WHEN x.stxstattarget < 0 THEN NULL ELSE x.stxstattarget END)::int"
                     if version >= 130000 else "NULL::int")
    query = sql.SQL(_EXTENDED_SQL).format(target=target)
    extended = tuple(ExtendedStats(*r) for r in conn.execute(query).fetchall())
    return StatisticsSnapshot(version, row[0], row[1], tables, columns, extended)
