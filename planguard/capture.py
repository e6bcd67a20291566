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
import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from psycopg import errors, sql

from planguard import db
from planguard.checks.readiness import gather_all
from planguard.errors import CaptureError, InsufficientPrivilege
from planguard.logparse import LogEntry, read_log
from planguard.params import ParseFailure, Shape, TableColumns, analyze, resolve
from planguard.workload import (
    Binding,
    IndexSnapshot,
    ParamSet,
    Source,
    Statement,
    TableSnapshot,
    Workload,
)

ORDER_COLUMNS = {"total_time": "total_exec_time", "calls": "calls", "mean_time": "mean_exec_time"}
DEFAULT_LIMIT = "50"  # LIMIT values are normalized away by pg_stat_statements
SAMPLE_ROWS = 500
SAMPLE_TIMEOUT_MS = 5000
CATALOG_SCHEMAS = ("pg_catalog", "information_schema")
# Literals for parameters of which only a type is known ($n::type).
TYPE_DEFAULTS = {
    "interval": "1 hour", "text": "x", "varchar": "x", "bool": "true", "boolean": "true",
    "uuid": "00000000-0000-0000-0000-000000000000", "json": "{}", "jsonb": "{}",
}


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
          AND s.query NOT LIKE '/* planguard */%%'
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
    if entries and all(e.query == "<insufficient privilege>" for e in entries):
        raise InsufficientPrivilege(
            "pg_stat_statements hides other roles' statements from this role: "
            "GRANT pg_read_all_stats TO <role>; (or pg_monitor)"
        )
    return [e for e in entries if e.query != "<insufficient privilege>"]


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


