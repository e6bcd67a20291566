"""GO / NO-GO from findings (pure).

NO-GO when any finding is a blocker: a statement regressed beyond the thresholds,
a statement fails on NEW only, or a table the workload touches was never analyzed
on NEW.  The reasons are one line each (``Finding.headline``): blockers first, the heaviest
at production rates first, causes before their symptoms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from planguard.findings import NEVER_ANALYZED, PLAN_REGRESSION, QUERY_ERROR, SEVERITIES, STALE_STATS, Finding

GO, NO_GO = "GO", "NO-GO"
# Kinds that explain an outage come before their symptoms.
KIND_ORDER = (NEVER_ANALYZED, PLAN_REGRESSION, QUERY_ERROR, STALE_STATS)


@dataclass(frozen=True)
class Verdict:
    decision: str  # GO or NO-GO
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return 0 if self.decision == GO else 1


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """By severity, then by the load each adds at production rates (a cause weighs the sum of
    its symptoms), then causes before symptoms."""
    def key(f: Finding) -> tuple[int, float, int, str]:
        kind_rank = KIND_ORDER.index(f.kind) if f.kind in KIND_ORDER else len(KIND_ORDER)
        return SEVERITIES.index(f.severity), -(f.extra_active_sessions or 0.0), kind_rank, f.object
    return sorted(findings, key=key)


def decide(findings: Iterable[Finding]) -> Verdict:
    ordered = sort_findings(findings)
    blockers = [f for f in ordered if f.severity == "blocker"]
    if blockers:
        return Verdict(NO_GO, tuple(f"{f.kind}: {f.headline}" for f in blockers))
    warnings = [f for f in ordered if f.severity == "warning"]
    reasons = ["no blocker found"] + [f"{f.kind}: {f.headline}" for f in warnings]
    return Verdict(GO, tuple(reasons))
