"""Indexes of every user table (I/O): ``gather(conn)`` -> ``IndexSnapshot``.

Each index's catalog definition (``pg_index``, ``pg_get_indexdef`` without its name), the
constraint it backs, its usage and size; how OLD's and NEW's are compared:
:mod:`planguard.checks.indexes`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from planguard.catalog.freshness import USER_RELATION
from planguard.checks.indexes import IndexInfo, IndexSnapshot, Partition
from planguard.db import MARK

_SQL = MARK + """
SELECT format('%I.%I', ins.nspname, ic.relname), ic.relname, quote_ident(ic.relname),
       format('%I.%I', ns.nspname, c.relname), ic.relkind, am.amname,
       replace(pg_get_indexdef(i.indexrelid), ' INDEX ' || quote_ident(ic.relname) || ' ON ', ' INDEX ON '),
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, false) FROM generate_series(1, i.indnatts) k ORDER BY k),
       i.indnkeyatts,
       ARRAY(SELECT CASE WHEN opn.nspname = 'pg_catalog' THEN quote_ident(opc.opcname)
                         ELSE format('%I.%I', opn.nspname, opc.opcname) END
               FROM unnest(i.indclass::oid[]) WITH ORDINALITY AS x(oid, n)
               JOIN pg_opclass opc ON opc.oid = x.oid JOIN pg_namespace opn ON opn.oid = opc.opcnamespace
              ORDER BY x.n),
       ARRAY(SELECT coalesce((SELECT CASE WHEN cn.nspname = 'pg_catalog' THEN quote_ident(co.collname)
                                          ELSE format('%I.%I', cn.nspname, co.collname) END
                                FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
                               WHERE co.oid = x.oid), '')
               FROM unnest(i.indcollation::oid[]) WITH ORDINALITY AS x(oid, n) ORDER BY x.n),
       ARRAY(SELECT x.o::int FROM unnest(i.indoption::int2[]) WITH ORDINALITY AS x(o, n) ORDER BY x.n),
       pg_get_expr(i.indpred, i.indrelid),
       i.indisunique, i.indisprimary, i.indisexclusion, i.indisreplident, {nulls_not_distinct},
       i.indisvalid, i.indisready, ic.relispartition,
       quote_ident(con.conname), pg_get_constraintdef(con.oid),
       CASE WHEN ic.relkind = 'I'
            THEN (SELECT sum(pg_stat_get_numscans(pt.relid))::bigint FROM pg_partition_tree(ic.oid) pt
                   WHERE pt.isleaf)
            ELSE pg_stat_get_numscans(ic.oid) END,
       {last_scan},
       CASE WHEN ic.relkind = 'I'
            THEN (SELECT coalesce(sum(pg_relation_size(pt.relid)), 0)::bigint
                    FROM pg_partition_tree(ic.oid) pt)
            ELSE pg_relation_size(ic.oid) END,
       CASE WHEN ic.relkind = 'I' AND NOT i.indisvalid THEN ARRAY(
            SELECT ARRAY[format('%I.%I', pn.nspname, pc.relname), quote_ident(pn.nspname), pc.relname]
              FROM pg_inherits h JOIN pg_class pc ON pc.oid = h.inhrelid
              JOIN pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE h.inhparent = i.indrelid
               AND NOT EXISTS (SELECT FROM pg_inherits hi JOIN pg_index pi ON pi.indexrelid = hi.inhrelid
                                WHERE hi.inhparent = i.indexrelid AND pi.indrelid = h.inhrelid)
             ORDER BY 1) ELSE ARRAY[]::text[] END
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_namespace ins ON ins.oid = ic.relnamespace
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace ns ON ns.oid = c.relnamespace
JOIN pg_am am ON am.oid = ic.relam
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                           AND con.contype IN ('p', 'u', 'x')
WHERE c.relkind IN ('r', 'p', 'm') AND """ + USER_RELATION + """
ORDER BY 1
"""


def gather(conn: psycopg.Connection) -> IndexSnapshot:
    """Every index on a user table, with its catalog definition, usage and size."""
    version = int(conn.info.server_version)
    query = sql.SQL(_SQL).format(
        nulls_not_distinct=sql.SQL("i.indnullsnotdistinct" if version >= 150000 else "false"),
        last_scan=sql.SQL("pg_stat_get_lastscan(ic.oid)::text" if version >= 160000 else "NULL::text"),
    )
    rows = conn.execute(query).fetchall()
    reset = conn.execute(MARK + "SELECT stats_reset::text FROM pg_stat_database "
                                "WHERE datname = current_database()").fetchone()
    return IndexSnapshot(version, reset[0] if reset else None, tuple(_index(r) for r in rows))


def _index(r: tuple[Any, ...]) -> IndexInfo:
    (name, relname, bare, table, relkind, method, definition, columns, key_count, opclasses, collations,
     options, predicate, unique, primary, exclusion, replident, nnd, valid, ready, is_partition,
     constraint, constraint_def, idx_scan, last_scan, size, unattached) = r
    return IndexInfo(
        name, relname, bare, table, relkind, method, definition, tuple(columns), key_count,
        tuple(opclasses), tuple(collations), tuple(options), predicate, unique, primary, exclusion,
        replident, nnd, valid, ready, is_partition, constraint, constraint_def, idx_scan, last_scan,
        int(size or 0), tuple(Partition(*p) for p in unattached),
    )
