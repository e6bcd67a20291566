"""Findings: what a check or a comparison found, how bad it is and what fixes it.

Kinds are stable snake_case names that reports, the JSON contract and CI gates
rely on.  Each check module has ``gather`` (I/O, returns a snapshot) and
``evaluate`` (pure, returns findings).
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
