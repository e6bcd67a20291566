"""Trust: identical databases never alarm; injected regressions are found with their cause.

A/A uses a template copy (same data, same statistics); every fault in
tests/fixtures/trust_scenarios.py must give NO-GO with a blocker naming its cause.
benchmarks/trust.py runs the A/A ten times and reports the figures.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from planguard.capture import capture
from planguard.compare import compare
from planguard.workload import Workload
from tests.conftest import Pair
from tests.fixtures.trust_scenarios import (
    PARALLEL_OFF,
    PARALLEL_RESET,
    SCENARIOS,
    build_base,
    copy_with_fault,
    drop,
)

pytestmark = [pytest.mark.db, pytest.mark.slow]
BASE = "trust_base"


@pytest.fixture(scope="module")
def base(clusters: Pair) -> Iterator[tuple[str, Workload]]:
    with psycopg.connect(clusters.new.dsn(), autocommit=True) as conn:
        conn.execute(PARALLEL_OFF)
    build_base(clusters.new, BASE)
    try:
        yield clusters.new.dsn(BASE), capture(clusters.new.dsn(BASE), top=20)
    finally:
        drop(clusters.new, BASE)
        with psycopg.connect(clusters.new.dsn(), autocommit=True) as conn:
            conn.execute(PARALLEL_RESET)


def test_a_a_is_go_with_no_regression(clusters: Pair, base: tuple[str, Workload]) -> None:
    dsn, wl = base
    copy = copy_with_fault(clusters.new, BASE, "trust_aa", [])
    try:
        for _ in range(3):
            result = compare(dsn, copy, wl, repeat=5)
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
        result = compare(dsn, copy, wl, repeat=5)
    finally:
        drop(clusters.new, f"trust_{scenario}")
    assert result.verdict.decision == "NO-GO"
    blockers = [f for f in result.findings if f.severity == "blocker"
                and f.kind in ("plan_regression", "generic_plan_regression")]
    assert blockers, result.verdict.reasons
    named = [f for f in blockers if cause in f.message]
    assert named, [f.message for f in blockers]
    if scenario in ("drop_index", "misleading_index", "unanalyzed"):
        # index trouble shows in buffers, the deterministic signal: no timing luck involved
        assert any("buffers" in f.message for f in named), [f.message for f in named]
