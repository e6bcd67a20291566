"""Real parameter values from PostgreSQL server logs (pure: reads a file, no database).

Understands the three log formats: ``stderr`` (any ``log_line_prefix``), ``csvlog``
(read with the ``csv`` module) and ``jsonlog`` (PostgreSQL 15+, one JSON object per
line), and these messages:

- ``duration: 1.2 ms  execute <name>: SELECT ... $1`` with ``DETAIL:  parameters:
  $1 = '42'`` (``log_min_duration_statement`` with the extended protocol);
- ``duration: 1.2 ms  statement: SELECT ... 42`` (simple protocol: the values are the
  literals, read in order by PostgreSQL's own parser);
- ``auto_explain`` output in text or JSON format, with ``Query Parameters``
  (PostgreSQL 16+, ``auto_explain.log_parameter_max_length``).

Entries are matched to captured statements by pglast fingerprint, which ignores
literal values and parameter numbers.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pglast
from pglast import ast
from pglast.parser import scan

from planguard.errors import WorkloadError
from planguard.params import ParseFailure, statement_fingerprint

CSV_SEVERITY, CSV_MESSAGE, CSV_DETAIL, CSV_USER, CSV_DATABASE = 11, 13, 14, 1, 2
_DURATION = re.compile(r"^duration: (?P<ms>[\d.]+) ms\s+(?P<rest>.*)$", re.S)
# "bind" and "parse" lines repeat what "execute" logs: only executions count.
_STATEMENT = re.compile(r"^(?:execute|statement)(?: [^:]*)?: (?P<query>.*)$", re.S)
_PARAMS = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")
_STDERR = re.compile(r"^(?P<prefix>.*?)\b(?P<sev>LOG|DETAIL|STATEMENT|ERROR|WARNING|HINT|CONTEXT|NOTICE|"
                     r"FATAL|PANIC|INFO|DEBUG\d?):  (?P<msg>.*)$")


@dataclass(frozen=True)
class LogEntry:
    """One executed statement with the values it ran with."""

    fingerprint: str
    query: str
    values: tuple[str | None, ...]  # by parameter number: $1 is values[0]
    duration_ms: float | None = None
    database: str | None = None
    user: str | None = None


def parse_parameters(detail: str) -> dict[int, str | None]:
    """``$1 = '42', $2 = NULL`` -> {1: "42", 2: None} (quotes doubled inside are undone)."""
    out: dict[int, str | None] = {}
    for num, literal in _PARAMS.findall(detail):
        out[int(num)] = None if literal == "NULL" else literal[1:-1].replace("''", "'")
    return out


_CONSTANT_TOKENS = {"SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST"}
_VALUE_KEEPERS = {"IDENT", "SCONST", "USCONST", "BCONST", "XCONST", "ICONST", "FCONST", "ASCII_41"}


def _unquote(token: str) -> str | None:
    """A string constant token as its value, read by PostgreSQL's parser."""
    select = pglast.parse_sql(f"SELECT {token}")[0].stmt
    assert isinstance(select, ast.SelectStmt) and select.targetList
    val = select.targetList[0].val
    while isinstance(val, ast.TypeCast):
        val = val.arg
    if isinstance(val, ast.A_Const) and not val.isnull:
        inner = val.val
        for attr in ("sval", "bsval"):
            if hasattr(inner, attr):
                return str(getattr(inner, attr))
    return token


def _constants(query: str) -> tuple[str, tuple[str | None, ...]] | None:
    """Literal values of a statement in text order, and its fingerprint (simple protocol).

    Read from PostgreSQL's scanner: the order of the tokens is the order in which
    pg_stat_statements numbers the constants it replaces.  A minus right before a
    number belongs to it, as the parser folds it into the constant.
    """
    try:
        fp = statement_fingerprint(query)
        tokens = list(scan(query))
    except (pglast.parser.ParseError, ParseFailure):
        return None
    values: list[str | None] = []
    for i, tok in enumerate(tokens):
        text = query[tok.start:tok.end + 1]  # character offsets
        if tok.name in ("TRUE_P", "FALSE_P"):
            values.append("true" if tok.name == "TRUE_P" else "false")
        elif tok.name in ("ICONST", "FCONST"):
            unary = (i >= 1 and tokens[i - 1].name == "ASCII_45"
                     and (i < 2 or tokens[i - 2].name not in _VALUE_KEEPERS))
            values.append(("-" if unary else "") + text)
        elif tok.name in _CONSTANT_TOKENS:
            values.append(_unquote(text))
    return fp, tuple(values)


