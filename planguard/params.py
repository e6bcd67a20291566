"""Parameter binding analysis with pglast (pure: no database).

``analyze(sql)`` parses a normalized statement (as ``pg_stat_statements`` shows it,
with ``$n`` placeholders) with PostgreSQL's own parser and finds, for each ``$n``,
what it stands for: the column it is compared to (``col = $n``, ``col > $n``,
``col IN ($n, ...)``, ``col BETWEEN $n AND $m``, ``col LIKE $n``,
``col IS DISTINCT FROM $n``, ``col = ANY($n)``), the column it is written into
(``INSERT ... VALUES``, ``UPDATE ... SET``), ``LIMIT``/``OFFSET``, or only a type
(``$n::interval``).  Column references are resolved through the statement's
scopes (aliases, joins, subqueries, CTEs); unqualified columns with several
tables in scope are resolved later by ``resolve`` against the old cluster's
catalog.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pglast
from pglast import ast, enums

from planguard import qualify
from planguard.workload import Binding

# Frames map an alias (or bare relation name) to the relation as written, or to
# None for something that is not a table (CTE, subquery, function).
Frame = dict[str, str | None]

_KINDS = {
    ast.SelectStmt: "select",
    ast.InsertStmt: "insert",
    ast.UpdateStmt: "update",
    ast.DeleteStmt: "delete",
    ast.MergeStmt: "merge",
}
# Preference when the same $n appears several times: the most informative wins.
_ROLE_RANK = {"compare": 0, "any": 1, "set": 2, "insert": 2, "limit": 3, "offset": 3,
              "cast": 4, "unbound": 5}
_COMPARE_KINDS = {
    enums.A_Expr_Kind.AEXPR_OP, enums.A_Expr_Kind.AEXPR_IN, enums.A_Expr_Kind.AEXPR_LIKE,
    enums.A_Expr_Kind.AEXPR_ILIKE, enums.A_Expr_Kind.AEXPR_SIMILAR,
    enums.A_Expr_Kind.AEXPR_DISTINCT, enums.A_Expr_Kind.AEXPR_NOT_DISTINCT,
    enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_NOT_BETWEEN,
    enums.A_Expr_Kind.AEXPR_BETWEEN_SYM, enums.A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM,
    enums.A_Expr_Kind.AEXPR_NULLIF,
}
_ARRAY_KINDS = {enums.A_Expr_Kind.AEXPR_OP_ANY, enums.A_Expr_Kind.AEXPR_OP_ALL}


class ParseFailure(ValueError):
    """The statement is not valid SQL for PostgreSQL's parser."""


@dataclass(frozen=True)
class ParamUse:
    """One place a ``$n`` appears, before catalog resolution."""

    number: int
    role: str
    column: str | None = None
    qualifier: str | None = None  # alias or relation as written before the column
    candidates: tuple[str, ...] = ()  # relations in scope, innermost first
    cast: str | None = None  # type from an explicit cast on the parameter
    position: int | None = None  # INSERT without a column list: 0-based position
    op: str | None = None  # =, <, >, <=, >=, <>, in, like, between_low, between_high, distinct


@dataclass(frozen=True)
class Shape:
    """What the parser tells about a statement."""

    kind: str  # select, insert, update, delete, merge, or "utility"
    fingerprint: str
    tables: tuple[str, ...]  # relations as written (CTE names excluded)
    uses: tuple[ParamUse, ...]  # the best use of each $n, by number
    max_param: int
    locks_rows: bool = False  # SELECT ... FOR UPDATE/SHARE
    writes: bool = False  # modifies data anywhere, including in a WITH (data-modifying CTE)

    @property
    def is_dml(self) -> bool:
        return self.kind in ("insert", "update", "delete", "merge")


