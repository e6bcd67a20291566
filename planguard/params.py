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

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
_ROLE_RANK = {"compare": 0, "any": 1, "json_value": 1, "set": 2, "insert": 2, "arith": 3, "limit": 3,
              "offset": 3, "json_key": 4, "func": 4, "case": 5, "cast": 6, "unbound": 7}
ARITHMETIC = {"+", "-", "*", "/", "%", "^"}
JSON_PATH = {"->", "->>", "#>", "#>>"}
JSON_KEYS = {"?", "?|", "?&"}
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
    func: str | None = None  # role "func": the function ($n is its argument ``arg``)
    arg: int | None = None
    term: int | None = None  # role "arith": the term's place in its sum or product (0: leading)
    arith: str | None = None  # role "arith": the operator joining the term (+, -, *, /, ...)
    key: int | None = None  # role "json_value": the $n holding the JSON key
    inline: bool = False  # PostgreSQL's grammar takes no parameter here (``date $1``): inline it


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
    def _param(self, node: object) -> _Param | None:
        """The parameter when ``node`` is ``$n``, ``$n::type``, ``CAST($n AS type)`` or the
        typed literal ``type $n`` (which PostgreSQL's grammar takes only with a string)."""
        if isinstance(node, ast.ParamRef):
            return _Param(int(node.number or 0), None)
        if isinstance(node, ast.TypeCast) and isinstance(node.arg, ast.ParamRef):
            name = node.typeName
            before = name is not None and (name.location or -1) >= 0 and \
                (name.location or 0) < (node.arg.location or 0)
            return _Param(int(node.arg.number or 0), _type_name(name), inline=before)
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

    def _use(self, p: _Param | int, role: str, scope: Sequence[Frame],
             column: tuple[str | None, str] | None = None,
             cast: str | None = None, position: int | None = None, op: str | None = None,
             **context: Any) -> None:
        if isinstance(p, _Param):
            number, cast, context["inline"] = p.number, p.cast, p.inline or context.get("inline", False)
        else:
            number = p
        self.max_param = max(self.max_param, number)
        if column is None:
            self.uses.append(ParamUse(number, role, cast=cast, position=position,
                                      candidates=self._candidates(scope), op=op, **context))
            return
        qualifier, candidates = self._lookup(column[0], scope)
        self.uses.append(ParamUse(number, role, column=column[1], qualifier=qualifier,
                                  candidates=candidates, cast=cast, op=op, **context))

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
                self._use(p, role, inner)
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
                        self._use(p, "insert", inner, column=(target_key, cols[i]))
                    elif p:
                        self._use(p, "insert", inner, position=i)
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
                self._use(p, "set", inner, column=(target_key, target.name))
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
                    self._use(p, "set", scope, column=(target_key, target.name))
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
        name = _op_name(node)
        if kind == enums.A_Expr_Kind.AEXPR_OP and name in ARITHMETIC:
            self._arith(node, scope, None)
            return
        if kind == enums.A_Expr_Kind.AEXPR_OP and name in JSON_PATH | JSON_KEYS:
            col, p = self._column(node.lexpr), self._param(node.rexpr)
            if col and p:  # data ->> $1, data ? $1: a key of the JSON column
                self._use(p, "json_key", scope, column=col, op=name)
                return
        if kind in _ARRAY_KINDS:
            col, p = self._column(node.lexpr), self._param(node.rexpr)
            if col and p:
                self._use(p, "any", scope, column=col, op="in")
                return
        elif kind in _COMPARE_KINDS:
            for col_side, other in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
                json = self._json_field(col_side)
                col = json[0] if json else self._column(col_side)
                if not col:
                    continue
                items = other if isinstance(other, (list, tuple)) else [other]
                params = [self._param(x) for x in items]
                if params and all(params):
                    if json:  # data ->> $1 = $2
                        self._use(json[1], "json_key", scope, column=col, op=json[2])
                    for i, p in enumerate(params):
                        assert p is not None
                        op = _operator(node, i, mirrored=col_side is node.rexpr)
                        if json:
                            self._use(p, "json_value", scope, column=col, op=op, key=json[1].number)
                        else:  # sum(x) > $1: compared with an aggregate of the column, not a value
                            self._use(p, "compare", scope, column=col, op=op, func=_aggregate(col_side))
                    return
                if not json and _is_arith(other):  # l_quantity <= $8 + $9
                    self._arith(other, scope, (col, _operator(node, 0, mirrored=col_side is node.rexpr)))
                    return
        self.walk(node.lexpr, scope)
        self.walk(node.rexpr, scope)

    def _json_field(self, node: object) -> tuple[tuple[str | None, str], _Param, str] | None:
        """(column, key parameter, operator) when ``node`` is ``col ->> $n`` (or ``->``, ...)."""
        if isinstance(node, ast.TypeCast):
            return self._json_field(node.arg)
        if isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP:
            op = _op_name(node)
            col, p = self._column(node.lexpr), self._param(node.rexpr)
            if op in JSON_PATH and col and p:
                return col, p, str(op)
        return None

    def _arith(self, node: object, scope: list[Frame],
               compared: tuple[tuple[str | None, str], str | None] | None) -> None:
        """Parameters in a sum or product.  Compared with a column (``col <= $8 + $9``), the
        leading term stands for the column's value and the others are offsets; else every
        parameter term is an offset or a factor, typed by a column operand when there is one."""
        terms = _terms(node)
        operand = next((c for t, _ in terms if (c := self._column(t))), None)
        for i, (term, op) in enumerate(terms):
            p = self._param(term)
            if p is None:
                if _is_arith(term):
                    self._arith(term, scope, None)  # a chain of another precedence: b - c in a * (b - c)
                else:
                    self.walk(term, scope)
                continue
            joined = op or (terms[1][1] if len(terms) > 1 else "+")
            if compared is not None:
                self._use(p, "arith", scope, column=compared[0], op=compared[1], term=i, arith=joined)
            else:
                self._use(p, "arith", scope, column=operand, term=i, arith=joined)

    def _func(self, node: ast.FuncCall, scope: list[Frame]) -> None:
        """Arguments of a function call: ``date_trunc($1, col)``, ``substring(col FROM $1 FOR $2)``."""
        name = _func_name(node)
        args = list(node.args or ())
        column = next((c for a in args if (c := self._column(a))), None)
        for i, arg in enumerate(args):
            p = self._param(arg)
            if p is None:
                self.walk(arg, scope)
                continue
            # EXTRACT(field FROM x) takes its field as a word or a string, never a parameter.
            sql_syntax = node.funcformat == enums.CoercionForm.COERCE_SQL_SYNTAX
            inline = name == "extract" and i == 0 and sql_syntax
            self._use(p, "func", scope, column=column, func=name, arg=i, inline=inline)
        for slot in ("agg_order", "agg_filter", "over"):
            self.walk(getattr(node, slot, None), scope)

    def _case(self, node: ast.CaseExpr, scope: list[Frame]) -> None:
        """CASE: ``CASE col WHEN $1`` compares; ``THEN $2`` / ``ELSE $3`` are constants."""
        col = self._column(node.arg) if node.arg is not None else None
        if node.arg is not None and col is None:
            self.walk(node.arg, scope)
        for when in node.args or ():
            p = self._param(when.expr)
            if col and p:
                self._use(p, "compare", scope, column=col, op="=")
            else:
                self.walk(when.expr, scope)
            self._constant(when.result, scope, 0)
        self._constant(node.defresult, scope, 1)

    def _constant(self, node: object, scope: list[Frame], branch: int) -> None:
        p = self._param(node)
        if p:
            self._use(p, "case", scope, func="case", arg=branch)  # arg 0: THEN, 1: ELSE
        else:
            self.walk(node, scope)

    def _coalesce(self, node: ast.CoalesceExpr | ast.MinMaxExpr, scope: list[Frame]) -> None:
        """``coalesce(sum(x), $1)``, ``greatest(x, $1)``: a default or a bound, not a filter."""
        column = next((c for a in node.args or () if (c := self._column(a))), None)
        name = "coalesce" if isinstance(node, ast.CoalesceExpr) else "greatest"
        for i, arg in enumerate(node.args or ()):
            p = self._param(arg)
            if p:
                self._use(p, "case", scope, column=column, func=name, arg=i)
            else:
                self.walk(arg, scope)

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
            ast.A_Expr: self._a_expr, ast.FuncCall: self._func, ast.CaseExpr: self._case,
            ast.CoalesceExpr: self._coalesce, ast.MinMaxExpr: self._coalesce,
        }.get(type(node))
        if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            self.writes = True
        if handler:
            handler(node, scope)  # type: ignore[operator]
            return
        p = self._param(node)
        if p:
            self._use(p, "cast" if p.cast else "unbound", scope)
            return
        for slot in node.__slots__:  # type: ignore[attr-defined]
            self.walk(getattr(node, slot, None), scope)


