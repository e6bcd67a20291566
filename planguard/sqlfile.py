"""Workloads written by hand: ``workloads/NAME.sql`` (pure).

One statement per entry, separated by ``;``.  Comment lines right before a
statement may name it and give parameter sets, as SQL literals::

    -- planguard: database=app          (once, first line: the database to run in)

    -- name: tenant listing
    -- params typical: 42, 'settled', 50
    -- params heavy hitter: 1, 'settled', 50
    SELECT id FROM transactions WHERE tenant_id = $1 AND status = $2
    ORDER BY created_at DESC LIMIT $3;

Literals are read by PostgreSQL's own parser (``'it''s'``, ``NULL``,
``'2024-01-01'::date``, ``-5``).  A statement with ``$n`` and no ``params`` line is
kept: its generic plans are compared without executing it.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pglast
from pglast import ast
from pglast.parser import split

from planguard.errors import WorkloadError
from planguard.params import ParseFailure, analyze
from planguard.workload import ParamSet, Source, Statement, Workload

_HEADER = re.compile(r"^--\s*planguard:\s*(.*)$")
_NAME = re.compile(r"^--\s*name:\s*(.+?)\s*$")
_PARAMS = re.compile(r"^--\s*params(?:\s+([^:]+?))?\s*:\s*(.*)$")


def _literal(node: object, where: str) -> str | None:
    if isinstance(node, ast.TypeCast):
        return _literal(node.arg, where)
    if isinstance(node, ast.A_Const):
        if node.isnull:
            return None
        val = node.val
        for attr in ("sval", "fval", "ival", "boolval", "bsval"):
            if hasattr(val, attr):
                v = getattr(val, attr)
                return ("true" if v else "false") if isinstance(v, bool) else str(v)
    raise WorkloadError(f"{where}: parameter values must be SQL literals ('text', 42, NULL, ...)")


def parse_values(text: str, where: str) -> tuple[str | None, ...]:
    """``1, 'settled', NULL`` -> ("1", "settled", None), read by PostgreSQL's parser."""
    try:
        stmts = pglast.parse_sql(f"SELECT {text}")
    except pglast.parser.ParseError as exc:
        raise WorkloadError(f"{where}: cannot read parameter values {text!r}: {exc}") from exc
    select = stmts[0].stmt
    assert isinstance(select, ast.SelectStmt)
    return tuple(_literal(t.val, where) for t in select.targetList or ())


def load_sql(path: Path) -> Workload:
    """A Workload from a ``.sql`` file; a WorkloadError names the line that is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkloadError(f"cannot read workload {path}: {exc.strerror or exc}") from exc
    database = ""
    statements: list[Statement] = []
    try:  # the whole file through PostgreSQL's parser first: an error names its line
        pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        message, location = (*exc.args, 0)[:2] if exc.args else (str(exc), 0)
        where = text.count("\n", 0, max(int(location or 0), 0)) + 1
        raise WorkloadError(f"{path}:{where}: not valid SQL: {message}") from exc
    for piece in split(text, with_parser=False, only_slices=True):  # character offsets
        chunk = text[piece]
        line_no = text.count("\n", 0, piece.start) + 1
        comments = [ln.strip() for ln in chunk.splitlines() if ln.strip().startswith("--")]
        body = "\n".join(ln for ln in chunk.splitlines() if not ln.strip().startswith("--")).strip()
        name: str | None = None
        sets: list[ParamSet] = []
        for c in comments:
            if m := _HEADER.match(c):
                for item in m.group(1).split():
                    key, _, value = item.partition("=")
                    if key == "database":
                        database = value
            elif m := _NAME.match(c):
                name = m.group(1)
            elif m := _PARAMS.match(c):
                label = (m.group(1) or f"set {len(sets) + 1}").strip()
                sets.append(ParamSet(label, parse_values(m.group(2), f"{path}:{line_no}")))
        if not body:
            continue
        try:
            shape = analyze(body)
        except ParseFailure as exc:
            raise WorkloadError(f"{path}:{line_no}: not a valid statement: {exc}") from exc
        if shape.kind == "utility":
            raise WorkloadError(f"{path}:{line_no}: only SELECT, INSERT, UPDATE, DELETE and MERGE "
                                "can be compared")
        for ps in sets:
            if len(ps.values) != shape.max_param:
                raise WorkloadError(f"{path}:{line_no}: params {ps.label!r} has {len(ps.values)} "
                                    f"values, the statement has {shape.max_param} parameters")
        reason = None
        if shape.max_param and not sets:
            reason = "no '-- params' line in the workload file"
        statements.append(Statement(
            fingerprint=shape.fingerprint, query=body, kind=shape.kind, calls=0,
            tables=shape.tables, param_sets=tuple(sets), skip_reason=reason,
            name=name,
        ))
    if not statements:
        raise WorkloadError(f"{path}: no statement found")
    mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    source = Source(server_version="", server_version_num=0, database=database,
                    dsn=f"file {path.name}", captured_at=mtime)
    return Workload(source=source, statements=tuple(statements),
                    notes=(f"written by hand in {path.name}",))
