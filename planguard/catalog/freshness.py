"""Table statistics of every user table (I/O): ``gather_tables(conn)`` -> ``TableStats``.

Read by the ``statistics`` family (:mod:`planguard.catalog.statistics`); the rules that
judge them are in :mod:`planguard.checks.freshness`.  ``USER_RELATION`` is the SQL
condition every family's reads share.
"""

from __future__ import annotations

import psycopg

from planguard.checks.freshness import TableStats
from planguard.db import MARK

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
# not of the system, not temporary, not created by an extension.  Shared by every family.
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


def gather_tables(conn: psycopg.Connection) -> tuple[TableStats, ...]:
    """Catalog statistics for every user table of the connected database."""
    rows = conn.execute(_ALL_SQL, ()).fetchall()
    return tuple(TableStats(*row) for row in rows)
