"""Parameter values for the captured statements, taken on OLD, each with its provenance (I/O).

Sampling is cheap and safe on production: ``TABLESAMPLE SYSTEM`` on a bounded fraction of a
table's pages with a row limit, read-only transactions, a short ``statement_timeout``, never
a full scan of a big table; ``PREPARE`` and plain ``EXPLAIN`` (planning only, nothing runs)
to type the parameters and to check every chosen set.

For each statement (``param_sets``):

1. **Types.** OLD's server types every parameter (``PREPARE``, then
   ``pg_prepared_statements.parameter_types``); where it cannot decide (``unknown + unknown``,
   ``sum(CASE ... THEN $3 ELSE $4 END)``), the context decides (the column the expression
   is compared with, a function's meaning, else a number) and the statement is prepared
   again with those types.
2. **Values by role** (``planguard.params``): compared and written columns get values from
   one real sampled row per table (so several parameters find rows together); ``IN`` lists
   distinct values; ``LIKE`` a sampled prefix and a wildcard; a lower-bounded time range
   the last 24 hours of data; the leading term of a sum compared with a column
   (``col <= $8 + $9``) the column's value, the other terms 0 (added) or 1 (multiplied);
   function arguments with a small domain their canonical values (``date_trunc`` and
   ``extract`` fields, ``to_char`` formats, ``substring`` positions within the sampled text);
   ``CASE ... THEN $n`` and ``coalesce`` defaults a neutral value of their type; intervals a
   tenth of the column's data span.  Every value says where it came from (``sources``).
3. **Checked on OLD.** Each set is planned with a plain ``EXPLAIN``; when that fails, a
   guessed value is replaced by its next candidate.  The ``typical`` set is, of a few
   sampled candidates, the one whose estimated rows are nearest to what the statement
   returned per call on OLD (``pg_stat_statements.rows / calls``).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from planguard import db
from planguard.explain import reason
from planguard.params import TableColumns, render
from planguard.safety import one_statement
from planguard.workload import Binding, ParamSet, Statement, Workload

DEFAULT_LIMIT = "50"  # LIMIT values are normalized away by pg_stat_statements
SAMPLE_ROWS = 500
SAMPLE_TIMEOUT_MS = 5000
TYPICAL_CANDIDATES = 3  # sampled rows weighed for the typical set, when OLD's rows per call are known
MAX_FIXES = 6  # EXPLAINs spent on replacing guessed values of one set that does not plan
# Literals for parameters of which only a type is known ($n::type).
TYPE_DEFAULTS = {
    "interval": "1 day", "text": "x", "varchar": "x", "character varying": "x", "bool": "true",
    "boolean": "true", "uuid": "00000000-0000-0000-0000-000000000000", "json": "{}", "jsonb": "{}",
    "bytea": "", "inet": "127.0.0.1", "cidr": "127.0.0.0/8", "time without time zone": "12:00:00",
    "time": "12:00:00",
}
NUMERIC_TYPES = {"int", "int2", "int4", "int8", "integer", "bigint", "smallint", "numeric", "decimal",
                 "float4", "float8", "real", "double precision", "money", "oid"}
LOWER_OPS = {">", ">=", "between_low"}
UPPER_OPS = {"<", "<=", "between_high"}
# Canonical values of function arguments with a small domain: (function, argument) -> candidates.
CANONICAL = {
    ("date_trunc", 0): ("day", "month", "hour"), ("date_part", 0): ("year", "month", "day"),
    ("extract", 0): ("year", "month", "day"), ("to_char", 1): ("YYYY-MM-DD", "YYYY-MM", "HH24"),
    ("round", 1): ("2", "0"), ("trunc", 1): ("2", "0"), ("left", 1): ("2", "1"), ("right", 1): ("2", "1"),
    ("lpad", 1): ("10",), ("rpad", 1): ("10",), ("repeat", 1): ("2",), ("split_part", 1): (",", "-", " "),
    ("split_part", 2): ("1",), ("substring", 1): ("1",), ("substr", 1): ("1",),
}


def _family(typ: str | None) -> str:
    return (typ or "").split("(")[0].strip().lower()


def type_default(typ: str | None, captured_at: datetime) -> str | None:
    """A plain value of a type, or None when there is none to offer."""
    base = _family(typ)
    if not base:
        return None
    if base in TYPE_DEFAULTS:
        return TYPE_DEFAULTS[base]
    if base in NUMERIC_TYPES:
        return "1"
    if base.startswith("timestamp") or base == "date":
        return captured_at.date().isoformat() if base == "date" else captured_at.isoformat()
    if base.endswith("[]"):
        return "{}"
    return None


def _split(name: str) -> tuple[str | None, str]:
    parts = name.split(".", 1)
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


@dataclass(frozen=True)
class Rel:
    schema: str
    name: str
    qualified: str
    reltuples: float
    relpages: int


def catalog(conn: psycopg.Connection, written: Iterable[str],
            ) -> tuple[dict[str, TableColumns], dict[str, Rel]]:
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
    rels: dict[str, Rel] = {}
    for as_written, schema, rel, qualified, reltuples, relpages, relkind, att, typ in rows:
        if relkind == "S":
            continue  # sequences: read by pg_dump and monitoring, never an application plan
        columns.setdefault(as_written, {})[att] = typ
        rels[as_written] = Rel(schema, rel, qualified, float(reltuples), int(relpages))
    return {w: TableColumns(rels[w].qualified, cols) for w, cols in columns.items()}, rels


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


class Sampler:
    """Real values from the old cluster, cached per table; deterministic for a seed.

    Also the one place capture asks OLD's planner: ``types`` (PREPARE) and ``plan_rows``
    (EXPLAIN without ANALYZE), both read-only, with the session's timeouts.
    """

    def __init__(self, conn: psycopg.Connection, rels: Mapping[str, Rel], seed: int) -> None:
        self.conn = conn
        self.rels = {r.qualified: r for r in rels.values()}
        self.seed = seed
        self.rng = random.Random(seed)
        self._rows: dict[str, list[dict[str, str | None]]] = {}
        self._mcv: dict[tuple[str, str], str | None] = {}
        self._common: dict[tuple[str, str], list[str]] = {}
        self._complete_rows: dict[tuple[str, tuple[str, ...]], list[dict[str, str | None]]] = {}
        self._bounds: dict[tuple[str, str], tuple[str, str] | None] = {}
        self._typicals: dict[tuple[str, tuple[str, ...], str | None], list[dict[str, str | None]]] = {}

    def _read_only(self, query: sql.Composed | str, args: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of a query in a READ ONLY transaction with a short timeout; always rolled back."""
        with self.conn.transaction(force_rollback=True):
            self.conn.execute("SET TRANSACTION READ ONLY")
            self.conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(f"{SAMPLE_TIMEOUT_MS}ms")))
            return self.conn.execute(query, args).fetchall()

    def _pct(self, rel: Rel) -> float:
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
        try:
            got = self._read_only(sampled, (self._pct(rel), self.seed, SAMPLE_ROWS))
            if not got:  # every sampled page was empty: the first rows will do
                got = self._read_only(plain, (SAMPLE_ROWS,))
            rows = [_texts(r[0]) for r in got]  # type: ignore[arg-type]
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

    def pick(self, qualified: str, columns: list[str], lead: str | None = None, avoid: Sequence[object] = (),
             ) -> dict[str, str | None] | None:
        """One sampled row in which all ``columns`` are non-null (values stay correlated).

        With ``lead``, a row not holding its most common value is preferred, so the typical
        set differs from the heavy hitter whenever the data allows; rows in ``avoid`` are
        not picked again while others are left.
        """
        candidates = self._typical(qualified, columns, lead)
        fresh = [r for r in candidates if not any(r is a for a in avoid)]
        candidates = fresh or candidates
        return self.rng.choice(candidates) if candidates else None

    def _typical(self, qualified: str, columns: list[str], lead: str | None) -> list[dict[str, str | None]]:
        """Rows a typical set may take (cached): with ``lead``, those holding the value a sampled
        row most often holds after the heaviest one, typical for the rows (a big customer), not
        for the distinct values (one of thousands of small ones)."""
        key = (qualified, tuple(sorted(set(columns))), lead)
        if key not in self._typicals:
            candidates = self._complete(qualified, columns)
            if lead is not None:
                heavy = self.most_common(qualified, lead)
                candidates = [r for r in candidates if r.get(lead) != heavy] or candidates
                counts = Counter(r.get(lead) for r in candidates)
                if counts and max(counts.values()) > 1:
                    top = max(counts, key=lambda v: (counts[v], str(v)))
                    candidates = [r for r in candidates if r.get(lead) == top]
            self._typicals[key] = candidates
        return self._typicals[key]

    def _complete(self, qualified: str, columns: list[str]) -> list[dict[str, str | None]]:
        """Sampled rows with a value in every one of ``columns`` (cached: statements share them)."""
        key = (qualified, tuple(sorted(set(columns))))
        if key not in self._complete_rows:
            self._complete_rows[key] = [r for r in self.rows(qualified)
                                        if all(r.get(c) is not None for c in key[1])]
        return self._complete_rows[key]

    def distinct(self, qualified: str, column: str, first: str | None, n: int) -> list[str | None]:
        """``n`` distinct values of a column, ``first`` first: sampled, then pg_stats' common ones."""
        out: list[str | None] = [first]
        pool = [r.get(column) for r in self.rows(qualified)] + list(self.common_values(qualified, column))
        for v in pool:
            if len(out) >= n:
                break
            if v is not None and v not in out:
                out.append(v)
        while len(out) < n:
            out.append(out[-1])
        return out

    def _row_with(self, qualified: str, lead: str, value: str,
                  columns: list[str]) -> dict[str, str | None] | None:
        """A real row holding ``value`` in ``lead``: from the sample, else the first one found.

        Only called for values pg_stats counts among the most common, so ``LIMIT 1`` finds
        one within the first pages, even without an index (and statement_timeout bounds it).
        """
        rows = [r for r in self._complete(qualified, columns) if r.get(lead) == value]
        if rows:
            # Among them, the rows whose other columns hold their own commonest values: the
            # heaviest combination (tenant 1 and 'settled'), not a random one.
            modes = {c: Counter(r.get(c) for r in rows).most_common(1)[0][0] for c in set(columns) - {lead}}
            best = max(sum(r.get(c) == m for c, m in modes.items()) for r in rows)
            return self.rng.choice([r for r in rows if sum(r.get(c) == m for c, m in modes.items()) == best])
        rel = self.rels[qualified]
        query = sql.SQL(db.MARK + "SELECT to_jsonb(t) FROM {} AS t WHERE {}::text = %s LIMIT 1").format(
            sql.Identifier(rel.schema, rel.name), sql.Identifier(lead))
        try:
            got = self._read_only(query, (value,))
        except psycopg.Error:
            return None
        return _texts(got[0][0]) if got else None  # type: ignore[arg-type]

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

    def bounds(self, qualified: str, column: str) -> tuple[str, str] | None:
        """The lowest and highest values of a column's histogram (pg_stats), as text."""
        key = (qualified, column)
        if key not in self._bounds:
            rel = self.rels[qualified]
            row = self.conn.execute(db.MARK + """
                SELECT h[1], h[array_upper(h, 1)] FROM (
                  SELECT histogram_bounds::text::text[] AS h FROM pg_stats
                  WHERE schemaname = %s AND tablename = %s AND attname = %s AND NOT inherited) s""",
                (rel.schema, rel.name, column)).fetchone()
            self._bounds[key] = (str(row[0]), str(row[1])) if row and row[0] is not None else None
        return self._bounds[key]

    def recent_window(self, qualified: str, column: str, typ: str) -> tuple[str, str] | None:
        """(start, end) of the last 24 hours before the column's upper histogram bound."""
        arithmetic = {
            "timestamp with time zone": "SELECT (%s::timestamptz - interval '24 hours')::text",
            "timestamp without time zone": "SELECT (%s::timestamp - interval '24 hours')::text",
            "date": "SELECT (%s::date - 1)::text",
        }.get(_family(typ))
        bounds = self.bounds(qualified, column)
        if arithmetic is None or bounds is None:
            return None
        row = self.conn.execute(db.MARK + arithmetic, (bounds[1],)).fetchone()
        return (str(row[0]), bounds[1]) if row else None

    def span_interval(self, qualified: str, column: str) -> str | None:
        """A tenth of the column's data span (its histogram bounds) as whole days, at least one."""
        bounds = self.bounds(qualified, column)
        if bounds is None:
            return None
        try:
            row = self._read_only(db.MARK + "SELECT greatest(1, ceil(extract(epoch FROM %s::timestamptz "
                                  "- %s::timestamptz) / 864000))::int", (bounds[1], bounds[0]))
        except psycopg.Error:
            return None  # not a date or time column
        return f"{row[0][0]} days" if row else None

    # -- asking OLD's planner (nothing is executed) -------------------------------------
    def types(self, text: str) -> tuple[str, ...] | str:
        """The types OLD's server gives the parameters of ``text`` (PREPARE, read back and
        DEALLOCATE, sent as one batch: one round trip), or its error."""
        if not one_statement(text):
            return "refused: the text is not exactly one statement"
        name = f"planguard_types_{next(_names)}"
        ident = sql.Identifier(name)
        batch = (sql.SQL(db.MARK + "PREPARE {} AS ").format(ident) + sql.SQL(text)
                 + sql.SQL(";\nSELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = {}"
                           ";\nDEALLOCATE {}").format(sql.Literal(name), ident))
        try:
            with self.conn.cursor() as cur:
                cur.execute(batch)
                row = cur.fetchone() if cur.nextset() and cur.pgresult is not None else None
        except psycopg.Error as exc:
            return reason(exc)
        return tuple(CAST_TYPES.get(t, t) for t in row[0]) if row and row[0] else ()

    def plan_rows(self, text: str, values: Sequence[str | None]) -> float | str:
        """The planner's row estimate for ``text`` with ``values``, or its error.

        A plain EXPLAIN plans and executes nothing (not even a data-modifying CTE), so it
        needs no transaction of its own: one round trip.
        """
        if not one_statement(text):
            return "refused: the text is not exactly one statement"
        try:
            with db.MarkedRawCursor(self.conn) as cur:
                cur.execute(db.MARK + "EXPLAIN (FORMAT JSON) " + text, tuple(values) or None, prepare=False)
                row = cur.fetchone()
        except psycopg.Error as exc:
            return reason(exc)
        plan = row[0] if row else None
        return float(plan[0]["Plan"]["Plan Rows"]) if isinstance(plan, list) else 0.0


