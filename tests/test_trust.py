"""Trust: identical databases never alarm; injected regressions are found with their cause.

A/A uses a template copy (same data, same statistics); every fault in
tests/fixtures/trust_scenarios.py must give NO-GO with a blocker naming its cause.
benchmarks/trust.py runs the A/A ten times and reports the figures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from planguard.compare import compare
from planguard.model import Comparison
from planguard.safety import Policy
from planguard.workload import Workload
from tests.conftest import Pair
from tests.fixtures.trust_scenarios import (
    REGRESSION_KINDS,
    SCENARIOS,
    copy_with_fault,
    drop,
    parallel_off,
    restore_copy,
    trust_base,
)

pytestmark = [pytest.mark.db, pytest.mark.slow]
BASE = "trust_base"
SAME = Policy(allow_same_cluster=True)  # the A/A copies and faults live on one cluster


def _settled(result: Comparison) -> None:
    """No call is ``unstable`` that more pairs could have settled (``planguard.calls.unsettled``):
    an unstable series has ``max_runs`` pairs."""
    short = [(r.statement.short_id, p.label, m.call.reason)
             for r in result.statements for p in r.param_sets
             for m in (p, p.generic) if m is not None and m.call.status == "unstable"
             and m.old.runs < result.thresholds.max_runs]
    assert not short, short


@pytest.fixture(scope="module")
def base(clusters: Pair) -> Iterator[tuple[str, Workload]]:
    with trust_base(clusters.new, BASE, held=False) as b:  # each same-cluster compare: parallel_off
        yield b


def test_a_a_is_go_with_no_regression(clusters: Pair, base: tuple[str, Workload]) -> None:
    dsn, wl = base
    copy = copy_with_fault(clusters.new, BASE, "trust_aa", [])
    try:
        for _ in range(3):
            with parallel_off(clusters.new):
                result = compare(dsn, copy, wl, repeat=5, policy=SAME)
            _settled(result)
            assert result.verdict.decision == "GO", result.verdict.reasons
            assert not [r.statement.query for r in result.statements
                        if r.status in ("regressed", "error") or r.generic_status == "regressed"]
    finally:
        drop(clusters.new, "trust_aa")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_injected_regression_is_found_with_its_cause(clusters: Pair, base: tuple[str, Workload],
                                                     scenario: str) -> None:
    dsn, wl = base
    fault, cause = SCENARIOS[scenario]
    copy = copy_with_fault(clusters.new, BASE, f"trust_{scenario}", fault)
    try:
        with parallel_off(clusters.new):
            result = compare(dsn, copy, wl, repeat=5, policy=SAME)
    finally:
        drop(clusters.new, f"trust_{scenario}")
    _settled(result)
    assert result.verdict.decision == "NO-GO"
    blockers = [f for f in result.findings if f.severity == "blocker" and f.kind in REGRESSION_KINDS]
    assert blockers, result.verdict.reasons
    named = [f for f in blockers if cause in {c.kind for c in f.causes}]
    assert named, [(f.kind, [c.kind for c in f.causes]) for f in blockers]
    if scenario in ("drop_index", "misleading_index", "unanalyzed"):
        # index trouble shows in buffers, the deterministic signal: no timing luck involved
        assert any("buffers" in f.message for f in named), [f.message for f in named]
    if scenario == "slower_function":
        # The same plan and buffers: a same-plan slowdown, confirmed in a second round, and no
        # cause that would blame the planner or statistics.
        (slow,) = [r for r in result.statements if "risk_score" in r.statement.query]
        assert slow.status == "slower_same_plan"
        assert all(p.confirmation is not None for p in slow.param_sets if p.call.status == slow.status)
        assert {f.kind for f in named} == {"slower_same_plan"}
        kinds = {c.kind for f in named for c in f.causes}
        assert not kinds & {"planner_change", "stale_stats", "never_analyzed", "estimate_error"}, kinds


def test_decision_support_across_versions_is_go(clusters: Pair) -> None:
    """TPC-H's 22 queries (nobody here wrote them) on OLD and on NEW restored with the same data
    and statistics: plans legitimately differ between major versions, none is slower, GO.
    Both clusters keep their defaults (parallel plans on): the pair is symmetric."""
    from tests.fixtures import tpch

    name = "tpch_xv"
    tpch.load(clusters.old, name, scale=0.02)
    try:
        new_dsn = restore_copy(clusters.old, clusters.new, name)
        result = compare(clusters.old.dsn(name), new_dsn, tpch.workload(name), repeat=5, generic=False)
    finally:
        drop(clusters.old, name)
        drop(clusters.new, name)
    assert result.verdict.decision == "GO", result.verdict.reasons
    statuses = {r.statement.name: r.status for r in result.statements}
    assert not {q: s for q, s in statuses.items() if s in ("regressed", "slower_same_plan", "error")}, statuses
    changed = [r for r in result.statements if r.param_sets[0].old.plan_fingerprint
               != r.param_sets[0].new.plan_fingerprint]
    if clusters.old.major != clusters.new.major:
        assert changed, "15 and 18 plan some TPC-H queries differently"
    for r in changed:
        assert r.status in ("plan_changed", "improved", "unstable"), (r.statement.name, r.reason)