@dataclass
class _Walker:
    ctes: set[str] = field(default_factory=set)
    uses: list[ParamUse] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    max_param: int = 0
    locks_rows: bool = False
    writes: bool = False

    # -- helpers ---------------------------------------------------------------
    def _param(self, node: object) -> tuple[int, str | None] | None:
        """(number, cast type) when ``node`` is ``$n`` or ``$n::type``."""
        if isinstance(node, ast.ParamRef):
            return int(node.number or 0), None
        if isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.ParamRef):
            return int(node.arg.number or 0), _type_name(node.typeName)
        return None

    def _column(self, node: object) -> tuple[str | None, str] | None:
        """(qualifier, column) when ``node`` is a column, possibly cast or in f(col)."""
        if isinstance(node, ast.TypeCast):
            return self._column(node.arg)
        if isinstance(node, ast.FuncCall) and node.args and len(node.args) == 1:
            return self._column(node.args[0])
        if isinstance(node, ast.ColumnRef):
            fields = node.fields or ()
            names = [str(f.sval) for f in fields if isinstance(f, ast.String)]
            if not names or len(names) != len(fields):
                return None  # t.* or similar
            qualifier = ".".join(names[:-1]) or None
            return qualifier, names[-1]
        return None

    def _candidates(self, scope: Sequence[Frame]) -> tuple[str, ...]:
        out: list[str] = []
        for frame in scope:
            out.extend(t for t in frame.values() if t and t not in out)
        return tuple(out)

    def _lookup(self, qualifier: str | None, scope: Sequence[Frame]) -> tuple[str | None, tuple[str, ...]]:
        """Resolve an alias to its relation; unqualified columns keep all candidates."""
        if qualifier is None:
            return None, self._candidates(scope)
        for frame in scope:
            if qualifier in frame:
                table = frame[qualifier]
                return qualifier, ((table,) if table else ())
        # Qualified by a relation name that was aliased, or schema.table.
        return qualifier, (qualifier,)

    def _use(self, number: int, role: str, scope: Sequence[Frame],
             column: tuple[str | None, str] | None = None,
             cast: str | None = None, position: int | None = None, op: str | None = None) -> None:
        self.max_param = max(self.max_param, number)
        if column is None:
            self.uses.append(ParamUse(number, role, cast=cast, position=position,
                                      candidates=self._candidates(scope), op=op))
            return
        qualifier, candidates = self._lookup(column[0], scope)
        self.uses.append(ParamUse(number, role, column=column[1], qualifier=qualifier,
                                  candidates=candidates, cast=cast, op=op))

    def _frame(self, items: Iterable[object] | None, scope: list[Frame]) -> Frame:
        frame: Frame = {}
        for item in items or ():
            self._frame_item(item, frame, scope)
        return frame

    def _frame_item(self, item: object, frame: Frame, scope: list[Frame]) -> None:
        if isinstance(item, ast.RangeVar):
            relname = str(item.relname)
            written = f"{item.schemaname}.{relname}" if item.schemaname else relname
            is_cte = item.schemaname is None and relname in self.ctes
            key = str(item.alias.aliasname) if item.alias else relname
            frame[key] = None if is_cte else written
            if not is_cte and written not in self.tables:
                self.tables.append(written)
        elif isinstance(item, ast.JoinExpr):
            self._frame_item(item.larg, frame, scope)
            self._frame_item(item.rarg, frame, scope)
        elif isinstance(item, ast.RangeSubselect):
            inner = [frame, *scope] if item.lateral else scope
            self.walk(item.subquery, inner)
            if item.alias:
                frame[str(item.alias.aliasname)] = None
        elif isinstance(item, ast.RangeFunction):
            self.walk(item.functions, scope)
            if item.alias:
                frame[str(item.alias.aliasname)] = None

    def _join_quals(self, items: Iterable[object] | None, scope: list[Frame]) -> None:
        for item in items or ():
            if isinstance(item, ast.JoinExpr):
                self._join_quals((item.larg, item.rarg), scope)
                self.walk(item.quals, scope)

    # -- statements ------------------------------------------------------------
    def _select(self, node: ast.SelectStmt, scope: list[Frame]) -> None:
        self._with(node.withClause, scope)
        if node.lockingClause:
            self.locks_rows = True
        if node.op != enums.SetOperation.SETOP_NONE:
            self.walk(node.larg, scope)
            self.walk(node.rarg, scope)
            inner = scope
        else:
            frame = self._frame(node.fromClause, scope)
            inner = [frame, *scope]
            self._join_quals(node.fromClause, inner)
            for part in (node.targetList, node.whereClause, node.groupClause, node.havingClause,
                         node.sortClause, node.windowClause, node.valuesLists, node.distinctClause):
                self.walk(part, inner)
        for part, role in ((node.limitCount, "limit"), (node.limitOffset, "offset")):
            p = self._param(part)
            if p:
                self._use(p[0], role, inner, cast=p[1])
            else:
                self.walk(part, inner)

    def _with(self, clause: ast.WithClause | None, scope: list[Frame]) -> None:
        if not clause:
            return
        for cte in clause.ctes or ():
            self.ctes.add(cte.ctename)
            self.walk(cte.ctequery, scope)

    def _target_frame(self, relation: ast.RangeVar | None, extra: Iterable[object] | None,
                      scope: list[Frame]) -> list[Frame]:
        frame = self._frame([relation] if relation else [], scope)
        frame.update(self._frame(extra, scope))
        return [frame, *scope]

    def _insert(self, node: ast.InsertStmt, scope: list[Frame]) -> None:
        self._with(node.withClause, scope)
        inner = self._target_frame(node.relation, None, scope)
        target_key = _target_key(node.relation)
        cols = [c.name for c in node.cols or ()]
        select = node.selectStmt
        if isinstance(select, ast.SelectStmt) and select.valuesLists:
            for row in select.valuesLists:
                for i, expr in enumerate(row):
                    p = self._param(expr)
                    if p and i < len(cols):
                        self._use(p[0], "insert", inner, column=(target_key, cols[i]), cast=p[1])
                    elif p:
                        self._use(p[0], "insert", inner, cast=p[1], position=i)
                    else:
                        self.walk(expr, inner)
        else:
            self.walk(select, scope)
        self.walk(node.onConflictClause, inner)
        self.walk(_returning(node), inner)

    def _update(self, node: ast.UpdateStmt, scope: list[Frame]) -> None:
        self._with(node.withClause, scope)
        inner = self._target_frame(node.relation, node.fromClause, scope)
        self._join_quals(node.fromClause, inner)
        target_key = _target_key(node.relation)
        for target in node.targetList or ():
            p = self._param(target.val)
            if p and target.name:
                self._use(p[0], "set", inner, column=(target_key, target.name), cast=p[1])
            else:
                self._set_expr(target, target_key, inner)
        self.walk(node.whereClause, inner)
        self.walk(_returning(node), inner)

    def _set_expr(self, target: ast.ResTarget, target_key: str, scope: list[Frame]) -> None:
        """``SET col = col + $1``: the parameter takes the assigned column's type."""
        val = target.val
        if isinstance(val, ast.A_Expr) and val.kind == enums.A_Expr_Kind.AEXPR_OP and target.name:
            for side in (val.lexpr, val.rexpr):
                p = self._param(side)
                if p:
                    self._use(p[0], "set", scope, column=(target_key, target.name), cast=p[1])
                else:
                    self.walk(side, scope)
            return
        self.walk(val, scope)

    def _delete(self, node: ast.DeleteStmt, scope: list[Frame]) -> None:
        self._with(node.withClause, scope)
        inner = self._target_frame(node.relation, node.usingClause, scope)
        self._join_quals(node.usingClause, inner)
        self.walk(node.whereClause, inner)
        self.walk(_returning(node), inner)

    # -- expressions -----------------------------------------------------------
    def _a_expr(self, node: ast.A_Expr, scope: list[Frame]) -> None:
        kind = node.kind
        if kind in _ARRAY_KINDS:
            col, p = self._column(node.lexpr), self._param(node.rexpr)
            if col and p:
                self._use(p[0], "any", scope, column=col, cast=p[1], op="in")
                return
        elif kind in _COMPARE_KINDS:
            for col_side, other in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
                col = self._column(col_side)
                if not col:
                    continue
                items = other if isinstance(other, (list, tuple)) else [other]
                params = [self._param(x) for x in items]
                if params and all(params):
                    for i, p in enumerate(params):
                        assert p is not None
                        op = _operator(node, i, mirrored=col_side is node.rexpr)
                        self._use(p[0], "compare", scope, column=col, cast=p[1], op=op)
                    return
        self.walk(node.lexpr, scope)
        self.walk(node.rexpr, scope)

    def walk(self, node: object, scope: list[Frame]) -> None:
        if node is None:
            return
        if isinstance(node, (list, tuple)):
            for item in node:
                self.walk(item, scope)
            return
        if not isinstance(node, ast.Node):
            return
        handler = {
            ast.SelectStmt: self._select, ast.InsertStmt: self._insert,
            ast.UpdateStmt: self._update, ast.DeleteStmt: self._delete,
            ast.A_Expr: self._a_expr,
        }.get(type(node))
        if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            self.writes = True
        if handler:
            handler(node, scope)  # type: ignore[operator]
            return
        p = self._param(node)
        if p:
            self._use(p[0], "cast" if p[1] else "unbound", scope, cast=p[1])
            return
        for slot in node.__slots__:  # type: ignore[attr-defined]
            self.walk(getattr(node, slot, None), scope)