@dataclass(frozen=True)
class _Param:
    number: int
    cast: str | None
    inline: bool = False


def _op_name(node: ast.A_Expr) -> str | None:
    names = [n.sval for n in node.name or () if isinstance(n, ast.String)]
    return str(names[-1]) if names else None


def _func_name(node: ast.FuncCall) -> str:
    names = [str(n.sval) for n in node.funcname or () if isinstance(n, ast.String)]
    return names[-1].lower() if names else ""


def _aggregate(node: object) -> str | None:
    """``sum`` or ``count`` when ``node`` is one of them over a column: another scale than a row's."""
    if isinstance(node, ast.TypeCast):
        return _aggregate(node.arg)
    if isinstance(node, ast.FuncCall) and _func_name(node) in ("sum", "count"):
        return _func_name(node)
    return None


def _is_arith(node: object) -> bool:
    if isinstance(node, ast.TypeCast):
        return _is_arith(node.arg)
    return isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP and \
        _op_name(node) in ARITHMETIC


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "%": 2, "^": 3}


def _terms(node: object) -> list[tuple[object, str]]:
    """The operands of a chain of arithmetic of one precedence (``a - b + c``, ``a * b / c``),
    each with the operator before it ("" for the first); an operand of another precedence
    (``a * (b - c)``: ``b - c``) is one operand, a chain of its own."""
    if isinstance(node, ast.TypeCast) and _is_arith(node.arg):
        return _terms(node.arg)
    if not _is_arith(node):
        return [(node, "")]
    assert isinstance(node, ast.A_Expr)
    op = _op_name(node) or ""
    level = _PRECEDENCE.get(op)

    def side(child: object) -> list[tuple[object, str]]:
        inner = child.arg if isinstance(child, ast.TypeCast) else child
        same = _is_arith(inner) and _PRECEDENCE.get(_op_name(inner) or "") == level  # type: ignore[arg-type]
        return _terms(child) if same else [(child, "")]

    left = side(node.lexpr) if node.lexpr is not None else []
    right = side(node.rexpr)
    return left + [(t, o or op) if i == 0 else (t, o) for i, (t, o) in enumerate(right)]


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
    op = _op_name(node)
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
        context: dict[str, Any] = {"func": use.func, "arg": use.arg, "term": use.term,
                                   "arith": use.arith, "key": use.key, "inline": use.inline}
        own = FUNC_ARG_TYPES.get((use.func or "", use.arg if use.arg is not None else -1))
        if table is not None and column is not None and column in table.columns:
            col_type = table.columns[column]
            if use.role == "any" and not col_type.endswith("[]"):
                col_type += "[]"
            if use.role == "func":  # the column is context (its text, its dates), not the type
                col_type = own or use.cast or ""
            elif use.role in ("json_key", "json_value"):
                col_type = "text"
            bindings.append(Binding(n, use.role, table.qualified, column, use.cast or col_type or None,
                                    use.op, **context))
        elif use.role in ("arith", "func", "case", "json_key", "json_value"):
            bindings.append(Binding(n, use.role, type=use.cast or own, op=use.op, **context))
        elif use.cast:
            bindings.append(Binding(n, "cast", type=use.cast, inline=use.inline))
        else:
            where = f" column {column!r}" if column else ""
            problems.append(f"${n}{where} could not be placed: its value is a default of its type")
            bindings.append(Binding(n, "unbound"))
    return tuple(bindings), problems


