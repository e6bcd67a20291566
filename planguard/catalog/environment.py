"""Extensions and collations (I/O): ``gather(conn)`` -> ``EnvironmentSnapshot``.

Installed and available extensions, the database's collation and every collation its
columns and indexes use, with recorded and actual versions and the btree indexes that sort
by each; how they are judged: :mod:`planguard.checks.environment`.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from planguard.catalog.freshness import USER_RELATION
from planguard.checks.environment import Collation, EnvironmentSnapshot, Extension
from planguard.db import MARK

_MAX_INDEXES = 100  # indexes listed per collation

_EXT_SQL = MARK + """
SELECT e.extname, e.extversion, a.default_version
FROM pg_extension e LEFT JOIN pg_available_extensions a ON a.name = e.extname
ORDER BY 1
"""

# Index columns using each collation (100 = the database default), btree only since
# that is what amcheck verifies and what collation changes corrupt.
_INDEXES_BY_COLLATION = """
SELECT x.coll, array_agg(DISTINCT format('%%I.%%I', ins.nspname, ic.relname)) AS names
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace ins ON ins.oid = ic.relnamespace
  JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
  JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace
  CROSS JOIN LATERAL unnest(i.indcollation::oid[]) AS x(coll)
 WHERE x.coll <> 0 AND ic.relkind = 'i' AND """ + USER_RELATION + """
 GROUP BY x.coll
"""

_COLL_SQL = MARK + """
WITH idx AS (""" + _INDEXES_BY_COLLATION + """),
used AS (
    SELECT a.attcollation AS coll FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attcollation <> 0
       AND c.relkind IN ('r', 'p', 'm') AND """ + USER_RELATION + """
    UNION SELECT coll FROM idx
)
SELECT CASE WHEN cn.nspname = 'pg_catalog' THEN quote_ident(co.collname)
            ELSE format('%%I.%%I', cn.nspname, co.collname) END,
       co.collprovider::text, co.collversion, pg_collation_actual_version(co.oid),
       coalesce(idx.names[1:%s], ARRAY[]::text[]), coalesce(cardinality(idx.names), 0)
FROM used JOIN pg_collation co ON co.oid = used.coll
JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN idx ON idx.coll = co.oid
WHERE co.oid NOT IN (100, 950, 951)
ORDER BY 1
"""

_DB_SQL = MARK + """
WITH idx AS (""" + _INDEXES_BY_COLLATION + """)
SELECT quote_ident(d.datname), {provider}, {recorded}, {actual},
       coalesce((SELECT names[1:%s] FROM idx WHERE coll = 100), ARRAY[]::text[]),
       coalesce((SELECT cardinality(names) FROM idx WHERE coll = 100), 0)
FROM pg_database d WHERE d.datname = current_database()
"""


def gather(conn: psycopg.Connection) -> EnvironmentSnapshot:
    """Installed and available extensions, and the collations the database depends on."""
    version = int(conn.info.server_version)
    extensions = tuple(Extension(*r) for r in conn.execute(_EXT_SQL).fetchall())
    available = tuple(r[0] for r in conn.execute(
        MARK + "SELECT name FROM pg_available_extensions ORDER BY 1").fetchall())
    modern = version >= 150000
    db_query = sql.SQL(_DB_SQL).format(
        provider=sql.SQL("d.datlocprovider::text" if modern else "'c'"),
        recorded=sql.SQL("d.datcollversion" if modern else "NULL::text"),
        actual=sql.SQL("pg_database_collation_actual_version(d.oid)" if modern else "NULL::text"),
    )
    row = conn.execute(db_query, (_MAX_INDEXES,)).fetchone()
    assert row is not None
    db = row[0]
    database_collation = Collation("default", row[1], row[2], row[3], tuple(row[4]), row[5])
    collations = tuple(Collation(r[0], r[1], r[2], r[3], tuple(r[4]), r[5])
                       for r in conn.execute(_COLL_SQL, (_MAX_INDEXES,)).fetchall())
    return EnvironmentSnapshot(version, db, extensions, available, database_collation, collations)
