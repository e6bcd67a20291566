"""Sequences behind the data, or running out of room.

Why it matters: logical replication copies rows but not sequences, and a restore
copies a sequence's value as it was at dump time.  A NEW whose sequence is behind
the rows it holds, or behind what OLD already handed out, fails every INSERT that
draws a duplicate id: the postmortem's duplicate-primary-key failure.  A sequence
near the end of its type, or wider than the column it feeds (a ``bigint`` sequence
into an ``integer`` column), stops inserts when it gets there.

Kinds:

``sequence_behind`` (blocker)
    for a sequence owned by or serving a column (serial, identity, or a
    ``nextval()`` default, found through ``pg_depend``), NEW's next value is not past
    ``max(column)`` on NEW, or not past OLD's ``last_value`` (compare once writes to
    OLD are frozen).  ``max(column)`` is read only when it is cheap: through a btree
    index on the column, or on a table smaller than ``max_scan_bytes``; otherwise a
    ``check_skipped`` finding says so.
    Fix: ``SELECT setval('schema.seq', (SELECT max(col) FROM schema.tbl));``.
``sequence_capacity`` (warning; info when only wider than its column)
    ``sequence_capacity_fraction`` of the range is used, counting up to the smaller
    of the sequence's maximum and its column type's, or the sequence is wider than
    its column.  Fix: ``ALTER TABLE ... ALTER COLUMN ... TYPE bigint;`` and
    ``ALTER SEQUENCE ... AS bigint;``.

Reading a sequence needs SELECT on it, ``max(column)`` SELECT on the table
(``pg_read_all_data`` gives both on PostgreSQL 14+); without them a
``check_skipped`` finding names the grant.
"""

from __future__ import annotations

from dataclasses import dataclass

from planguard.config import Thresholds
from planguard.findings import (
    CHECK_SKIPPED,
    SEQUENCE_BEHIND,
    SEQUENCE_CAPACITY,
    Finding,
    Subject,
    listing,
    sql_literal,
)

DEFAULT_MAX_SCAN_BYTES = 128 << 20  # read max(column) without an index only below this size

TYPE_MAX = {"smallint": 2**15 - 1, "integer": 2**31 - 1, "bigint": 2**63 - 1}


@dataclass(frozen=True)
class ServedColumn:
    """A column a sequence fills, and its largest value (smallest for descending sequences)."""

    table: str  # schema-qualified, quoted
    column: str  # quoted
    column_type: str  # format_type
    how: str  # "owned" (serial / OWNED BY), "identity" or "default" (nextval() default only)
    extreme: int | None = None  # max(column), min(column) for a descending sequence; None: not read
    skipped: str | None = None  # why it was not read
    needs_privilege: bool = False  # ... because this role may not SELECT the column


@dataclass(frozen=True)
class SequenceInfo:
    name: str  # schema-qualified, quoted
    data_type: str  # smallint, integer, bigint
    start: int
    increment: int
    min_value: int
    max_value: int
    cycle: bool
    readable: bool  # this role may SELECT the sequence
    last_value: int | None  # None when not readable
    is_called: bool | None
    columns: tuple[ServedColumn, ...] = ()

    @property
    def issued(self) -> int | None:
        """The last value nextval() returned, None when none was (or it is not readable)."""
        return self.last_value if self.is_called else None

    @property
    def next_value(self) -> int | None:
        if self.last_value is None:
            return None
        return self.last_value + self.increment if self.is_called else self.last_value


@dataclass(frozen=True)
class SequenceSnapshot:
    server_version_num: int
    role: str  # current_user, quoted
    sequences: tuple[SequenceInfo, ...]


def _behind(seq: SequenceInfo, old_issued: int | None) -> tuple[list[str], int | None]:
    """Why NEW's next value collides, and the value setval() must reach."""
    nxt = seq.next_value
    if nxt is None:
        return [], None
    sign = 1 if seq.increment > 0 else -1
    reasons: list[str] = []
    targets: list[int] = []
    for c in seq.columns:
        if c.extreme is not None and sign * (nxt - c.extreme) <= 0:
            reasons.append(f"{c.table}.{c.column} already holds {c.extreme:,} on NEW")
            targets.append(c.extreme)
    if old_issued is not None and sign * (nxt - old_issued) <= 0:
        reasons.append(f"OLD already handed out up to {old_issued:,}")
        targets.append(old_issued)
    if not targets:
        return [], None
    return reasons, (max(targets) if sign > 0 else min(targets))


def _setval(seq: SequenceInfo, old_issued: int | None) -> str:
    fn = "max" if seq.increment > 0 else "min"
    parts = [f"(SELECT {fn}({c.column}) FROM {c.table})" for c in seq.columns]
    if old_issued is not None:
        parts.append(str(old_issued))
    pick = "greatest" if seq.increment > 0 else "least"
    value = parts[0] if len(parts) == 1 else f"{pick}({', '.join(parts)})"
    return f"SELECT setval({sql_literal(seq.name)}, {value});"


def _old_index(old: SequenceSnapshot) -> tuple[dict[tuple[str, str], SequenceInfo], dict[str, SequenceInfo]]:
    by_col = {(c.table, c.column): s for s in old.sequences for c in s.columns}
    return by_col, {s.name: s for s in old.sequences}


