"""Planner settings: cluster-wide, per database and role, and per table.

Why it matters: the same statistics give different plans under a different
``random_page_cost``, ``work_mem``, ``enable_*``, ``jit`` or collapse limit, and a
``ALTER DATABASE ... SET`` or ``ALTER ROLE ... SET`` made on OLD years ago is not
carried by ``pg_dump`` of one database.  Table storage parameters left over from the
migration (``autovacuum_enabled = false`` to speed up the initial copy) silently stop
autovacuum and autoanalyze on NEW after the cutover.

Kind ``setting_diff`` (warning): a planner or autovacuum setting differs between OLD
and NEW, at one of three levels:

- cluster (``pg_settings``): only where at least one side is not at its own
  version's built-in default.  A setting both sides leave at their defaults is not
  reported even when the defaults differ (PostgreSQL 18's ``effective_io_concurrency``
  of 16 against 15's 1): that is the new version's intended behaviour, not drift.
  A setting that exists on one side only is reported when that side changed it.
  Fix: ``ALTER SYSTEM SET name = 'value'; SELECT pg_reload_conf();``.
- database and role overrides (``pg_db_role_setting``) that apply to the checked
  database.  Fix: ``ALTER DATABASE/ROLE ... SET name = 'value';`` or ``RESET``.
- table storage parameters (``reloptions``, TOAST's, and per-column ``attoptions``
  such as ``n_distinct``).  Fix: ``ALTER TABLE ... SET (...)`` / ``RESET (...)``.

The session's own values are not compared: a setting whose value comes from the
database, the role or the session (``source``) is read from ``pg_db_role_setting``
instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planguard.config import Thresholds
from planguard.findings import SETTING_DIFF, Finding, Subject, sql_literal

# Beyond the "Query Tuning" categories (enable_*, *_cost, jit*, collapse limits,
# default_statistics_target, plan_cache_mode, geqo*, ...): settings the planner reads
# from elsewhere, and those that keep statistics fresh.
EXTRA_SETTINGS = (
    "work_mem", "hash_mem_multiplier", "effective_io_concurrency", "maintenance_io_concurrency",
    "max_parallel_workers_per_gather", "max_parallel_workers", "parallel_leader_participation",
    "autovacuum", "track_counts", "autovacuum_naptime",
    "autovacuum_analyze_scale_factor", "autovacuum_analyze_threshold",
    "autovacuum_vacuum_scale_factor", "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_insert_scale_factor", "autovacuum_vacuum_insert_threshold",
)


@dataclass(frozen=True)
class Setting:
    name: str
    value: str  # pg_settings.setting, in the setting's base unit
    unit: str | None
    boot: str | None  # the built-in default of this server version
    source: str
    context: str  # postmaster settings need a restart


@dataclass(frozen=True)
class Override:
    """An ``ALTER DATABASE/ROLE ... SET`` that applies to the checked database."""

    scope: str  # "database", "role" or "role in database"
    role: str | None  # quoted role name
    name: str
    value: str


@dataclass(frozen=True)
class RelOption:
    table: str  # schema-qualified, quoted
    target: str  # "table", "toast", or a quoted column name
    name: str
    value: str


@dataclass(frozen=True)
class SettingsSnapshot:
    server_version_num: int
    database: str  # quoted
    settings: tuple[Setting, ...]
    overrides: tuple[Override, ...]
    tables: tuple[str, ...]  # every user table, to tell "no options" from "no table"
    reloptions: tuple[RelOption, ...]


_MEMORY = {"B": 1, "kB": 1024, "8kB": 8192, "MB": 1 << 20}


def display(value: str, unit: str | None) -> str:
    """A setting's value as a person reads it: '4MB', '0.1', '200ms'."""
    if unit in _MEMORY:
        try:
            n = int(value) * _MEMORY[unit]
        except ValueError:
            return f"{value}{unit}"
        for suffix, size in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1024)):
            if n >= size and n % size == 0:
                return f"{n // size}{suffix}"
        return f"{n}B"
    return f"{value}{unit or ''}"


def _at_default(s: Setting) -> bool:
    return s.source == "default" or s.value == s.boot


def _why(name: str) -> str:
    if name.startswith("autovacuum") or name == "track_counts":
        return ("autovacuum and autoanalyze run differently on NEW, so its statistics go stale at another "
                "pace (and are never refreshed when autovacuum or track_counts is off)")
    return "the planner weighs plans differently, so NEW can choose other plans for the same statistics"


