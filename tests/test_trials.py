"""What --verify-fixes tries and how it reads the result (pure): on the recorded demo result."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from planguard.timing import CLASS_NAMES, NoiseFloor
from planguard.trials import (
    Remeasured,
    Target,
    catalog_diff,
    mitigations,
    noise_of_result,
    outcome,
    plan,
    side_effects,
    still_regressed,
    summary,
)
from tests.conftest import plan_fixture
from tests.fixtures.record_recordings import OUT

T = {"time_ratio": 2.0, "min_time_delta_ms": 1.0}


@pytest.fixture
def restored() -> dict[str, Any]:
    return json.loads((OUT / "demo_as_restored.report.json").read_text())


def test_every_blocker_gets_a_trial_statistics_first(restored: dict[str, Any]) -> None:
    trials = {t.finding: t for t in plan(restored)}
    blockers = [f["id"] for f in restored["findings"] if f["severity"] == "blocker"]
    assert set(trials) == set(blockers)
    never = trials["never_analyzed-public.transactions"]
    assert [a.sql for a in never.actions] == ["ANALYZE public.transactions;"]
    assert [t.fingerprint[:8] for t in never.targets] == ["221f488a"]  # the regression citing it
    generic = trials["generic_plan_regression-statement-221f488a-public.transactions"]
    assert generic.sql.splitlines() == ["ANALYZE public.transactions;",
                                        "SET LOCAL plan_cache_mode = 'force_custom_plan';"]
    assert generic.targets[0].generic
    # the harmful index cannot be hidden without HypoPG 1.4+ and is not dropped without --allow-locks
    regression = trials["plan_regression-statement-221f488a-public.transactions"]
    assert regression.sql == "ANALYZE public.transactions;"
    assert any("--allow-locks" in n for n in regression.notes)
    locked = {t.finding: t for t in plan(restored, allow_locks=True)}
    assert "DROP INDEX public.transactions_status_tenant_idx;" in \
        locked["plan_regression-statement-221f488a-public.transactions"].sql
    hidden = {t.finding: t for t in plan(restored, hypopg="1.4.1")}
    assert "hypopg_hide_index" in hidden["plan_regression-statement-221f488a-public.transactions"].sql


def test_a_redacted_result_cannot_be_tried(restored: dict[str, Any]) -> None:
    red = copy.deepcopy(restored)
    for s in red["statements"]:
        for p in s["param_sets"]:
            p["values"] = ["<redacted>"] * len(p["values"])
    trials = plan(red)
    assert trials and all(t.not_tried and "redacted" in t.not_tried for t in trials)


def _target(before: float = 15.0, old_plan: str = "A") -> Target:
    return Target("f" * 16, None, "SELECT 1", "typical", (), 0.05, old_plan, before, False)


@pytest.mark.parametrize(("after_ms", "after_plan", "expected"), [
    (0.04, "A", "restores_old_plan"),  # OLD's plan, OLD's time
    (5.0, "A", "improves"),  # OLD's plan but still slow: restored plan, still regressed
    (2.0, "B", "improves"),  # another plan, much faster
    (14.0, "B", "no_effect"),
])
def test_outcomes(after_ms: float, after_plan: str, expected: str) -> None:
    assert outcome([Remeasured(_target(), after_ms, after_plan)], T) == expected


def test_olds_plan_back_with_olds_work_is_restored_whatever_the_clock() -> None:
    """The judge's rule, not a bare time ratio: a trial's runs are taken after OLD's, on a
    machine that may be busier, so OLD's plan with OLD's buffers is the regression gone."""
    t = dataclasses.replace(_target(), old_buffers=40)
    assert outcome([Remeasured(t, 5.0, "A", after_buffers=40)], T) == "restores_old_plan"
    # OLD's plan shape but far more work (a bloated index, say): still regressed, better though.
    more = Remeasured(t, 5.0, "A", after_buffers=40_000)
    assert still_regressed(more, T) and outcome([more], T) == "improves"
    # Another plan, slower than OLD's: still regressed however its buffers compare.
    assert still_regressed(Remeasured(t, 5.0, "B", after_buffers=40), T)


def test_the_comparisons_noise_floor_raises_the_bar() -> None:
    floor = NoiseFloor((4.0,) * len(CLASS_NAMES), (50,) * len(CLASS_NAMES))
    t = dataclasses.replace(_target(before=15.0), old_ms=1.0)
    m = Remeasured(t, 3.0, "B")  # 3x OLD: beyond time_ratio 2, within a 4x noise floor
    assert still_regressed(m, T) and not still_regressed(m, T, floor)
    assert still_regressed(Remeasured(t, 5.0, "B"), T, floor)
    doc = {"noise": {"quantile": 0.9, "classes": [{"class": c, "factor": 4.0, "ratios": 50} for c in CLASS_NAMES]}}
    assert noise_of_result(doc) == dataclasses.replace(floor, quantile=0.9)
    assert noise_of_result({"noise": None}) is None


def test_a_hypothetical_index_is_judged_by_its_plan() -> None:
    m = Remeasured(_target(), None, "A", planned_only=True)
    assert outcome([m], T) == "restores_old_plan"
    assert outcome([Remeasured(_target(), None, "B", planned_only=True)], T) == "no_effect"


def test_summary_and_side_effects(restored: dict[str, Any]) -> None:
    never = next(t for t in plan(restored) if t.finding.startswith("never_analyzed"))
    line = summary(never, "restores_old_plan", [Remeasured(never.targets[0], 0.04, never.targets[0].old_plan)])
    assert line.startswith("ANALYZE public.transactions restores OLD's plan for 1 of 1 regressed statement")
    assert "the worst goes from" in line
    (effect,) = side_effects(never.actions, 180000)
    assert "in place" in effect and "pg_restore_relation_stats" in effect and "n_mod_since_analyze" in effect
    assert "cannot put them back" in side_effects(never.actions, 150000)[0]


def test_catalog_diff() -> None:
    before = {"index": {"public.i": "CREATE INDEX i ON t (a)"}, "sequence": {"public.s": "10"}}
    assert catalog_diff(before, copy.deepcopy(before)) == []
    after = {"index": {}, "sequence": {"public.s": "11"}}
    assert catalog_diff(before, after) == ["index public.i: CREATE INDEX i ON t (a) → absent",
                                           "sequence public.s: 10 → 11"]


def test_mitigations_forbid_what_new_chose_in_olds_place() -> None:
    old = plan_fixture("pg15_tenant_list")[0]["Plan"]
    new = plan_fixture("pg18_tenant_list_unanalyzed")[0]["Plan"]
    stmt = {"decisive_param_set": "x", "param_sets": [{"label": "x", "old": {"plan_json": old},
                                                       "new": {"plan_json": new}}]}
    tries = [[a.sql for a in m] for m in mitigations(stmt)]
    assert tries[0] == ["SET LOCAL enable_bitmapscan = 'off';"]
    assert mitigations({"decisive_param_set": None, "param_sets": []}) == []
