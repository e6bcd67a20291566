"""Planner settings, overrides and table options (I/O): ``gather(conn)`` -> ``SettingsSnapshot``.

``pg_settings`` (the planner's and autovacuum's, :data:`planguard.checks.settings.EXTRA_SETTINGS`
included), the ``ALTER DATABASE/ROLE ... SET`` that apply to the connected database, and
every user table's storage parameters; how OLD's and NEW's are compared:
:mod:`planguard.checks.settings`.
"""

from __future__ import annotations

import psycopg

from planguard.catalog.freshness import USER_RELATION
from planguard.checks.settings import EXTRA_SETTINGS, Override, RelOption, Setting, SettingsSnapshot
from planguard.db import MARK

# Where a value comes from the database, the role or this session, pg_settings does
# not show the cluster's value.
_SESSION_SOURCES = ("database", "user", "database user", "client", "session")

_SETTINGS_SQL = MARK + """
SELECT name, setting, unit, boot_val, source, context FROM pg_settings
WHERE category LIKE 'Query Tuning%%' OR name = ANY(%s)
ORDER BY name
"""

_OVERRIDES_SQL = MARK + """
SELECT CASE WHEN s.setrole = 0 THEN 'database'
            WHEN s.setdatabase = 0 THEN 'role' ELSE 'role in database' END,
       CASE WHEN s.setrole = 0 THEN NULL ELSE quote_ident(r.rolname) END,
       split_part(cfg, '=', 1), substr(cfg, strpos(cfg, '=') + 1)
FROM pg_db_role_setting s
LEFT JOIN pg_roles r ON r.oid = s.setrole
CROSS JOIN LATERAL unnest(s.setconfig) AS cfg
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
ORDER BY 1, 2, 3
"""

_TABLES_SQL = MARK + """
SELECT format('%I.%I', ns.nspname, c.relname)
FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND """ + USER_RELATION + """
ORDER BY 1
"""

_RELOPTIONS_SQL = MARK + """
WITH rel AS (
    SELECT c.oid, c.reltoastrelid, c.reloptions, format('%I.%I', ns.nspname, c.relname) AS name
      FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'm') AND """ + USER_RELATION + """
)
SELECT rel.name, 'table', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)
  FROM rel CROSS JOIN LATERAL unnest(rel.reloptions) AS o
UNION ALL
SELECT rel.name, 'toast', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)
  FROM rel JOIN pg_class t ON t.oid = rel.reltoastrelid CROSS JOIN LATERAL unnest(t.reloptions) AS o
UNION ALL
SELECT rel.name, quote_ident(a.attname), split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)
  FROM rel JOIN pg_attribute a ON a.attrelid = rel.oid AND a.attnum > 0 AND NOT a.attisdropped
  CROSS JOIN LATERAL unnest(a.attoptions) AS o
ORDER BY 1, 2, 3
"""


def gather(conn: psycopg.Connection) -> SettingsSnapshot:
    """Planner settings, the overrides that apply to this database, and table options."""
    version = int(conn.info.server_version)
    db_row = conn.execute(MARK + "SELECT quote_ident(current_database())").fetchone()
    assert db_row is not None
    rows = conn.execute(_SETTINGS_SQL, (list(EXTRA_SETTINGS),)).fetchall()
    settings = tuple(Setting(*r) for r in rows if r[4] not in _SESSION_SOURCES)
    planner = {r[0].lower() for r in rows} | set(EXTRA_SETTINGS)
    overrides = tuple(Override(*r) for r in conn.execute(_OVERRIDES_SQL).fetchall()
                      if r[2].lower() in planner)
    tables = tuple(r[0] for r in conn.execute(_TABLES_SQL).fetchall())
    reloptions = tuple(RelOption(*r) for r in conn.execute(_RELOPTIONS_SQL).fetchall())
    return SettingsSnapshot(version, db_row[0], settings, overrides, tables, reloptions)