_names = itertools.count(1)
# Types that mean one length when written in a cast without one: cast to their unbounded form.
CAST_TYPES = {"character": "bpchar", "bit": "bit varying"}


# -- types ----------------------------------------------------------------------------


def _operand_type(b: Binding) -> str | None:
    """The type of a term of a sum or product, from the column it is computed with or compared
    to: the leading term of a comparison stands for the column's value; an offset to a date is
    a number of days, to a time an interval; otherwise a number like the column."""
    family = _family(b.type)
    if not family:
        return None
    if b.op and b.term == 0:
        return family
    if family == "date":
        return "integer" if b.arith in ("+", "-") else None
    if family.startswith("timestamp") or family.startswith("time"):
        return "interval" if b.arith in ("+", "-") else None
    return family if family in NUMERIC_TYPES else None


def _context_type(b: Binding, level: int) -> str | None:
    """The type the statement's context gives a parameter before the server is asked.

    Level 0: only what a function's meaning fixes (``substring`` positions) and JSON keys;
    1: also the terms of sums and products (``_operand_type``) and constants typed by a
    column (``coalesce(col, $1)``), for ``unknown + unknown``; 2: the parameters still
    untyped as numbers (a ``CASE`` constant summed), function arguments as text; 3: text.
    """
    if b.role in ("func", "json_key", "json_value") and b.type:
        return b.type
    if b.role == "arith" and level >= 1 and (typ := _operand_type(b)):
        return typ
    if b.role == "case" and level >= 1 and b.type:
        return _family(b.type)
    if level >= 2 and b.role in ("arith", "case", "unbound", "func"):
        return "numeric" if level == 2 and b.role != "func" else "text"
    return None


