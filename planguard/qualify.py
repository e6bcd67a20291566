"""Schema-aware column tracing with sqlglot, where pglast's scopes stop (pure).

pglast tells which column a ``$n`` is compared with as written: ``r.email = $2``.
When ``r`` is a CTE or a subquery (``WITH recent AS (SELECT * FROM users ...)``),
the base table column behind it needs the schema: sqlglot's qualifier expands
``*`` and qualifies every column from a schema read from the old cluster's
catalog, and ``trace`` follows the projections down to a base table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pglast
import sqlglot
from pglast import ast
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope
from sqlglot.schema import MappingSchema

# Predicates whose other side is the column a parameter is compared with.
_PREDICATES = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.ILike,
               exp.NullSafeEQ, exp.NullSafeNEQ, exp.Between, exp.In)


def _param_locations(node: object, out: list[int]) -> None:
    if isinstance(node, (list, tuple)):
        for item in node:
            _param_locations(item, out)
    elif isinstance(node, ast.Node):
        if isinstance(node, ast.ParamRef) and node.location is not None:
            out.append(node.location)
        for slot in node.__slots__:  # type: ignore[attr-defined]
            _param_locations(getattr(node, slot, None), out)


def space_params(sql: str) -> str:
    """``$n`` followed by a space, so sqlglot never reads ``$1,$2`` as a dollar quote.

    Positions come from PostgreSQL's own parser, so string literals are untouched.
    """
    locations: list[int] = []
    _param_locations(pglast.parse_sql(sql), locations)
    raw = sql.encode()
    for loc in sorted(set(locations), reverse=True):
        end = loc + 1
        while end < len(raw) and raw[end:end + 1].isdigit():
            end += 1
        raw = raw[:end] + b" " + raw[end:]
    return raw.decode()


def _compared_column(param: exp.Parameter) -> exp.Column | None:
    node: exp.Expression = param
    parent = node.parent
    while isinstance(parent, (exp.Cast, exp.Paren, exp.Any, exp.Array)):
        node, parent = parent, parent.parent
    if isinstance(parent, _PREDICATES):
        for side in (parent.this, parent.args.get("expression")):
            while isinstance(side, (exp.Cast, exp.Paren)):
                side = side.this
            if isinstance(side, exp.Column):
                return side
    return None


def _resolve(scope: Scope, column: exp.Column, depth: int = 0) -> tuple[str, str] | None:
    if depth > 20:
        return None
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        return f"{source.db}.{source.name}" if source.db else source.name, column.name
    if isinstance(source, Scope):
        query = source.expression
        if isinstance(query, exp.SetOperation):  # UNION: the first branch names the columns
            query = query.this
        for select in getattr(query, "selects", []):
            if select.alias_or_name == column.name:
                inner = select.unalias()
                if isinstance(inner, exp.Column):
                    inner_scope = next((s for s in source.traverse() if inner in s.columns), source)
                    return _resolve(inner_scope, inner, depth + 1)
    return None


def trace(sql: str, tables: Mapping[str, Sequence[str]], default_schema: str = "public",
          ) -> dict[int, tuple[str, str]]:
    """For each ``$n`` compared with a column: the base (table, column) it comes from.

    ``tables`` maps schema-qualified table names to their columns.  Statements sqlglot
    cannot parse or qualify give an empty result; the caller keeps pglast's answer.
    """
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for qualified, columns in tables.items():
        sch, _, name = qualified.rpartition(".")
        schema.setdefault(sch or default_schema, {})[name] = {c: "text" for c in columns}
    try:
        tree = sqlglot.parse_one(space_params(sql), read="postgres")
        mapping = MappingSchema(schema, dialect="postgres")  # type: ignore[arg-type]
        tree = qualify(tree, schema=mapping, dialect="postgres", db=default_schema,
                       validate_qualify_columns=False, identify=False)
        root = build_scope(tree)
    except (SqlglotError, pglast.parser.ParseError, ValueError, KeyError):
        return {}
    if root is None:
        return {}
    scopes = list(root.traverse())
    found: dict[int, tuple[str, str]] = {}
    for param in tree.find_all(exp.Parameter):
        column = _compared_column(param)
        if column is None or not param.name.isdigit():
            continue
        scope = next((s for s in scopes if any(c is column for c in s.columns)), None)
        resolved = _resolve(scope, column) if scope else None
        if resolved:
            found[int(param.name)] = resolved
    return found
