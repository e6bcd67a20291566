"""Findings: what a check or a comparison found, how bad it is and what fixes it.

Kinds are stable snake_case names that reports, the JSON contract and CI gates
rely on.  Each check module has ``evaluate`` (pure, returns findings); its
``gather`` (I/O, returns a snapshot) is in :mod:`planguard.catalog`.  The helpers
below build the SQL text of remediations without a server (names in snapshots are
already quoted by the server's ``format('%I.%I')``; values are quoted here).
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("blocker", "warning", "info")


@dataclass(frozen=True)
class Finding:
    kind: str  # never_analyzed, stale_stats, plan_regression, query_error, ...
    severity: str  # blocker | warning | info
    object: str  # schema-qualified table or index, or "statement <fingerprint>"
    message: str  # why it matters
    remediation: str  # SQL or an action the reviewer can copy

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


def sql_literal(value: str) -> str:
    """``value`` as a standard SQL string literal (``standard_conforming_strings = on``)."""
    return "'" + value.replace("'", "''") + "'"


def quoted_ident(name: str) -> str:
    """``name`` as an always-quoted identifier (safe for any name, keyword or not)."""
    return '"' + name.replace('"', '""') + '"'


def human_size(n: float) -> str:
    """1536 -> '1.5 kB'; bytes below 1 kB stay exact."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def listing(items: list[str] | tuple[str, ...], limit: int = 8) -> str:
    """'a, b, c' or 'a, b, ... and 12 more' for messages."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