def _split(name: str) -> tuple[str | None, str]:
    parts = name.split(".", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


@dataclass(frozen=True)
class _Rel:
    schema: str
    name: str
    qualified: str
    reltuples: float
    relpages: int


def _catalog(
    conn: psycopg.Connection, written: Iterable[str]
) -> tuple[dict[str, TableColumns], dict[str, _Rel]]:
    """Columns and types of the relations as the statements wrote them (search_path applies)."""
    names = sorted(set(written))
    pairs = [_split(n) for n in names]
    rows = conn.execute(db.MARK + """
        SELECT w.written, ns.nspname, c.relname, format('%%I.%%I', ns.nspname, c.relname),
               c.reltuples, c.relpages, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)
        FROM unnest(%s::text[], %s::text[], %s::text[]) AS w(written, sch, rel)
        JOIN pg_class c ON c.oid = to_regclass(
             CASE WHEN w.sch IS NULL THEN quote_ident(w.rel)
                  ELSE quote_ident(w.sch) || '.' || quote_ident(w.rel) END)
        JOIN pg_namespace ns ON ns.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY w.written, a.attnum""",
        (names, [p[0] for p in pairs], [p[1] for p in pairs])).fetchall()
    columns: dict[str, dict[str, str]] = {}
    rels: dict[str, _Rel] = {}
    for as_written, schema, rel, qualified, reltuples, relpages, relkind, att, typ in rows:
        if relkind == "S":
            continue  # sequences: read by pg_dump and monitoring, never an application plan
        columns.setdefault(as_written, {})[att] = typ
        rels[as_written] = _Rel(schema, rel, qualified, float(reltuples), int(relpages))
    catalog = {w: TableColumns(rels[w].qualified, cols) for w, cols in columns.items()}
    return catalog, rels


class Sampler:
    """Real values from the old cluster, cached per table; deterministic for a seed."""

    def __init__(self, conn: psycopg.Connection, rels: Mapping[str, _Rel], seed: int) -> None:
        self.conn = conn
        self.rels = {r.qualified: r for r in rels.values()}
        self.seed = seed
        self.rng = random.Random(seed)
        self._rows: dict[str, list[dict[str, str | None]]] = {}
        self._mcv: dict[tuple[str, str], str | None] = {}
        self._common: dict[tuple[str, str], list[str]] = {}
        self._complete_rows: dict[tuple[str, tuple[str, ...]], list[dict[str, str | None]]] = {}

    def _pct(self, rel: _Rel) -> float:
        if rel.relpages < 64 or rel.reltuples <= 0:
            return 100.0
        return max(0.01, min(100.0, 100.0 * SAMPLE_ROWS * 4 / rel.reltuples))

    def rows(self, qualified: str) -> list[dict[str, str | None]]:
        """Up to SAMPLE_ROWS rows of the table, every column as text."""
        if qualified in self._rows:
            return self._rows[qualified]
        rel = self.rels[qualified]
        ident = sql.Identifier(rel.schema, rel.name)
        sampled = sql.SQL(db.MARK + "SELECT to_jsonb(t) FROM {} AS t TABLESAMPLE SYSTEM (%s) "
                          "REPEATABLE (%s) LIMIT %s").format(ident)
        plain = sql.SQL(db.MARK + "SELECT to_jsonb(t) FROM {} AS t LIMIT %s").format(ident)
        rows: list[dict[str, str | None]] = []
        try:
            # An error leaves the block, so the transaction is rolled back, never committed.
            with self.conn.transaction():
                self.conn.execute("SET TRANSACTION READ ONLY")
                self.conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(f"{SAMPLE_TIMEOUT_MS}ms")))
                got = self.conn.execute(sampled, (self._pct(rel), self.seed, SAMPLE_ROWS)).fetchall()
                if not got:  # every sampled page was empty: the first rows will do
                    got = self.conn.execute(plain, (SAMPLE_ROWS,)).fetchall()
            rows = [_texts(r[0]) for r in got]
        except psycopg.Error:
            rows = []  # no sample: the statement is kept and marked with the reason
        self._rows[qualified] = rows
        return rows

    def most_common(self, qualified: str, column: str) -> str | None:
        """The most frequent value of a column per pg_stats (the heavy hitter)."""
        key = (qualified, column)
        if key not in self._mcv:
            values = self.common_values(qualified, column)
            self._mcv[key] = values[0] if values else None
        return self._mcv[key]

    def pick(self, qualified: str, columns: list[str], lead: str | None = None,
             ) -> dict[str, str | None] | None:
        """One sampled row in which all ``columns`` are non-null (values stay correlated).

        With ``lead``, a row not holding its most common value is preferred, so the
        typical set differs from the heavy hitter whenever the data allows.
        """
        candidates = self._complete(qualified, columns)
        if lead is not None:
            heavy = self.most_common(qualified, lead)
            candidates = [r for r in candidates if r.get(lead) != heavy] or candidates
        return self.rng.choice(candidates) if candidates else None

    def _complete(self, qualified: str, columns: list[str]) -> list[dict[str, str | None]]:
        """Sampled rows with a value in every one of ``columns`` (cached: statements share them)."""
        key = (qualified, tuple(sorted(set(columns))))
        if key not in self._complete_rows:
            self._complete_rows[key] = [r for r in self.rows(qualified)
                                        if all(r.get(c) is not None for c in key[1])]
        return self._complete_rows[key]

    def _row_with(self, qualified: str, lead: str, value: str,
                  columns: list[str]) -> dict[str, str | None] | None:
        """A real row holding ``value`` in ``lead``: from the sample, else the first one found.

        Only called for values pg_stats counts among the most common, so ``LIMIT 1`` finds
        one within the first pages, even without an index (and statement_timeout bounds it).
        """
        rows = [r for r in self._complete(qualified, columns) if r.get(lead) == value]
        if rows:
            return self.rng.choice(rows)
        rel = self.rels[qualified]
        query = sql.SQL(db.MARK + "SELECT to_jsonb(t) FROM {} AS t WHERE {}::text = %s LIMIT 1").format(
            sql.Identifier(rel.schema, rel.name), sql.Identifier(lead))
        try:
            with self.conn.transaction():
                self.conn.execute("SET TRANSACTION READ ONLY")
                self.conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                    sql.Literal(f"{SAMPLE_TIMEOUT_MS}ms")))
                got = self.conn.execute(query, (value,)).fetchone()
        except psycopg.Error:
            return None
        return _texts(got[0]) if got else None

    def heavy_row(self, qualified: str, lead: str, columns: list[str]) -> dict[str, str | None] | None:
        """A real row holding ``lead``'s most common value (the tenant that owns most rows)."""
        value = self.most_common(qualified, lead)
        return None if value is None else self._row_with(qualified, lead, value, columns)

    def rare_row(self, qualified: str, lead: str, columns: list[str]) -> dict[str, str | None] | None:
        """A real row holding a rare ``lead`` value.

        The least frequent sampled value that pg_stats does not count as common; when every
        sampled value is a common one (a status column: a few values, all known), the least
        common of pg_stats' most common values, which page sampling easily misses when its
        rows sit together (the oldest rows, a churned tenant).
        """
        rows = self._complete(qualified, columns)
        common = self.common_values(qualified, lead)
        uncommon = [r for r in rows if r.get(lead) not in set(common)]
        if not uncommon and common:
            return self._row_with(qualified, lead, common[-1], columns)
        if not uncommon:
            return None
        counts: dict[str | None, int] = {}
        for r in uncommon:
            counts[r.get(lead)] = counts.get(r.get(lead), 0) + 1
        fewest = min(counts.values())
        return self.rng.choice([r for r in uncommon if counts[r.get(lead)] == fewest])

    def common_values(self, qualified: str, column: str) -> list[str]:
        """The column's most common values per pg_stats, most frequent first (cached)."""
        key = (qualified, column)
        if key not in self._common:
            rel = self.rels[qualified]
            row = self.conn.execute(db.MARK + """
                SELECT most_common_vals::text::text[] FROM pg_stats
                WHERE schemaname = %s AND tablename = %s AND attname = %s AND NOT inherited""",
                (rel.schema, rel.name, column)).fetchone()
            self._common[key] = list(row[0]) if row and row[0] else []
        return self._common[key]

    def recent_window(self, qualified: str, column: str, typ: str) -> tuple[str, str] | None:
        """(start, end) of the last 24 hours before the column's upper histogram bound."""
        family = typ.split("(")[0].strip()
        arithmetic = {
            "timestamp with time zone": "SELECT (b::timestamptz - interval '24 hours')::text, b",
            "timestamp without time zone": "SELECT (b::timestamp - interval '24 hours')::text, b",
            "date": "SELECT (b::date - 1)::text, b",
        }.get(family)
        if arithmetic is None:
            return None
        rel = self.rels[qualified]
        row = self.conn.execute(db.MARK + arithmetic + """ FROM (
            SELECT h[array_upper(h, 1)] AS b FROM (
              SELECT histogram_bounds::text::text[] AS h FROM pg_stats
              WHERE schemaname = %s AND tablename = %s AND attname = %s AND NOT inherited) s) t
            WHERE b IS NOT NULL""", (rel.schema, rel.name, column)).fetchone()
        return (row[0], row[1]) if row else None