def _provisional(b: Binding, captured_at: datetime) -> str | None:
    """A value for a parameter that must be written into the text, just to type the rest."""
    if b.role == "func":
        return CANONICAL.get((b.func or "", b.arg or 0), ("x",))[0]
    return type_default(b.type, captured_at) or "1"


def type_parameters(sampler: Sampler, query: str, bindings: tuple[Binding, ...],
                    captured_at: datetime) -> tuple[tuple[Binding, ...], str | None]:
    """``bindings`` with the type OLD's server gives each parameter (``param_type``), or the
    error that says why no typing worked.

    The server types what it can; where it cannot decide (``unknown + unknown``, ``sum`` of
    an untyped ``CASE``), the context's types are cast in the text, level by level
    (``_context_type``), and the statement is prepared again.
    """
    if not bindings:
        return bindings, None
    provisional = [_provisional(b, captured_at) for b in bindings]
    error: str | None = None
    named: dict[int, str] = {}  # parameters an error named ("could not determine ... $20"): text
    for level in (0, 1, 1, 2, 2, 3):
        trial = [replace(b, param_type=named.get(b.number) or _context_type(b, level)) for b in bindings]
        text, _ = render(query, trial, provisional)
        got = sampler.types(text)
        if isinstance(got, str):
            error = got
            if (m := re.search(r"data type of parameter \$(\d+)", got)) is not None:
                kept = [b.number for b in trial if not b.inline]
                if int(m.group(1)) <= len(kept):
                    named[kept[int(m.group(1)) - 1]] = "text"
            continue
        typed = iter(got)
        by_number = {b.number: replace(b, param_type=next(typed, b.param_type))
                     for b in trial if not b.inline}
        return tuple(by_number.get(b.number, b) for b in trial), None
    return bindings, error