def _capacity(seq: SequenceInfo, old_seq: SequenceInfo | None, th: Thresholds,
              database: str | None) -> Finding | None:
    if seq.cycle:
        return None
    col_max = [TYPE_MAX[c.column_type] for c in seq.columns if c.column_type in TYPE_MAX]
    up = seq.increment > 0
    limit = min([seq.max_value, *col_max]) if up else seq.min_value
    narrow = [c for c in seq.columns if c.column_type in TYPE_MAX
              and TYPE_MAX[c.column_type] < TYPE_MAX.get(seq.data_type, 0)]
    values = [v for v in (seq.issued, old_seq.issued if old_seq else None) if v is not None]
    used = None
    if values and up:
        span = limit - seq.min_value
        used = (max(values) - seq.min_value) / span if span > 0 else 1.0
    elif values:
        span = seq.max_value - limit
        used = (seq.max_value - min(values)) / span if span > 0 else 1.0
    near = used is not None and used >= th.sequence_capacity_fraction
    if not near and not narrow:
        return None
    parts = []
    if near:
        parts.append(f"{used:.0%} of its range up to {limit:,} is used (last value "
                     f"{(max(values) if up else min(values)):,})")
    if narrow:
        parts.append(f"it is {seq.data_type} but feeds "
                     + ", ".join(f"{c.table}.{c.column} ({c.column_type})" for c in narrow)
                     + ", so inserts fail once it passes the column's maximum")
    fixes = [f"ALTER TABLE {c.table} ALTER COLUMN {c.column} TYPE bigint;  -- rewrites the table: plan it"
             for c in (narrow or [c for c in seq.columns if c.column_type in ("smallint", "integer")])]
    if seq.data_type != "bigint":
        fixes.append(f"ALTER SEQUENCE {seq.name} AS bigint;")
    return Finding(
        SEQUENCE_CAPACITY, "warning" if near else "info", seq.name,
        f"sequence {seq.name}: {' and '.join(parts)}. From then on every INSERT that draws from it fails.",
        "\n".join(fixes) or f"-- {seq.name} is already bigint: plan a wider key or a new id scheme",
        subject=Subject("sequence", seq.name, database=database),
    )


def evaluate(old: SequenceSnapshot, new: SequenceSnapshot, thresholds: Thresholds, *,
             database: str | None = None) -> list[Finding]:
    """sequence_behind / sequence_capacity for NEW's sequences, compared with OLD's.
    ``database``: NEW's database, for the findings' subjects (the snapshot does not name it)."""
    by_col, by_name = _old_index(old)
    findings: list[Finding] = []
    for seq in new.sequences:
        olds = {id(o): o for c in seq.columns if (o := by_col.get((c.table, c.column))) is not None}
        if not olds and seq.name in by_name:
            olds = {0: by_name[seq.name]}
        issued = [o.issued for o in olds.values() if o.issued is not None]
        old_issued = (max(issued) if seq.increment > 0 else min(issued)) if issued else None
        reasons, _ = _behind(seq, old_issued)
        if reasons:
            findings.append(Finding(
                SEQUENCE_BEHIND, "blocker", seq.name,
                f"sequence {seq.name} on NEW would next hand out {seq.next_value:,}, but "
                f"{'; '.join(reasons)}: INSERTs that draw from it fail with duplicate keys "
                "(logical replication does not copy sequences).",
                _setval(seq, old_issued),
                subject=Subject("sequence", seq.name, database=database),
            ))
        old_seq = next(iter(olds.values()), None)
        cap = _capacity(seq, old_seq, thresholds, database)
        if cap:
            findings.append(cap)
    findings += _skipped(old, new)
    return findings


def _skipped(old: SequenceSnapshot, new: SequenceSnapshot) -> list[Finding]:
    out: list[Finding] = []
    for label, snap in (("OLD", old), ("NEW", new)):
        hidden = [s.name for s in snap.sequences if not s.readable]
        no_col = [f"{c.table}.{c.column}" for s in snap.sequences for c in s.columns if c.needs_privilege]
        if hidden or (no_col and label == "NEW"):
            what = []
            if hidden:
                what.append(f"the values of {len(hidden)} sequence(s) ({listing(hidden, 5)})")
            if no_col and label == "NEW":
                what.append(f"max() of {len(no_col)} column(s) ({listing(no_col, 5)})")
            scope = f"privileges on {label}"
            out.append(Finding(
                CHECK_SKIPPED, "info", f"sequence_behind ({scope})",
                f"role {snap.role} may not read {' nor '.join(what)} on {label}, so whether those "
                "sequences are behind was not checked.",
                f"GRANT pg_read_all_data TO {snap.role};  -- PostgreSQL 14+; or GRANT SELECT ON the "
                "sequences and tables",
                subject=Subject("check", "sequences", scope=scope),
            ))
    for s in new.sequences:
        for c in s.columns:
            if c.skipped and not c.needs_privilege:
                obj = f"{s.name} ({c.table}.{c.column})"
                out.append(Finding(
                    CHECK_SKIPPED, "warning", obj,
                    f"max({c.column}) on NEW was not read: {c.skipped}; whether {s.name} is behind "
                    "the rows of that column is unknown.",
                    f"-- read it off-peak, and if the sequence is behind:\n{_setval(s, None)}",
                    subject=Subject("check", "sequences", scope=obj),
                ))
    return out
