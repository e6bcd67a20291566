"""The workload: statements captured from the old cluster, and its versioned file format.

A workload file is JSON with ``"format_version": 1``.  It holds each statement's
normalized text, its pglast fingerprint (the key that matches statements across
clusters and versions, unlike ``queryid``), production call statistics, how each
``$n`` parameter is bound, executable parameter sets, and a snapshot of the old
cluster's catalog (``catalog``: the readiness snapshot of every database it ran in).  It
never holds a password.  Files of format 1 written before the catalog snapshot held
everything also carry ``tables`` and ``indexes``; they are ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planguard.errors import WorkloadError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Binding:
    """What a ``$n`` parameter stands for.

    ``role`` is ``compare`` (``col <op> $n``), ``any`` (``col = ANY($n)``: an array),
    ``set`` / ``insert`` (a value written into ``column``), ``limit``, ``offset``, ``arith``
    (a term of a sum or product: ``col <= $8 + $9``, ``$1 * sum(x)``), ``func`` (a function
    argument: ``date_trunc($1, col)``), ``case`` (a constant result: ``THEN $3``,
    ``coalesce(x, $2)``), ``json_key`` / ``json_value`` (``data ->> $1 = $2``), ``cast``
    (only a type is known, from ``$n::type``) or ``unbound``.
    """

    number: int
    role: str
    table: str | None = None
    column: str | None = None
    type: str | None = None
    op: str | None = None  # how a compared column is compared: =, <, >=, in, like, between_low, ...
    # Where the parameter sits, for the roles that are not a plain comparison:
    func: str | None = None  # "func": it is argument ``arg`` of this function
    arg: int | None = None
    term: int | None = None  # "arith": its place in a sum or product (0: the leading term)
    arith: str | None = None  # "arith": the operator joining it (+, -, *, /)
    key: int | None = None  # "json_value": the parameter holding the JSON key
    inline: bool = False  # the grammar takes no parameter here (``date $1``): sent as a literal
    param_type: str | None = None  # the type OLD's server gave it (PREPARE): what it is cast to


@dataclass(frozen=True)
class ParamSet:
    """One executable set of parameter values, as text (``None`` is SQL NULL).

    ``sources`` says where each value came from, aligned with ``values``: ``sampled``,
    ``pg_stats most common``, ``log: ...``, or ``inferred: ...`` for a guess (a neutral addend,
    a type's default, a canonical date_trunc field): a reviewer sees which timings rest on one.
    """

    label: str
    values: tuple[str | None, ...]
    sources: tuple[str, ...] = ()

    @property
    def guessed(self) -> tuple[int, ...]:
        """Numbers ($n) of the values that are guesses rather than real data."""
        return tuple(i for i, src in enumerate(self.sources, 1) if is_guess(src))


def is_guess(source: str) -> bool:
    return source.startswith(("inferred", "default"))


@dataclass(frozen=True)
class Statement:
    fingerprint: str
    query: str
    kind: str  # select, insert, update, delete, merge
    calls: int = 0
    total_ms: float = 0.0
    mean_ms: float = 0.0
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    calls_per_second: float | None = None
    database: str | None = None
    users: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    bindings: tuple[Binding, ...] = ()
    param_sets: tuple[ParamSet, ...] = ()
    skip_reason: str | None = None
    name: str | None = None  # given in a hand-written .sql workload
    # OLD's plan at capture time (plain EXPLAIN of the first parameter set, or the generic plan:
    # nothing executed), as EXPLAIN (FORMAT JSON) prints its one element: what the post-cutover
    # watch compares NEW's plan with when OLD is gone.  Expressions redacted with --redact.
    plan: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def is_write(self) -> bool:
        return self.kind != "select"

    @property
    def rows_per_call(self) -> float | None:
        """What one call returned (or changed) on OLD on average, per pg_stat_statements."""
        return self.rows / self.calls if self.calls else None

    @property
    def buffers_per_call(self) -> float | None:
        """Shared buffers (hit and read) one call touched on OLD on average."""
        return (self.shared_blks_hit + self.shared_blks_read) / self.calls if self.calls else None

    @property
    def short_id(self) -> str:
        return self.fingerprint[:8]

    @property
    def key(self) -> str:
        """Unique within a workload: the same statement may run in several databases."""
        return f"{self.database}:{self.fingerprint}" if self.database else self.fingerprint


@dataclass(frozen=True)
class Source:
    server_version: str
    server_version_num: int
    database: str
    dsn: str  # redacted: no password
    captured_at: str
    stats_reset: str | None = None
    stats_window_seconds: float | None = None


@dataclass(frozen=True)
class Workload:
    source: Source
    statements: tuple[Statement, ...]
    format_version: int = FORMAT_VERSION
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Captured with --redact: reports never show values; without --keep-values the file
    # holds none either, and compare samples them from OLD again when it runs.
    redacted: bool = False
    # OLD's catalog at capture time per database (planguard.checks.readiness.ClusterSnapshot
    # as a dict): sequence values, planner settings, index usage, statistics.
    catalog: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """``executable N of M``, and how many rest partly on guessed values."""
        runnable = [s for s in self.statements if not s.skip_reason]
        guessed = sum(1 for s in runnable if any(p.guessed for p in s.param_sets))
        return (f"executable {len(runnable)} of {len(self.statements)}"
                + (f"; {guessed} with some guessed values (their sources say which)" if guessed else ""))

    @property
    def databases(self) -> tuple[str, ...]:
        """The databases the statements run in (the capture database when none is named)."""
        names = {s.database or self.source.database for s in self.statements}
        return tuple(sorted(n for n in names if n is not None))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")


def _tuple_of(cls: Any, items: list[dict[str, Any]] | None, ctx: str) -> tuple[Any, ...]:
    out = []
    for item in items or []:
        try:
            out.append(cls(**item))
        except TypeError as exc:
            raise WorkloadError(f"{ctx}: unexpected entry {item!r}: {exc}") from exc
    return tuple(out)


def from_dict(data: dict[str, Any], origin: str = "workload") -> Workload:
    """Build a Workload from its JSON form, checking the format version."""
    if not isinstance(data, dict):
        raise WorkloadError(f"{origin}: not a planguard workload (expected a JSON object)")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise WorkloadError(
            f"{origin}: format_version {version!r} is not supported (this planguard reads "
            f"{FORMAT_VERSION}); capture the workload again with this version"
        )
    try:
        statements = []
        for s in data["statements"]:
            s = dict(s)
            s["bindings"] = _tuple_of(Binding, s.get("bindings"), origin)
            s["param_sets"] = tuple(
                ParamSet(p["label"], tuple(p["values"]), tuple(p.get("sources") or ()))
                for p in s.get("param_sets") or []
            )
            s["users"] = tuple(s.get("users") or ())
            s["tables"] = tuple(s.get("tables") or ())
            statements.append(Statement(**s))
        return Workload(
            source=Source(**data["source"]),
            statements=tuple(statements),
            notes=tuple(data.get("notes") or ()),
            redacted=bool(data.get("redacted", False)),
            catalog=dict(data.get("catalog") or {}),
        )
    except (KeyError, TypeError) as exc:
        raise WorkloadError(f"{origin}: malformed workload ({exc!r})") from exc


def load_json(path: Path) -> Workload:
    """Read a workload file written by capture (JSON); clear errors."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise WorkloadError(f"cannot read workload {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{path} is not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    return from_dict(data, origin=str(path))