# Arguments whose type the function's meaning fixes, whatever overload PostgreSQL would pick
# for an untyped parameter (``substring(t FROM $1 FOR $2)`` resolves to the regex form).
FUNC_ARG_TYPES = {
    ("substring", 1): "integer", ("substring", 2): "integer", ("substr", 1): "integer",
    ("substr", 2): "integer", ("left", 1): "integer", ("right", 1): "integer", ("lpad", 1): "integer",
    ("rpad", 1): "integer", ("repeat", 1): "integer", ("round", 1): "integer", ("trunc", 1): "integer",
    ("split_part", 1): "text", ("split_part", 2): "integer", ("date_trunc", 0): "text",
    ("date_part", 0): "text", ("extract", 0): "text", ("to_char", 1): "text",
    ("overlay", 2): "integer", ("overlay", 3): "integer", ("position", 0): "text",
}


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


@functools.lru_cache(maxsize=4096)
def _param_spots(sql: str) -> tuple[tuple[int, int, int], ...]:
    """(byte offset, byte length, number) of every ``$n`` in ``sql``, as the parser sees them."""
    spots: list[tuple[int, int, int]] = []

    def visit(node: object) -> None:
        if isinstance(node, (list, tuple)):
            for item in node:
                visit(item)
        elif isinstance(node, ast.Node):
            if isinstance(node, ast.ParamRef) and node.location is not None and node.location >= 0:
                number = int(node.number or 0)
                spots.append((node.location, len(f"${number}"), number))
            for slot in node.__slots__:  # type: ignore[attr-defined]
                visit(getattr(node, slot, None))

    visit(pglast.parse_sql(sql))
    return tuple(sorted(set(spots)))


