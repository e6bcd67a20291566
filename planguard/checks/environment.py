"""Extensions and collation versions: what the database runs on.

Why it matters: an extension missing on NEW breaks every statement, index and
default that uses its functions, types or operators; an older version lacks what
OLD's application calls.  A collation whose recorded version differs from the
library's actual one (a data directory moved to another glibc or ICU) means text
indexes may be sorted by other rules than the ones lookups use now: wrong results
and unique violations that go unnoticed.

Kinds:

``extension_diff``
    *blocker*: installed on OLD, not on NEW.  *warning*: NEW's version is older than
    OLD's.  *info*: any other version difference, unless both sides are at their own
    server's default version (the expected result of a major upgrade), or an
    extension only NEW has.
    Fix: ``CREATE EXTENSION name;`` / ``ALTER EXTENSION name UPDATE;``.
``collation_version``
    on NEW, the database's ``datcollversion`` (PostgreSQL 15+) or a collation's
    ``collversion`` differs from ``pg_database_collation_actual_version()`` /
    ``pg_collation_actual_version()``: *blocker* when indexes depend on it, else
    *warning*.  *info*: the actual version differs between OLD and NEW (ORDER BY on
    text may sort differently).  Fix: check the indexes with amcheck
    (``bt_index_check``), ``REINDEX`` those that depend on it, then ``ALTER DATABASE
    ... REFRESH COLLATION VERSION`` / ``ALTER COLLATION ... REFRESH VERSION``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planguard.config import Thresholds
from planguard.findings import (
    COLLATION_VERSION,
    EXTENSION_DIFF,
    Finding,
    Subject,
    listing,
    quoted_ident,
    sql_literal,
)


@dataclass(frozen=True)
class Extension:
    name: str
    version: str
    default_version: str | None  # this server's default for it (None: no control file)


@dataclass(frozen=True)
class Collation:
    name: str  # quoted, schema-qualified unless in pg_catalog; "default" for the database's
    provider: str  # c (libc), i (icu), b (builtin), d (database default)
    recorded: str | None  # collversion / datcollversion
    actual: str | None  # what the library reports now
    indexes: tuple[str, ...] = ()  # btree indexes that sort by it (the first 100, see catalog.environment)
    index_count: int = 0


@dataclass(frozen=True)
class EnvironmentSnapshot:
    server_version_num: int
    database: str  # quoted
    extensions: tuple[Extension, ...]
    available: tuple[str, ...]  # extensions this server could CREATE
    database_collation: Collation
    collations: tuple[Collation, ...]  # non-default collations used by columns or indexes


def version_key(v: str) -> tuple[int, ...]:
    """'1.10' > '1.9': extension versions compared by their numbers."""
    return tuple(int(p) for p in re.findall(r"\d+", v))


def _extensions(old: EnvironmentSnapshot, new: EnvironmentSnapshot) -> list[Finding]:
    out: list[Finding] = []
    n_map = {e.name: e for e in new.extensions}
    o_map = {e.name: e for e in old.extensions}
    available = set(new.available)
    for name in sorted(o_map):
        o, n = o_map[name], n_map.get(name)
        quoted = quoted_ident(name)
        if n is None:
            fix = (f"CREATE EXTENSION {quoted};" if name in available else
                   f"-- {name} is not available on NEW's server: install its package there, then\n"
                   f"CREATE EXTENSION {quoted};")
            out.append(Finding(
                EXTENSION_DIFF, "blocker", name,
                f"extension {name} {o.version} is installed on OLD but not on NEW: every function, type, "
                "operator and index that comes from it is missing there.",
                fix,
                subject=Subject("extension", name),
            ))
            continue
        if n.version == o.version:
            continue
        if version_key(n.version) < version_key(o.version):
            out.append(Finding(
                EXTENSION_DIFF, "warning", name,
                f"extension {name} is {o.version} on OLD but older, {n.version}, on NEW: functions or "
                "behaviour the application relies on may be missing.",
                f"ALTER EXTENSION {quoted} UPDATE TO {sql_literal(o.version)};",
                subject=Subject("extension", name),
            ))
        elif not (o.version == o.default_version and n.version == n.default_version):
            out.append(Finding(
                EXTENSION_DIFF, "info", name,
                f"extension {name} is {o.version} on OLD and {n.version} on NEW: check its release notes "
                "for changed behaviour.",
                "-- no action needed if the application works with the newer version",
                subject=Subject("extension", name),
            ))
    for name in sorted(set(n_map) - set(o_map)):
        out.append(Finding(
            EXTENSION_DIFF, "info", name,
            f"extension {name} {n_map[name].version} is installed on NEW only.",
            "-- no action needed if it was added on purpose",
            subject=Subject("extension", name),
        ))
    return out


def _collation_fix(label: str, c: Collation, refresh: str) -> str:
    lines = []
    if c.indexes:
        lines.append("-- check the indexes that sort by it (amcheck), and rebuild those that fail or all:")
        lines.append("CREATE EXTENSION IF NOT EXISTS amcheck;")
        for ix in c.indexes:
            lines.append(f"SELECT bt_index_check({sql_literal(ix)}::regclass, true);")
        if c.index_count > len(c.indexes):
            lines.append(f"-- ... and {c.index_count - len(c.indexes)} more btree indexes using {label}")
        lines += [f"REINDEX INDEX CONCURRENTLY {ix};" for ix in c.indexes]
    lines.append(refresh)
    return "\n".join(lines)


def _collations(old: EnvironmentSnapshot, new: EnvironmentSnapshot) -> list[Finding]:
    out: list[Finding] = []
    checks: list[tuple[str, Subject, Collation, Collation | None, str]] = [
        (f"database {new.database}", Subject("database", new.database), new.database_collation,
         old.database_collation, f"ALTER DATABASE {new.database} REFRESH COLLATION VERSION;")]
    o_map = {c.name: c for c in old.collations}
    checks += [(c.name, Subject("collation", c.name), c, o_map.get(c.name),
                f"ALTER COLLATION {c.name} REFRESH VERSION;")
               for c in new.collations]
    for obj, subject, c, o, refresh in checks:
        label = "the database's default collation" if c.name == "default" else f"collation {c.name}"
        if c.recorded is not None and c.recorded != c.actual:
            actual = c.actual if c.actual is not None else "none"
            used = (f"{c.index_count} btree index(es) sort by it ({listing(list(c.indexes), 5)})"
                    if c.index_count else "no index sorts by it")
            out.append(Finding(
                COLLATION_VERSION, "blocker" if c.index_count else "warning", obj,
                f"{label} on NEW was recorded at version {c.recorded} but the library now reports "
                f"{actual}: {used}, and an index built under other sort rules returns wrong results "
                "and misses unique violations (typical after copying a data directory to another OS).",
                _collation_fix(label, c, refresh),
                subject=subject,
            ))
        elif o is not None and o.actual and c.actual and o.actual != c.actual and o.provider == c.provider:
            out.append(Finding(
                COLLATION_VERSION, "info", obj,
                f"{label} is version {o.actual} on OLD and {c.actual} on NEW: ORDER BY and comparisons "
                "on text may give different results (NEW's indexes were built with NEW's version).",
                "-- no action needed if NEW was loaded logically (dump/restore or replication)",
                subject=subject,
            ))
    return out


def evaluate(old: EnvironmentSnapshot, new: EnvironmentSnapshot, thresholds: Thresholds) -> list[Finding]:
    """extension_diff and collation_version findings."""
    del thresholds
    return _extensions(old, new) + _collations(old, new)