def _cluster(old: SettingsSnapshot, new: SettingsSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    o_map = {s.name: s for s in old.settings}
    n_map = {s.name: s for s in new.settings}
    for name in sorted(set(o_map) | set(n_map)):
        o, n = o_map.get(name), n_map.get(name)
        if o is not None and n is not None:
            if (o.value, o.unit) == (n.value, n.unit) or (_at_default(o) and _at_default(n)):
                continue
            reload = ("-- needs a restart" if n.context == "postmaster" else "SELECT pg_reload_conf();")
            out.append(Finding(
                SETTING_DIFF, "warning", name,
                f"{name} is {display(o.value, o.unit)} on OLD ({o.source}) but {display(n.value, n.unit)} "
                f"on NEW ({n.source}): {_why(name)}.",
                f"ALTER SYSTEM SET {name} = {sql_literal(o.value)};\n{reload}",
                subject=Subject("setting", name, scope="cluster", database=database),
            ))
        elif o is not None and not _at_default(o):
            out.append(Finding(
                SETTING_DIFF, "info", name,
                f"{name} is set to {display(o.value, o.unit)} on OLD ({o.source}) and does not exist on "
                f"PostgreSQL {new.server_version_num // 10000}: check the release notes for its successor.",
                "-- no direct equivalent on NEW; see the release notes",
                subject=Subject("setting", name, scope="cluster", database=database),
            ))
        elif n is not None and not _at_default(n):
            out.append(Finding(
                SETTING_DIFF, "info", name,
                f"{name} is set to {display(n.value, n.unit)} on NEW ({n.source}) and does not exist on "
                f"OLD's PostgreSQL {old.server_version_num // 10000}.",
                f"-- review it; to return to the default:\nALTER SYSTEM RESET {name};\n"
                "SELECT pg_reload_conf();",
                subject=Subject("setting", name, scope="cluster", database=database),
            ))
    return out


def _scope_text(o: Override, db: str) -> str:
    if o.scope == "database":
        return f"database {db}"
    if o.scope == "role":
        return f"role {o.role}"
    return f"role {o.role} in database {db}"


def _alter(o: Override, db: str, value: str | None) -> str:
    target = {"database": f"ALTER DATABASE {db}", "role": f"ALTER ROLE {o.role}",
              "role in database": f"ALTER ROLE {o.role} IN DATABASE {db}"}[o.scope]
    return f"{target} RESET {o.name};" if value is None else f"{target} SET {o.name} = {sql_literal(value)};"


def _overrides(old: SettingsSnapshot, new: SettingsSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    key = lambda o: (o.scope, o.role, o.name.lower())  # noqa: E731
    o_map = {key(o): o for o in old.overrides}
    n_map = {key(o): o for o in new.overrides}
    for k in sorted(set(o_map) | set(n_map), key=lambda k: (k[0], k[1] or "", k[2])):
        o, n = o_map.get(k), n_map.get(k)
        if o is not None and n is not None and o.value == n.value:
            continue
        ref = n or o
        assert ref is not None
        where = _scope_text(ref, new.database)
        old_text = f"{o.value} on OLD" if o else "not set on OLD"
        new_text = f"{n.value} on NEW" if n else "not set on NEW"
        out.append(Finding(
            SETTING_DIFF, "warning", f"{ref.name} ({where})",
            f"{ref.name} for {where} is {old_text} but {new_text}: sessions of "
            f"{'that role' if ref.role else 'that database'} plan with a different value "
            "(pg_dump of a database does not carry ALTER DATABASE/ROLE ... SET).",
            _alter(ref, new.database, o.value if o else None),
            subject=Subject("setting", ref.name, scope=where, database=database),
        ))
    return out


def _option_sql(table: str, target: str, name: str, value: str | None) -> str:
    if target == "table":
        return (f"ALTER TABLE {table} RESET ({name});" if value is None
                else f"ALTER TABLE {table} SET ({name} = {sql_literal(value)});")
    if target == "toast":
        return (f"ALTER TABLE {table} RESET (toast.{name});" if value is None
                else f"ALTER TABLE {table} SET (toast.{name} = {sql_literal(value)});")
    return (f"ALTER TABLE {table} ALTER COLUMN {target} RESET ({name});" if value is None
            else f"ALTER TABLE {table} ALTER COLUMN {target} SET ({name} = {sql_literal(value)});")


def _options(opts: Iterable[RelOption]) -> dict[str, dict[tuple[str, str], str]]:
    out: dict[str, dict[tuple[str, str], str]] = {}
    for r in opts:
        out.setdefault(r.table, {})[(r.target, r.name)] = r.value
    return out


def _reloptions(old: SettingsSnapshot, new: SettingsSnapshot, database: str | None) -> list[Finding]:
    out: list[Finding] = []
    o_opts, n_opts = _options(old.reloptions), _options(new.reloptions)
    both = set(old.tables) & set(new.tables)
    for table in sorted(both & (set(o_opts) | set(n_opts))):
        o, n = o_opts.get(table, {}), n_opts.get(table, {})
        diffs = sorted(k for k in set(o) | set(n) if o.get(k) != n.get(k))
        if not diffs:
            continue
        parts = []
        names: list[str] = []  # as ALTER TABLE ... SET names them, for the subject
        for target, name in diffs:
            names.append(f"toast.{name}" if target == "toast" else name)
            label = name if target == "table" else f"{target}.{name}" if target == "toast" \
                else f"{name} of column {target}"
            parts.append(f"{label}: {o.get((target, name), 'not set')} on OLD, "
                         f"{n.get((target, name), 'not set')} on NEW")
        stops_autovacuum = any(name == "autovacuum_enabled" and n.get((target, name)) in ("false", "off", "0")
                               for target, name in diffs)
        why = ("autovacuum and autoanalyze skip the table on NEW, so its statistics go stale after the "
               "cutover" if stops_autovacuum else
               "storage parameters steer autovacuum, the planner (n_distinct, parallel_workers) and fill "
               "factor differently on NEW")
        out.append(Finding(
            SETTING_DIFF, "warning", table,
            f"{table}: {'; '.join(parts)}: {why} (often left over from the migration's initial copy).",
            "\n".join(_option_sql(table, t, name, o.get((t, name))) for t, name in diffs),
            subject=Subject("setting", ", ".join(dict.fromkeys(names)), scope=f"table {table}",
                            database=database),
        ))
    return out


def evaluate(old: SettingsSnapshot, new: SettingsSnapshot, thresholds: Thresholds, *,
             database: str | None = None) -> list[Finding]:
    """setting_diff findings: cluster settings, database/role overrides, table options.
    ``database``: NEW's database as ``current_database()`` names it, for the findings'
    subjects (the snapshot holds it quoted, for SQL)."""
    del thresholds
    return _cluster(old, new, database) + _overrides(old, new, database) + _reloptions(old, new, database)