def _texts(obj: dict[str, object]) -> dict[str, str | None]:
    """jsonb row -> text per column, as PostgreSQL's text output would give it."""
    out: dict[str, str | None] = {}
    for k, v in obj.items():
        if v is None:
            out[k] = None
        elif isinstance(v, str):
            out[k] = v
        elif isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, (int, float)):
            out[k] = repr(v) if isinstance(v, float) else str(v)
        elif isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
            out[k] = "{" + ",".join(_array_item(x) for x in v) + "}"
        else:
            out[k] = json.dumps(v)
    return out


def _array_item(v: object) -> str:
    if v is None:
        return "NULL"
    s = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _type_default(typ: str | None, captured_at: datetime) -> str | None:
    if not typ:
        return None
    base = typ.split("(")[0].strip().lower()
    if base in TYPE_DEFAULTS:
        return TYPE_DEFAULTS[base]
    if base in ("int", "int2", "int4", "int8", "integer", "bigint", "smallint", "numeric",
                "float4", "float8", "real", "double precision", "decimal"):
        return "1"
    if base.startswith("timestamp") or base == "date":
        return captured_at.isoformat()
    return None


LOWER_OPS = {">", ">=", "between_low"}
UPPER_OPS = {"<", "<=", "between_high"}


def param_sets(bindings: tuple[Binding, ...], sampler: Sampler, captured_at: datetime,
               ) -> tuple[tuple[ParamSet, ...], str | None]:
    """Executable, labelled parameter sets for a statement, or a reason why there are none.

    Every set takes its column values from real rows (one row per table), so a
    statement with several parameters finds rows (``WHERE app_id = $1 AND user_id = $2``):
    ``typical`` a randomly sampled row not holding the most common value of the first
    compared column (when there is one), ``heavy hitter`` a row holding the most common
    value of the first compared column, ``rare`` a row holding one of its least frequent
    values.  A timestamp compared from below (``created_at > $1``, ``BETWEEN``) gets the
    last 24 hours before the column's upper histogram bound.
    """
    if not bindings:
        return (ParamSet("no parameters", ()),), None
    if any(b.role == "unbound" for b in bindings):
        nums = ", ".join(f"${b.number}" for b in bindings if b.role == "unbound")
        return (), f"no value source for {nums} (not compared to a column, no type cast)"
    missing = [b for b in bindings if b.role == "cast" and _type_default(b.type, captured_at) is None]
    if missing:
        return (), f"no default value for type {missing[0].type} of ${missing[0].number}"
    by_table: dict[str, list[str]] = {}
    leads: dict[str, str] = {}
    for b in bindings:
        if b.table and b.column:
            by_table.setdefault(b.table, []).append(b.column)
            if b.role in ("compare", "any") and b.op not in LOWER_OPS | UPPER_OPS:
                leads.setdefault(b.table, b.column)
    lower_bounded = {(b.table, b.column) for b in bindings if b.op in LOWER_OPS}

    strategies: list[tuple[str, dict[str, dict[str, str | None]]]] = []
    typical: dict[str, dict[str, str | None]] = {}
    for table, cols in by_table.items():
        row = sampler.pick(table, cols, leads.get(table))
        if row is None:
            return (), f"no sampled row of {table} has values for {', '.join(sorted(set(cols)))}"
        typical[table] = row
    strategies.append(("typical", typical))
    for label, finder in (("heavy hitter", sampler.heavy_row), ("rare", sampler.rare_row)):
        rows = dict(typical)
        changed = False
        for table, lead in leads.items():
            row = finder(table, lead, by_table[table])
            if row is not None and row.get(lead) != typical[table].get(lead):
                rows[table], changed = row, True
        if changed:
            strategies.append((label, rows))

    windows: dict[tuple[str, str], tuple[str, str] | None] = {}

    def value(b: Binding, rows: dict[str, dict[str, str | None]]) -> str | None:
        if b.role == "limit":
            return DEFAULT_LIMIT
        if b.role == "offset":
            return "0"
        if b.table and b.column:
            key = (b.table, b.column)
            if key in lower_bounded and b.op in LOWER_OPS | UPPER_OPS and b.type:
                if key not in windows:
                    windows[key] = sampler.recent_window(b.table, b.column, b.type)
                window = windows[key]
                if window:
                    return window[0] if b.op in LOWER_OPS else window[1]
            v = rows[b.table][b.column]
            return "{" + _array_item(v) + "}" if b.role == "any" and v is not None else v
        return _type_default(b.type, captured_at)

    sets: list[ParamSet] = []
    for label, rows in strategies:
        ps = ParamSet(label, tuple(value(b, rows) for b in bindings))
        if all(ps.values != other.values for other in sets):
            sets.append(ps)
    return tuple(sets), None