def _entry(message: str, detail: str | None, database: str | None,
           user: str | None, duration: float | None = None) -> LogEntry | None:
    m = _DURATION.match(message.strip())
    if m:
        duration = float(m.group("ms"))
    rest = m.group("rest") if m else message.strip()
    if rest.startswith("plan:"):
        return _auto_explain(rest[len("plan:"):], duration, database, user)
    s = _STATEMENT.match(rest)
    if not s:
        return None
    query = s.group("query").strip().rstrip(";")
    consts = _constants(query)
    if consts is None:
        return None
    # pg_stat_statements keeps the statement's own $1..$k and numbers the constants it
    # replaces after them, in text order: the values line up the same way.
    params = parse_parameters(detail or "")
    bound = tuple(params.get(i) for i in range(1, max(params) + 1)) if params else ()
    return LogEntry(consts[0], query, bound + consts[1], duration, database, user)


def _auto_explain(body: str, duration: float | None, database: str | None,
                  user: str | None) -> LogEntry | None:
    body = body.strip()
    query, params = None, ""
    if body.startswith("{"):
        try:
            doc = json.loads(body)
        except json.JSONDecodeError:
            return None
        query, params = doc.get("Query Text"), doc.get("Query Parameters") or ""
    else:
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("Query Text:"):
                query = line[len("Query Text:"):].strip()
            elif line.startswith("Query Parameters:"):
                params = line[len("Query Parameters:"):].strip()
    if not query:
        return None
    return _entry(f"statement: {query}", f"parameters: {params}" if params else None, database, user,
                  duration)


def _records_stderr(lines: Iterable[str]) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    """(message, detail, database, user) from stderr logs; continuation lines start with a tab."""
    message: list[str] | None = None  # the LOG entry being read
    detail: list[str] | None = None
    target: list[str] | None = None  # where continuation lines go
    for raw in lines:
        line = raw.rstrip("\n")
        if line.startswith("\t"):
            if target is not None:
                target.append(line[1:])
            continue
        m = _STDERR.match(line)
        if not m:
            continue
        severity, text = m.group("sev"), m.group("msg")
        if severity == "DETAIL" and message is not None:
            detail = target = [text]
            continue
        if message is not None:
            yield "\n".join(message), "\n".join(detail) if detail else None, None, None
        message = detail = target = None
        if severity == "LOG":
            message = target = [text]
    if message is not None:
        yield "\n".join(message), "\n".join(detail) if detail else None, None, None


def _format(path: Path, head: str) -> str:
    if path.suffix == ".json" or head.lstrip().startswith("{"):
        return "jsonlog"
    if path.suffix == ".csv":
        return "csvlog"
    return "stderr"


def read_log(path: Path) -> list[LogEntry]:
    """Every executed statement with its values found in a server log."""
    try:
        with path.open(newline="", errors="replace") as f:
            head = f.read(4096)
            f.seek(0)
            fmt = _format(path, head)
            records: Iterable[tuple[str, str | None, str | None, str | None]]
            if fmt == "csvlog":
                records = ((r[CSV_MESSAGE], r[CSV_DETAIL] or None, r[CSV_DATABASE] or None,
                            r[CSV_USER] or None)
                           for r in csv.reader(f) if len(r) > CSV_DETAIL and r[CSV_SEVERITY] == "LOG")
            elif fmt == "jsonlog":
                records = _json_records(f)
            else:
                records = _records_stderr(f)
            entries = [e for rec in records if (e := _entry(*rec)) is not None]
    except OSError as exc:
        raise WorkloadError(f"cannot read log {path}: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise WorkloadError(f"{path} is not a valid csvlog: {exc}") from exc
    return entries


def _json_records(lines: Iterable[str]) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"jsonlog line {n} is not JSON: {exc.msg}") from exc
        if doc.get("error_severity") == "LOG" and "message" in doc:
            yield doc["message"], doc.get("detail"), doc.get("dbname"), doc.get("user")