_MIRROR = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _operator(node: ast.A_Expr, index: int, mirrored: bool) -> str | None:
    """The comparison as seen from the column: ``$1 < col`` is ``col > $1``."""
    kind = node.kind
    if kind in (enums.A_Expr_Kind.AEXPR_BETWEEN, enums.A_Expr_Kind.AEXPR_BETWEEN_SYM,
                enums.A_Expr_Kind.AEXPR_NOT_BETWEEN, enums.A_Expr_Kind.AEXPR_NOT_BETWEEN_SYM):
        return "between_low" if index == 0 else "between_high"
    if kind == enums.A_Expr_Kind.AEXPR_IN:
        return "in"
    if kind in (enums.A_Expr_Kind.AEXPR_LIKE, enums.A_Expr_Kind.AEXPR_ILIKE,
                enums.A_Expr_Kind.AEXPR_SIMILAR):
        return "like"
    if kind in (enums.A_Expr_Kind.AEXPR_DISTINCT, enums.A_Expr_Kind.AEXPR_NOT_DISTINCT):
        return "distinct"
    names = [n.sval for n in node.name or () if isinstance(n, ast.String)]
    op = str(names[-1]) if names else None
    return _MIRROR.get(op, op) if mirrored and op else op


def _returning(node: ast.Node) -> object:
    """RETURNING list (``returningList`` up to pglast 7, ``returningClause`` in 8)."""
    clause = getattr(node, "returningClause", None)
    if clause is not None:
        return getattr(clause, "exprs", clause)
    return getattr(node, "returningList", None)