# -- values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """A value for one parameter, where it came from, and the next candidates if it fails."""

    value: str | None
    source: str
    alternatives: tuple[str | None, ...] = ()


def _neutral(b: Binding) -> Choice:
    """An operand that leaves the expression's value alone: + 0, * 1.  The leading term of a
    sum that is not compared with anything (``$1 - l_discount``) is the unit, as in ``1 - rate``."""
    typ = _family(b.param_type or b.type)
    if typ == "interval":
        return Choice("0 days", "inferred: neutral interval", ("1 day",))
    if b.arith in ("*", "/", "^", "%"):
        return Choice("1", "inferred: neutral factor", ("2",))
    if b.term == 0 and not b.op:
        return Choice("1", "inferred: unit constant, as in 1 - rate", ("0",))
    return Choice("0", "inferred: neutral addend", ("1",))


def _typed_guess(b: Binding, captured_at: datetime, why: str) -> Choice:
    typ = b.param_type or b.type
    value = type_default(typ, captured_at)
    return Choice(value if value is not None else "1", f"inferred: {why}",
                  ("0",) if _family(typ) in NUMERIC_TYPES else ())


class _Set:
    """Values for one parameter set of one statement (see the module docstring)."""

    def __init__(self, sampler: Sampler, bindings: tuple[Binding, ...],
                 rows: dict[str, dict[str, str | None]], source: str, captured_at: datetime) -> None:
        self.s, self.bindings, self.rows, self.source, self.at = sampler, bindings, rows, source, captured_at
        self.lower_bounded = {(b.table, b.column) for b in bindings if b.op in LOWER_OPS}
        self.by_number = {b.number: b for b in bindings}
        self.chosen: dict[int, Choice] = {}

    def choose(self) -> list[Choice]:
        # JSON keys before the values found under them.
        for b in sorted(self.bindings, key=lambda b: b.role != "json_key"):
            self.chosen[b.number] = self._value(b)
        return [self.chosen[b.number] for b in self.bindings]

    def _row_value(self, b: Binding) -> str | None:
        assert b.table and b.column
        return self.rows.get(b.table, {}).get(b.column)

    def _value(self, b: Binding) -> Choice:
        if b.role == "limit":
            return Choice(DEFAULT_LIMIT, f"default: LIMIT {DEFAULT_LIMIT} (pg_stat_statements keeps none)")
        if b.role == "offset":
            return Choice("0", "default: OFFSET 0 (pg_stat_statements keeps none)")
        if b.role in ("compare", "any", "set", "insert") and b.table and b.column:
            return self._column_value(b)
        if b.role == "arith":
            if b.op and b.term == 0 and b.table and b.column:
                return self._column_value(b, derived=True)
            if b.op and b.table and b.column and _family(b.param_type or b.type) == "interval":
                span = self.s.span_interval(b.table, b.column)
                if span:
                    return Choice(span, f"inferred: a tenth of {b.column}'s data span", ("1 day",))
            return _neutral(b)
        if b.role == "func":
            return self._func_value(b)
        if b.role == "case":
            if b.func == "case" and b.arg == 0 and _family(b.param_type) in NUMERIC_TYPES:
                return Choice("1", "inferred: counting constant (CASE ... THEN 1)", ("0",))
            if _family(b.param_type) in NUMERIC_TYPES:
                return Choice("0", "inferred: neutral value", ("1",))
            return _typed_guess(b, self.at, "neutral value of its type")
        if b.role == "json_key" and b.table and b.column:
            return self._json_key(b)
        if b.role == "json_value" and b.table and b.column:
            return self._json_value(b)
        return _typed_guess(b, self.at, "default of its type")

    def _column_value(self, b: Binding, derived: bool = False) -> Choice:
        assert b.table and b.column
        key = (b.table, b.column)
        if key in self.lower_bounded and b.op in LOWER_OPS | UPPER_OPS and b.type:
            window = self.s.recent_window(b.table, b.column, b.type)
            if window:
                if b.op in LOWER_OPS:
                    return Choice(window[0], "inferred: 24 hours before the newest value (pg_stats)")
                return Choice(window[1], "sampled: the newest value (pg_stats histogram)")
        value = self._row_value(b)
        if b.op == "in" and b.role == "compare":
            values = [c for c in self.bindings if c.op == "in" and c.role == "compare"
                      and (c.table, c.column) == key]
            if len(values) > 1:
                distinct = self.s.distinct(b.table, b.column, value, len(values))
                place = [c.number for c in values].index(b.number)
                return Choice(distinct[place], self.source if place == 0 else
                              f"sampled: another value of {b.column}")
        if b.op == "like" and value is not None:
            return Choice(value[: max(1, len(value) // 2)] + "%", f"{self.source}, a prefix with a wildcard",
                          (value,))
        if b.role == "any" and value is not None:
            return Choice("{" + _array_item(value) + "}", self.source)
        if b.func in ("sum", "count"):
            return Choice(value, f"inferred: one sampled {b.column} against {b.func}({b.column})",
                          ("1",))
        source = f"{self.source} {b.column}, as the leading term" if derived else self.source
        return Choice(value, source)

    def _func_value(self, b: Binding) -> Choice:
        name, arg = b.func or "", b.arg or 0
        if name in ("substring", "substr") and arg == 2:
            text = self._row_value(b) if b.table and b.column else None
            length = min(2, len(text)) if text else 2
            return Choice(str(max(1, length)), "inferred: a length within the sampled text", ("1",))
        if name == "position" and arg == 0 and b.table and b.column:
            text = self._row_value(b)
            if text:
                return Choice(text[:2], "sampled: part of the searched text")
        canonical = CANONICAL.get((name, arg))
        if canonical:
            return Choice(canonical[0], f"inferred: canonical {name} argument", canonical[1:])
        return _typed_guess(b, self.at, f"default of {name}'s argument type")

    def _json_object(self, b: Binding) -> dict[str, object] | None:
        text = self._row_value(b)
        try:
            obj = json.loads(text) if text else None
        except ValueError:
            return None
        return obj if isinstance(obj, dict) and obj else None

    def _json_key(self, b: Binding) -> Choice:
        obj = self._json_object(b)
        if obj is None:
            return _typed_guess(b, self.at, "default JSON key")
        keys = sorted(obj)
        return Choice(keys[0], f"sampled: a key of {b.column}", tuple(keys[1:3]))

    def _json_value(self, b: Binding) -> Choice:
        obj = self._json_object(b)
        key = self.chosen.get(b.key or 0)
        if obj is None or key is None or key.value not in obj:
            return _typed_guess(b, self.at, "default JSON value")
        v = obj[key.value]
        text = v if isinstance(v, str) else json.dumps(v)
        return Choice(text, f"sampled: {b.column} ->> {key.value}")


def _strategy_rows(sampler: Sampler, bindings: tuple[Binding, ...]) -> tuple[
        dict[str, list[str]], dict[str, str]]:
    """Columns per table whose values the sets take from one row, and each table's lead column."""
    by_table: dict[str, list[str]] = {}
    leads: dict[str, str] = {}
    for b in bindings:
        if not (b.table and b.column):
            continue
        by_table.setdefault(b.table, []).append(b.column)
        if b.role in ("compare", "any") and b.op not in LOWER_OPS | UPPER_OPS | {"like"}:
            leads.setdefault(b.table, b.column)
    return by_table, leads


def _distance(estimate: float, target: float) -> float:
    return abs(math.log(max(estimate, 1.0)) - math.log(max(target, 1.0)))


def param_sets(query: str, bindings: tuple[Binding, ...], sampler: Sampler, captured_at: datetime,
               rows_per_call: float | None = None) -> tuple[tuple[ParamSet, ...], str | None]:
    """Executable, labelled parameter sets for a statement, or a reason why there are none.

    ``typical`` (a sampled row not holding the lead column's most common value; of a few
    candidates, the one whose estimated rows are nearest ``rows_per_call``), ``heavy
    hitter`` (the lead column's most common value), ``rare`` (one of its least frequent).
    Each set is planned on OLD with a plain EXPLAIN; see the module docstring.
    """
    if not bindings:
        return (ParamSet("no parameters", ()),), None
    by_table, leads = _strategy_rows(sampler, bindings)
    candidates: list[tuple[str, dict[str, dict[str, str | None]]]] = []
    for table, cols in by_table.items():
        if not sampler.rows(table) or sampler.pick(table, cols) is None:
            return (), f"no sampled row of {table} has values for {', '.join(sorted(set(cols)))}"
    tries = TYPICAL_CANDIDATES if rows_per_call and by_table else 1
    seen: list[dict[str, str | None]] = []
    for _ in range(tries):
        rows: dict[str, dict[str, str | None]] = {}
        for table, cols in by_table.items():
            row = sampler.pick(table, cols, leads.get(table), avoid=seen)
            assert row is not None
            rows[table] = row
            seen.append(row)
        candidates.append(("typical", rows))
    typical = candidates[0][1]
    for label, finder in (("heavy hitter", sampler.heavy_row), ("rare", sampler.rare_row)):
        rows = dict(typical)
        changed = False
        for table, lead in leads.items():
            row = finder(table, lead, by_table[table])
            if row is not None and row.get(lead) != typical[table].get(lead):
                rows[table], changed = row, True
        if changed:
            candidates.append((label, rows))
    sources = {"typical": "sampled", "heavy hitter": "sampled: the most common value (pg_stats)",
               "rare": "sampled: a rare value"}
    planned: list[tuple[str, ParamSet, float]] = []
    error = None
    for label, rows in candidates:
        choices = _Set(sampler, bindings, rows, sources[label], captured_at).choose()
        checked = _checked(sampler, query, bindings, choices, label)
        if isinstance(checked, str):
            error = checked
            continue
        planned.append((label, *checked))
    if not planned:
        return (), f"no parameter set plans on OLD: {error}"
    typicals = [p for p in planned if p[0] == "typical"]
    best = min(typicals, key=lambda p: _distance(p[2], rows_per_call or 1.0)) if typicals else None
    sets: list[ParamSet] = []
    for _label, ps, _ in ([best] if best else []) + [p for p in planned if p[0] != "typical"]:
        if all(ps.values != other.values for other in sets):
            sets.append(ps)
    return tuple(sets), None


def _checked(sampler: Sampler, query: str, bindings: tuple[Binding, ...], choices: list[Choice],
             label: str) -> tuple[ParamSet, float] | str:
    """The set and its estimated rows once a plain EXPLAIN on OLD plans it, replacing guessed
    values by their next candidates while it does not (at most MAX_FIXES times); else the error."""
    values = [c.value for c in choices]
    sources = [c.source for c in choices]
    pending = [(i, alt) for i, c in enumerate(choices) for alt in c.alternatives]
    for attempt in range(MAX_FIXES + 1):
        text, binds = render(query, bindings, values)
        got = sampler.plan_rows(text, binds)
        if not isinstance(got, str):
            return ParamSet(label, tuple(values), tuple(sources)), got
        if attempt == MAX_FIXES or not pending:
            return got
        i, alt = pending.pop(0)
        values[i] = alt
        if not sources[i].endswith(", a later candidate"):
            sources[i] += ", a later candidate"
    return "no candidate planned"


# -- whole workloads ------------------------------------------------------------------


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
    _, rels = catalog(conn, tables)
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
        sets, reason = param_sets(s.query, s.bindings, sampler, now, s.rows_per_call)
        statements.append(replace(s, param_sets=sets, skip_reason=reason))
    return replace(workload, statements=tuple(statements))