def _snapshots(
    conn: psycopg.Connection, qualified: list[str], database: str | None = None,
) -> tuple[tuple[TableSnapshot, ...], tuple[IndexSnapshot, ...]]:
    if not qualified:
        return (), ()
    tables = conn.execute(db.MARK + """
        SELECT format('%%I.%%I', s.schemaname, s.relname), c.reltuples, c.relpages, s.n_live_tup,
               s.n_mod_since_analyze, s.last_analyze::text, s.last_autoanalyze::text
        FROM pg_stat_all_tables s JOIN pg_class c ON c.oid = s.relid
        WHERE s.relid = ANY(SELECT to_regclass(n) FROM unnest(%s::text[]) n) ORDER BY 1""",
        (qualified,)).fetchall()
    indexes = conn.execute(db.MARK + """
        SELECT format('%%I.%%I', s.schemaname, s.indexrelname), format('%%I.%%I', s.schemaname, s.relname),
               pg_get_indexdef(s.indexrelid), s.idx_scan
        FROM pg_stat_all_indexes s
        WHERE s.relid = ANY(SELECT to_regclass(n) FROM unnest(%s::text[]) n) ORDER BY 1""",
        (qualified,)).fetchall()
    return (tuple(replace(TableSnapshot(*r), database=database) for r in tables),
            tuple(replace(IndexSnapshot(*r), database=database) for r in indexes))


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
            keep_values: bool = False, from_log: Path | None = None) -> Workload:
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
        entries = _read_statements(first, order_by, top * 4 + 50, names)
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
        catalogs: dict[str, tuple[dict[str, TableColumns], dict[str, _Rel]]] = {}
        for dbname in sorted({d for d, _ in merged}):
            if dbname not in conns:
                conns[dbname] = stack.enter_context(db.connect(
                    db.with_dbname(dsn, dbname, override=True), label=f"old ({dbname})", limits=limits))
            catalogs[dbname] = _catalog(conns[dbname], {t for (d, _), (sh, _) in merged.items()
                                                        if d == dbname for t in sh.tables})
        # Statements that read only sequences (pg_dump, monitoring) are not application plans.
        candidates = [(d, shape, group) for (d, _), (shape, group) in merged.items()
                      if any(t in catalogs[d][0] for t in shape.tables)]
        skipped_other += len(merged) - len(candidates)
        candidates.sort(key=lambda c: -_order_value(c[2], order_by))
        chosen = candidates[:top]
        reset, window = _stats_window(first, version_num)
        samplers = {d: Sampler(conns[d], catalogs[d][1], seed) for d in catalogs}
        statements: list[Statement] = []
        for i, (dbname, shape, group) in enumerate(chosen, 1):
            head = group[0]
            if progress:
                progress(f"[{i}/{len(chosen)}] {dbname}: {head.query[:70]!r}")
            catalog = catalogs[dbname][0]
            bindings, problems = resolve(shape, catalog, head.query)
            sets, reason = param_sets(bindings, samplers[dbname], captured_at)
            from_logs = log_sets(logged.get(shape.fingerprint, []), shape.max_param, dbname)
            if from_logs:
                sets = tuple(from_logs) + tuple(p for p in sets if p.values not in
                                               {x.values for x in from_logs})
                reason, problems = None, []
            calls = sum(e.calls for e in group)
            total = sum(e.total_ms for e in group)
            statements.append(Statement(
                fingerprint=shape.fingerprint, query=head.query, kind=shape.kind,
                calls=calls, total_ms=round(total, 3), mean_ms=round(total / max(calls, 1), 3),
                rows=sum(e.rows for e in group),
                shared_blks_hit=sum(e.hit for e in group), shared_blks_read=sum(e.read for e in group),
                calls_per_second=round(calls / window, 4) if window else None,
                database=dbname, users=tuple(sorted({e.user for e in group if e.user})),
                tables=tuple(dict.fromkeys(catalog[t].qualified for t in shape.tables if t in catalog)),
                bindings=bindings, param_sets=sets,
                skip_reason=reason or ("; ".join(problems) if problems and not sets else None),
            ))
        tables: list[TableSnapshot] = []
        indexes: list[IndexSnapshot] = []
        recorded = {d: gather_all(conns[d]).to_dict() for d in sorted({s.database for s in statements
                                                                         if s.database})}
        for dbname in sorted({s.database for s in statements if s.database}):
            t, ix = _snapshots(conns[dbname], sorted({t for s in statements if s.database == dbname
                                                      for t in s.tables}), dbname)
            tables.extend(t)
            indexes.extend(ix)
        source = Source(
            server_version=db.server_version(first), server_version_num=version_num,
            database=str(first.info.dbname), dsn=db.redact_dsn(dsn),
            captured_at=captured_at.isoformat(timespec="seconds"),
            stats_reset=reset, stats_window_seconds=round(window, 1) if window else None,
        )
    if skipped_other:
        notes.append(f"{skipped_other} utility, catalog-only or unparsable statements were left out")
    if not statements:
        which = "any database" if every else ", ".join(repr(n) for n in names or [])
        raise CaptureError(
            f"no plannable statements in pg_stat_statements for {which}: "
            "let the application run (or check --database) and capture again"
        )
    if redact and not keep_values:
        statements = [replace(s, param_sets=()) if s.bindings else s for s in statements]
        notes.append("captured with --redact: parameter values are sampled again by compare")
    return Workload(source=source, statements=tuple(statements), tables=tuple(tables),
                    indexes=tuple(indexes), notes=tuple(notes), redacted=redact, catalog=recorded)


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
        sets.append(ParamSet(f"log: slowest ({slow.duration_ms:.1f} ms)", slow.values))
    counts: dict[tuple[str | None, ...], int] = {}
    for e in usable:
        counts[e.values] = counts.get(e.values, 0) + 1
    frequent, n = max(counts.items(), key=lambda kv: kv[1])
    if all(frequent != s.values for s in sets):
        sets.append(ParamSet(f"log: most frequent ({n}x)", frequent))
    return sets


def needs_values(workload: Workload) -> bool:
    """Statements with parameters but no values (a redacted capture)."""
    return any(s.bindings and not s.param_sets and not s.skip_reason for s in workload.statements)


def fill_values(conn: psycopg.Connection, workload: Workload, seed: int = 42,
                database: str | None = None) -> Workload:
    """Sample parameter values on OLD for statements that have bindings but no values.

    With ``database``, only that database's statements (``conn`` is connected to it).
    """
    def mine(s: Statement) -> bool:
        return database is None or (s.database or workload.source.database) == database

    tables = {b.table for s in workload.statements if mine(s) for b in s.bindings if b.table}
    _, rels = _catalog(conn, tables)
    sampler = Sampler(conn, rels, seed)
    now = datetime.now(timezone.utc)
    statements = []
    for s in workload.statements:
        if s.param_sets or s.skip_reason or not s.bindings or not mine(s):
            statements.append(s)
            continue
        if any(b.table and b.table not in sampler.rels for b in s.bindings):
            statements.append(replace(s, skip_reason="a table it reads is missing on OLD"))
            continue
        sets, reason = param_sets(s.bindings, sampler, now)
        statements.append(replace(s, param_sets=sets, skip_reason=reason))
    return replace(workload, statements=tuple(statements))