def _target_key(relation: ast.RangeVar | None) -> str:
    """How the target table of INSERT/UPDATE is referred to: its alias or its name."""
    if relation is None:
        return ""
    return str(relation.alias.aliasname if relation.alias else relation.relname)


def _type_name(type_name: ast.TypeName | None) -> str | None:
    if type_name is None:
        return None
    names = [str(n.sval) for n in type_name.names or () if isinstance(n, ast.String)]
    if names and names[0] == "pg_catalog":
        names = names[1:]
    base = ".".join(names)
    return base + ("[]" if type_name.arrayBounds else "")


def analyze(sql: str) -> Shape:
    """Parse one statement and find what each ``$n`` stands for.

    Raises ParseFailure when the text is not one valid statement.
    """
    try:
        stmts = pglast.parse_sql(sql)
        raw_fp = pglast.fingerprint(sql)
    except pglast.parser.ParseError as exc:
        raise ParseFailure(str(exc)) from exc
    if len(stmts) != 1:
        raise ParseFailure(f"expected one statement, found {len(stmts)}")
    stmt = stmts[0].stmt
    kind = _KINDS.get(type(stmt), "utility")
    walker = _Walker()
    if kind != "utility":
        walker.walk(stmt, [])
    best: dict[int, ParamUse] = {}
    for use in walker.uses:
        cur = best.get(use.number)
        if cur is None or _ROLE_RANK[use.role] < _ROLE_RANK[cur.role]:
            best[use.number] = use
    return Shape(
        kind=kind,
        fingerprint=_salted(raw_fp, walker.tables),
        tables=tuple(walker.tables),
        uses=tuple(best[n] for n in sorted(best)),
        max_param=walker.max_param,
        locks_rows=walker.locks_rows,
        writes=walker.writes or kind == "merge",
    )


def _salted(raw: str, tables: Sequence[str]) -> str:
    """pglast's fingerprint made exact about relation names.

    libpg_query deliberately fingerprints ``events_202401`` and ``events_202402`` (and
    schemas ``tenant_0001``/``tenant_0002``) alike: relation names differing only in a
    trailing run of digits are one statement to it.  For a cutover they are different
    tables with different data and statistics, so the exact names are mixed in.
    """
    if not tables:
        return raw
    return hashlib.sha1(f"{raw}|{','.join(sorted(set(tables)))}".encode()).hexdigest()[:16]


def statement_fingerprint(sql: str) -> str:
    """The key that matches a statement across clusters, versions, logs and literal values."""
    return analyze(sql).fingerprint