def quote_literal(value: str | None) -> str:
    """A value as an SQL string literal (``standard_conforming_strings = on``), or NULL."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def render(sql: str, bindings: Sequence[Binding], values: Sequence[str | None],
           ) -> tuple[str, tuple[str | None, ...]]:
    """The statement as it is sent to a server, and the values to bind to it.

    Parameters where PostgreSQL's grammar takes no parameter (``date $1``,
    ``extract($1 FROM x)``: pg_stat_statements normalized a literal there) are written in as
    string literals; the others are renumbered in order and cast to the type OLD's server
    gave them (``Binding.param_type``), so untyped text values bind as they did there.
    Without such bindings the statement and values are returned as they are.
    """
    by_number = {b.number: b for b in bindings}
    if not any(b.inline or b.param_type for b in bindings):
        return sql, tuple(values)
    inline = {n for n, b in by_number.items() if b.inline}
    kept = [n for n in range(1, len(values) + 1) if n not in inline]
    renumber = {n: i for i, n in enumerate(kept, 1)}
    raw = sql.encode()
    out: list[bytes] = []
    pos = 0
    for offset, length, number in _param_spots(sql):
        out.append(raw[pos:offset])
        pos = offset + length
        b = by_number.get(number)
        if number in inline:
            out.append(quote_literal(values[number - 1] or "").encode())
        elif number in renumber:
            text = f"${renumber[number]}"
            out.append((f"{text}::{b.param_type}" if b is not None and b.param_type else text).encode())
        else:
            out.append(raw[offset:offset + length])
    out.append(raw[pos:])
    return b"".join(out).decode(), tuple(values[n - 1] for n in kept)
