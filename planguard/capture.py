"""``capture``: the old cluster's top statements as an executable workload (I/O).

Reads ``pg_stat_statements`` (needs ``pg_read_all_stats`` or ``pg_monitor`` to see
other roles' statements), keeps plannable statements (SELECT, INSERT, UPDATE,
DELETE, MERGE) that touch at least one user table, merges entries by pglast
fingerprint, binds each ``$n`` (``planguard.params``) and samples real values for it.

Sampling is cheap and safe on production: one read-only connection,
``TABLESAMPLE SYSTEM`` on a bounded fraction of a table's pages with a row limit,
a short ``statement_timeout``, never a full scan of a big table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors, sql

from planguard import db, explain, planning, sampling
from planguard.catalog.readiness import gather_all
from planguard.errors import CaptureError, InsufficientPrivilege
from planguard.logparse import LogEntry, read_log
from planguard.params import ParseFailure, Shape, TableColumns, analyze, resolve
from planguard.plan import raw_json
from planguard.progress import OnStep, Step
from planguard.workload import (
    ParamSet,
    Source,
    Statement,
    Workload,
)

ORDER_COLUMNS = {"total_time": "total_exec_time", "calls": "calls", "mean_time": "mean_exec_time"}
CATALOG_SCHEMAS = ("pg_catalog", "information_schema")


@dataclass(frozen=True)
class _Entry:
    query: str
    database: str
    user: str | None
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    hit: int
    read: int


def _stat_columns(version_num: int) -> tuple[str, str, str]:
    if version_num >= 130000:
        return "total_exec_time", "mean_exec_time", ("toplevel" if version_num >= 140000 else "true")
    return "total_time", "mean_time", "true"


def _read_statements(conn: psycopg.Connection, order_by: str, limit: int,
                     databases: Sequence[str] | None) -> list[_Entry]:
    """Top entries of pg_stat_statements for ``databases`` (None: every database)."""
    version = db.server_version_num(conn)
    total, mean, toplevel = _stat_columns(version)
    order = {"total_time": total, "calls": "calls", "mean_time": mean}[order_by]
    query = sql.SQL(db.MARK + """
        SELECT s.query, d.datname, r.rolname, s.calls, s.{total}, s.{mean}, s.rows,
               s.shared_blks_hit, s.shared_blks_read
        FROM pg_stat_statements s
        JOIN pg_database d ON d.oid = s.dbid
        LEFT JOIN pg_roles r ON r.oid = s.userid
        WHERE (%s::text[] IS NULL OR d.datname = ANY(%s::text[])) AND {toplevel}
          AND s.query NOT LIKE '/* planguard */%%' AND s.query NOT LIKE '%%/* planguard */'
        ORDER BY s.{order} DESC
        LIMIT %s""").format(
        total=sql.Identifier(total), mean=sql.Identifier(mean),
        toplevel=sql.SQL(toplevel), order=sql.Identifier(order),
    )
    names = list(databases) if databases is not None else None
    try:
        rows = conn.execute(query, (names, names, limit)).fetchall()
    except errors.ObjectNotInPrerequisiteState as exc:
        raise CaptureError(
            "pg_stat_statements is installed but not loaded: add it to "
            "shared_preload_libraries on the old cluster and restart it"
        ) from exc
    except errors.InsufficientPrivilege as exc:
        raise InsufficientPrivilege(
            "cannot read pg_stat_statements: GRANT pg_read_all_stats (or pg_monitor) TO <role>;"
        ) from exc
    entries = [_Entry(*r) for r in rows]
    if entries and all(e.query == HIDDEN for e in entries):
        raise InsufficientPrivilege(HIDDEN_FIX)
    return entries


HIDDEN = "<insufficient privilege>"  # pg_stat_statements' text for other roles' statements
HIDDEN_FIX = ("pg_stat_statements hides other roles' statements from this role: "
              "GRANT pg_read_all_stats TO <role>; (or pg_monitor)")


def _require_extension(conn: psycopg.Connection) -> None:
    row = conn.execute(db.MARK + "SELECT extversion FROM pg_extension "
                       "WHERE extname = 'pg_stat_statements'").fetchone()
    if row is None:
        dbname = conn.info.dbname
        raise CaptureError(
            f"pg_stat_statements is not installed in database {dbname!r}: run "
            "CREATE EXTENSION pg_stat_statements; there (it also needs "
            "shared_preload_libraries = 'pg_stat_statements')"
        )


def _stats_window(conn: psycopg.Connection, version_num: int) -> tuple[str | None, float | None]:
    if version_num < 140000:
        return None, None
    row = conn.execute(db.MARK + "SELECT stats_reset::text, extract(epoch FROM now() - stats_reset) "
                       "FROM pg_stat_statements_info").fetchone()
    return (row[0], float(row[1])) if row else (None, None)


def _shape(query: str) -> Shape | None:
    try:
        return analyze(query)
    except ParseFailure:
        return None


def _is_user_statement(shape: Shape | None) -> bool:
    if shape is None or shape.kind == "utility" or not shape.tables:
        return False
    return not all(t.split(".")[0] in CATALOG_SCHEMAS or t.startswith("pg_") for t in shape.tables)


ALL_DATABASES = "*"


def _order_value(group: list[_Entry], order_by: str) -> float:
    calls = sum(e.calls for e in group)
    total = sum(e.total_ms for e in group)
    return {"total_time": total, "calls": float(calls), "mean_time": total / max(calls, 1)}[order_by]


def capture(dsn: str, *, top: int = 50, order_by: str = "total_time",
            databases: Sequence[str] | None = None, limits: db.SessionLimits | None = None,
            seed: int = 42, progress: Callable[[str], None] | None = None, redact: bool = False,
            keep_values: bool = False, from_log: Path | None = None,
            on_step: OnStep | None = None) -> Workload:
    """Capture the top ``top`` statements of the old cluster.

    ``databases``: the databases to capture from (None: the DSN's database;
    ``["*"]``: every database with statements).  pg_stat_statements is read once, from
    the first database given (or the DSN's), which must have the extension; each
    database is then visited for its catalog, value samples and statistics snapshot.

    ``from_log``: a server log (stderr, csvlog or jsonlog) whose logged executions give
    real production values; they come first, before the sampled sets.

    ``redact``: the workload is marked so that reports never show parameter values,
    and the values are left out of it unless ``keep_values`` (``compare`` then samples
    them from OLD again, with the same seed).

    ``on_step``: progress (``planguard.progress.Step``) as each statement is sampled, instead
    of a ``progress`` line per statement.
    """
    if order_by not in ORDER_COLUMNS:
        raise CaptureError(f"--order-by must be one of {', '.join(ORDER_COLUMNS)}")
    if top < 1:
        raise CaptureError("--top must be at least 1")
    wanted = [d for d in databases or () if d != ALL_DATABASES]
    every = bool(databases) and ALL_DATABASES in (databases or ())
    if wanted:
        dsn = db.with_dbname(dsn, wanted[0], override=True)
    captured_at = datetime.now(timezone.utc)
    notes: list[str] = []
    logged = _log_index(read_log(from_log)) if from_log else {}
    if from_log:
        notes.append(f"parameter values from {from_log.name}: {sum(map(len, logged.values()))} "
                     "logged executions")
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(db.connect(dsn, label="old", limits=limits))
        version_num = db.server_version_num(first)
        _require_extension(first)
        names = None if every else (wanted or [str(first.info.dbname)])
        read = _read_statements(first, order_by, top * 4 + 50, names)
        entries = [e for e in read if e.query != HIDDEN]
        hidden = len(read) - len(entries)
        merged: dict[tuple[str, str], tuple[Shape, list[_Entry]]] = {}
        skipped_other = 0
        for e in entries:
            shape = _shape(e.query)
            if not _is_user_statement(shape):
                skipped_other += 1
                continue
            assert shape is not None
            merged.setdefault((e.database, shape.fingerprint), (shape, []))[1].append(e)
        conns: dict[str, psycopg.Connection] = {str(first.info.dbname): first}
        catalogs: dict[str, tuple[dict[str, TableColumns], dict[str, sampling.Rel]]] = {}
        for dbname in sorted({d for d, _ in merged}):
            if dbname not in conns:
                conns[dbname] = stack.enter_context(db.connect(
                    db.with_dbname(dsn, dbname, override=True), label=f"old ({dbname})", limits=limits))
            catalogs[dbname] = sampling.catalog(conns[dbname], {t for (d, _), (sh, _) in merged.items()
                                                                if d == dbname for t in sh.tables})
        # Statements that read only sequences (pg_dump, monitoring) are not application plans.
        candidates = [(d, shape, group) for (d, _), (shape, group) in merged.items()
                      if any(t in catalogs[d][0] for t in shape.tables)]
        skipped_other += len(merged) - len(candidates)
        candidates.sort(key=lambda c: -_order_value(c[2], order_by))
        chosen = candidates[:top]
        reset, window = _stats_window(first, version_num)
        samplers = {d: sampling.Sampler(conns[d], catalogs[d][1], seed) for d in catalogs}
        statements: list[Statement] = []
        for i, (dbname, shape, group) in enumerate(chosen, 1):
            head = group[0]
            if on_step:
                on_step(Step(i - 1, len(chosen), what=head.query[:40]))
            elif progress:
                progress(f"[{i}/{len(chosen)}] {dbname}: {head.query[:70]!r}")
            catalog = catalogs[dbname][0]
            calls = sum(e.calls for e in group)
            total = sum(e.total_ms for e in group)
            rows = sum(e.rows for e in group)
            bindings, problems = resolve(shape, catalog, head.query)
            bindings, untyped = sampling.type_parameters(samplers[dbname], head.query, bindings, captured_at)
            sets, reason = sampling.param_sets(head.query, bindings, samplers[dbname], captured_at,
                                               rows / calls if calls else None)
            if untyped and not sets:
                reason = f"OLD's server could not type its parameters: {untyped}"
            from_logs = log_sets(logged.get(shape.fingerprint, []), shape.max_param, dbname)
            if from_logs:
                sets = tuple(from_logs) + tuple(p for p in sets if p.values not in
                                               {x.values for x in from_logs})
                reason, problems = None, []
            statements.append(Statement(
                fingerprint=shape.fingerprint, query=head.query, kind=shape.kind,
                calls=calls, total_ms=round(total, 3), mean_ms=round(total / max(calls, 1), 3),
                rows=rows,
                shared_blks_hit=sum(e.hit for e in group), shared_blks_read=sum(e.read for e in group),
                calls_per_second=round(calls / window, 4) if window else None,
                database=dbname, users=tuple(sorted({e.user for e in group if e.user})),
                tables=tuple(dict.fromkeys(catalog[t].qualified for t in shape.tables if t in catalog)),
                bindings=bindings, param_sets=sets,
                skip_reason=reason or ("; ".join(problems) if problems and not sets else None),
            ))
        if on_step and chosen:
            on_step(Step(len(chosen), len(chosen), what="sampled"))
        statements = [replace(s, plan=_old_plan(conns[s.database or str(first.info.dbname)], s, version_num,
                                                redact))
                      for s in statements]
        recorded = {d: gather_all(conns[d]).to_dict() for d in sorted({s.database for s in statements
                                                                         if s.database})}
        source = Source(
            server_version=db.server_version(first), server_version_num=version_num,
            database=str(first.info.dbname), dsn=db.redact_dsn(dsn),
            captured_at=captured_at.isoformat(timespec="seconds"),
            stats_reset=reset, stats_window_seconds=round(window, 1) if window else None,
        )
    if skipped_other:
        notes.append(f"{skipped_other} utility, catalog-only or unparsable statements were left out")
    if hidden and not statements:
        raise InsufficientPrivilege(HIDDEN_FIX)
    if hidden:
        notes.append(f"{hidden} statements of other roles were hidden from this role and left out: "
                     "GRANT pg_read_all_stats TO <role>; (or pg_monitor) to capture them")
    if not statements:
        which = "any database" if every else ", ".join(repr(n) for n in names or [])
        raise CaptureError(
            f"no plannable statements in pg_stat_statements for {which}: "
            "let the application run (or check --database) and capture again"
        )
    if redact and not keep_values:
        statements = [replace(s, param_sets=()) if s.bindings else s for s in statements]
        notes.append("captured with --redact: parameter values are sampled again by compare")
    return Workload(source=source, statements=tuple(statements), notes=tuple(notes), redacted=redact,
                    catalog=recorded)


def _old_plan(conn: psycopg.Connection, stmt: Statement, version_num: int,
              redact: bool) -> dict[str, Any] | None:
    """OLD's plan for the statement, never executed (``planning.statement_plan``); None when it
    cannot be planned."""
    try:
        plan = planning.statement_plan(conn, stmt, version_num)
    except (explain.QueryFailed, psycopg.Error):
        return None
    return {"Plan": raw_json(plan, redact=redact)}


def _log_index(entries: list[LogEntry]) -> dict[str, list[LogEntry]]:
    out: dict[str, list[LogEntry]] = {}
    for e in entries:
        out.setdefault(e.fingerprint, []).append(e)
    return out


def log_sets(entries: list[LogEntry], nparams: int, database: str | None) -> list[ParamSet]:
    """Parameter sets from logged executions: the slowest one and the most frequent values."""
    usable = [e for e in entries if len(e.values) == nparams and nparams > 0
              and (e.database is None or database is None or e.database == database)]
    if not usable:
        return []
    sets: list[ParamSet] = []
    timed = [e for e in usable if e.duration_ms is not None]
    if timed:
        slow = max(timed, key=lambda e: e.duration_ms or 0.0)
        sets.append(ParamSet(f"log: slowest ({slow.duration_ms:.1f} ms)", slow.values,
                             ("log: the slowest logged execution",) * nparams))
    counts: dict[tuple[str | None, ...], int] = {}
    for e in usable:
        counts[e.values] = counts.get(e.values, 0) + 1
    frequent, n = max(counts.items(), key=lambda kv: kv[1])
    if all(frequent != s.values for s in sets):
        sets.append(ParamSet(f"log: most frequent ({n}x)", frequent,
                             (f"log: the most frequent values ({n} executions)",) * nparams))
    return sets