@dataclass(frozen=True)
class TableColumns:
    """A relation as the catalog knows it: schema-qualified name and ordered columns."""

    qualified: str
    columns: Mapping[str, str]  # name -> type, in attnum order


def resolve(shape: Shape, catalog: Mapping[str, TableColumns], sql: str | None = None,
            ) -> tuple[tuple[Binding, ...], list[str]]:
    """Bind each ``$n`` to a schema-qualified column and a type using the catalog.

    ``catalog`` maps each relation name as written in the statement to its catalog
    entry.  A column pglast's scopes cannot place (behind a CTE or a subquery) is
    traced with sqlglot (``planguard.qualify``) when ``sql`` is given.  Returns the
    bindings and, for parameters that stay unbound, the reasons.
    """
    bindings: list[Binding] = []
    problems: list[str] = []
    by_number = {u.number: u for u in shape.uses}
    by_qualified = {t.qualified: t for t in catalog.values()}
    traced: dict[int, tuple[str, str]] | None = None
    for n in range(1, shape.max_param + 1):
        use = by_number.get(n)
        if use is None:
            problems.append(f"${n} does not appear in the statement")
            continue
        if use.role in ("limit", "offset"):
            bindings.append(Binding(n, use.role, type=use.cast or "bigint"))
            continue
        table: TableColumns | None = None
        column = use.column
        if use.position is not None and use.candidates:
            table = catalog.get(use.candidates[0])
            names = list(table.columns) if table else []
            column = names[use.position] if table and use.position < len(names) else None
        elif column is not None:
            for cand in use.candidates:
                entry = catalog.get(cand)
                if entry and column in entry.columns:
                    table = entry
                    break
            if table is None and sql is not None:
                if traced is None:
                    traced = qualify.trace(sql, {q: list(t.columns) for q, t in by_qualified.items()})
                if n in traced and traced[n][0] in by_qualified:
                    table, column = by_qualified[traced[n][0]], traced[n][1]
        if table is not None and column is not None and column in table.columns:
            col_type = table.columns[column]
            if use.role == "any" and not col_type.endswith("[]"):
                col_type += "[]"
            bindings.append(Binding(n, use.role, table.qualified, column, use.cast or col_type, use.op))
        elif use.cast:
            bindings.append(Binding(n, "cast", type=use.cast))
        else:
            where = f" column {column!r}" if column else ""
            problems.append(f"${n}{where} could not be bound to a table column or a type")
            bindings.append(Binding(n, "unbound"))
    return tuple(bindings), problems


_VOLATILE = {"now", "random", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
             "timeofday", "gen_random_uuid", "uuid_generate_v4", "nextval", "setseed", "txid_current",
             "pg_current_xact_id"}


@dataclass(frozen=True)
class ResultShape:
    """What the result of a SELECT can be compared on."""

    ordered: bool  # a top-level ORDER BY: the order of rows is part of the result
    deterministic: bool  # no LIMIT without ORDER BY, no volatile function: rows can be compared


def result_shape(sql: str) -> ResultShape | None:
    """How to compare a statement's rows between clusters; None for anything but a plain SELECT."""
    try:
        stmts = pglast.parse_sql(sql)
    except pglast.parser.ParseError:
        return None
    stmt = stmts[0].stmt if len(stmts) == 1 else None
    if not isinstance(stmt, ast.SelectStmt):
        return None
    walker = _Walker()
    walker.walk(stmt, [])
    if walker.writes or walker.locks_rows:
        return None
    ordered = bool(stmt.sortClause)
    volatile = False

    def visit(node: object) -> None:
        nonlocal volatile
        if isinstance(node, (list, tuple)):
            for item in node:
                visit(item)
        elif isinstance(node, ast.Node):
            if isinstance(node, ast.FuncCall):
                name = [n.sval for n in node.funcname or () if isinstance(n, ast.String)]
                volatile |= bool(name) and str(name[-1]).lower() in _VOLATILE
            elif isinstance(node, ast.SQLValueFunction):
                volatile = True  # CURRENT_TIMESTAMP, LOCALTIME, ...
            for slot in node.__slots__:  # type: ignore[attr-defined]
                visit(getattr(node, slot, None))

    visit(stmt)
    limited = stmt.limitCount is not None or stmt.limitOffset is not None
    return ResultShape(ordered=ordered, deterministic=not volatile and (ordered or not limited))
