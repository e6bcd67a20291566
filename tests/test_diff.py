"""Plan diff and regression calls on real plans (no server)."""

from __future__ import annotations

import statistics

import pytest

from planguard.calls import classify
from planguard.config import Thresholds
from planguard.diff import diff_plans
from planguard.measure import Measurement
from planguard.plan import parse_plan
from planguard.timing import noise_floor
from tests.conftest import fixture_names, plan_fixture

T = Thresholds()


TENANT_LIST = "pg18_tenant_list"
UNANALYZED = "pg18_tenant_list_unanalyzed"


def m(times: float | tuple[float, ...], buffers: int, plan_name: str = TENANT_LIST, temp: int = 0,
      ) -> Measurement:
    """A side's measurement on a recorded real plan; a single time stands for 5 equal runs."""
    runs = times if isinstance(times, tuple) else (times,) * 5
    return Measurement(median_ms=statistics.median(runs), shared_buffers=buffers, temp_buffers=temp,
                       runs=len(runs), plan=parse_plan(plan_fixture(plan_name)), times_ms=runs)


def test_identical_plans_have_no_changes() -> None:
    for name in fixture_names("pg18"):
        p = parse_plan(plan_fixture(name))
        assert diff_plans(p, p) == ()


def test_the_demo_flip_names_the_index_and_scan_method() -> None:
    old = parse_plan(plan_fixture("pg18_tenant_list"))
    new = parse_plan(plan_fixture("pg18_tenant_list_unanalyzed"))
    changes = {c.kind: c for c in diff_plans(old, new)}
    assert changes["scan_method"].relation == "public.transactions"
    assert "Index Scan using transactions_tenant_created_idx" in changes["scan_method"].detail
    assert "Bitmap Heap Scan using transactions_status_tenant_idx" in changes["scan_method"].detail
    assert changes["index_new_only"].index == "transactions_status_tenant_idx"
    assert changes["index_old_only"].index == "transactions_tenant_created_idx"


def test_join_method_change_is_reported_per_relation_set() -> None:
    merge = parse_plan(plan_fixture("pg18_merge_join"))
    hashed = parse_plan(plan_fixture("pg18_hash_join_agg"))
    kinds = {c.kind for c in diff_plans(merge, hashed)}
    assert "join_method" in kinds or "plan_shape" in kinds


def test_cross_version_differences_are_described() -> None:
    if "pg15_union_window" not in fixture_names():
        pytest.skip("fixtures were recorded without PostgreSQL 15")
    old = parse_plan(plan_fixture("pg15_union_window"))
    new = parse_plan(plan_fixture("pg18_union_window"))
    changes = diff_plans(old, new)
    assert changes and all(c.detail for c in changes)


def test_regressed_by_time_and_buffers() -> None:
    """The demo's flip: every pair 3,000x slower, another plan, 1,600x the buffers."""
    call = classify(m(0.05, 6), m(185.4, 9760, UNANALYZED), T)
    assert call.status == "regressed" and call.evidence is not None and call.evidence.decisive
    assert "0.05 → 185.40 ms" in call.reason and "buffers 6 → 9760" in call.reason
    assert "different plan" in call.reason and call.same_work is False


def test_sub_millisecond_noise_never_regresses() -> None:
    # 4x slower, but only 0.3 ms: below the absolute floor.
    assert classify(m(0.1, 5), m(0.4, 5), T).status == "unchanged"


def test_more_buffers_alone_is_no_regression() -> None:
    """A plan can trade buffers for CPU: another plan that reads 5x more but is not slower is
    plan_changed, with the buffers as its evidence; the same plan reading more is unchanged."""
    other = classify(m(10.0, 1000), m(10.5, 5000, UNANALYZED), T)
    assert other.status == "plan_changed" and "buffers 1000 → 5000" in other.reason
    assert "not slower" in other.reason
    same = classify(m(10.0, 1000), m(10.5, 5000), T)
    assert same.status == "unchanged" and "buffers 1000 → 5000" in same.reason


def test_small_buffer_growth_is_not_a_regression() -> None:
    assert classify(m(10.0, 10), m(10.5, 400), T).status == "unchanged"


def test_improved_and_plan_changed() -> None:
    assert classify(m(50.0, 9000, UNANALYZED), m(0.5, 5), T).status == "improved"
    assert classify(m(1.0, 10), m(1.1, 12, UNANALYZED), T).status == "plan_changed"


def test_errors_say_which_side() -> None:
    ok, bad = m(1.0, 10), Measurement(error="relation does not exist")
    assert classify(ok, bad, T).reason.startswith("fails on NEW only")
    assert classify(bad, ok, T).reason.startswith("fails on OLD only")
    assert classify(bad, bad, T).reason.startswith("fails on both")


def test_a_burst_in_some_pairs_is_not_a_regression() -> None:
    """Background load that slowed NEW in two of five pairs moves no median: unchanged.  In
    three of five the median ratio crosses 2x, but the pairs do not agree: unstable."""
    old = m((10.0, 10.1, 9.9, 10.0, 10.2), 100)
    assert classify(old, m((10.0, 30.0, 31.0, 10.1, 10.0), 100), T).status == "unchanged"
    burst = classify(old, m((30.0, 31.0, 32.0, 10.0, 10.1), 100), T)
    assert burst.status == "unstable" and burst.evidence is not None
    assert burst.evidence.agree < 5 and not burst.evidence.confirmed


def test_a_consistent_same_plan_slowdown_is_slower_same_plan() -> None:
    """Every pair 3x slower, same plan, same buffers: decisive, and nothing the planner did."""
    call = classify(m((10.0, 10.2, 9.8, 10.1, 10.0), 100), m((30.0, 31.0, 29.5, 30.2, 30.4), 100), T)
    assert call.status == "slower_same_plan" and call.same_work is True
    assert call.evidence is not None and call.evidence.decisive and call.evidence.agree == 5
    assert "same plan, same buffers" in call.reason


def test_a_spill_is_other_work_not_the_same_plan() -> None:
    """The same plan shape that spills to disk on NEW (temp buffers) does other work."""
    call = classify(m(10.0, 100), m(30.0, 100, temp=5000), T)
    assert call.status == "regressed" and "buffers 100 → 5100" in call.reason


def test_the_sign_test_needs_seven_pairs_when_a_pair_is_below_the_bar() -> None:
    """NEW slower in every pair, but one pair only 1.5x: not decisive.  Five pairs cannot reach
    alpha = 0.01 with a sign test (p = 1/32); seven can (1/128)."""
    five_old = m((10.0,) * 5, 100)
    five_new = m((30.0, 31.0, 15.0, 30.5, 29.8), 100)
    assert classify(five_old, five_new, T).status == "unstable"
    seven = classify(m((10.0,) * 7, 100), m((30.0, 31.0, 15.0, 30.5, 29.8, 30.1, 30.9), 100), T)
    assert seven.status == "slower_same_plan" and seven.evidence is not None
    assert seven.evidence.p is not None and seven.evidence.p < 0.01 and not seven.evidence.decisive


def test_a_slowdown_within_the_measured_noise_is_unstable() -> None:
    """2.5x in every pair, but runs of statements this long vary by 3x here: not a call."""
    noisy = noise_floor([(10.0, 30.0, 10.0, 30.0, 10.0, 30.0)] * 2)
    assert noisy.factor(10.0) == pytest.approx(3.0, rel=0.01)
    call = classify(m(10.0, 100), m(25.0, 100), T, noisy)
    assert call.status == "unstable" and call.evidence is not None and call.evidence.within_noise
    assert "within the measured noise" in call.reason
    assert classify(m(10.0, 100), m(25.0, 100), T).status == "slower_same_plan"  # quiet machine


def test_noise_floor_is_measured_per_duration_class() -> None:
    """Short statements vary more; their noise does not raise the floor of long ones.  A class
    without enough runs borrows the nearest shorter class's floor (conservative)."""
    short = [(0.05, 0.2, 0.05, 0.2, 0.05)] * 3  # 4x from run to run
    long_ = [(200.0, 204.0, 200.0, 204.0, 200.0)] * 3  # 2 %
    floor = noise_floor(short + long_)
    assert floor.factor(0.1) > 3 and floor.factor(300.0) < 1.05
    assert floor.factor(50.0) == floor.factor(0.1)  # 10-100 ms: no runs of its own
    assert noise_floor([]).factor(5.0) == 1.0
    assert "< 1 ms" in floor.describe() and ">= 100 ms" in floor.describe()


def test_unpaired_comparisons_use_ranks() -> None:
    """A custom plan against a generic one: two series taken apart, compared by Mann-Whitney U."""
    custom = m((10.0, 10.5, 9.9, 10.2, 10.1), 100)
    generic = m((25.0, 26.0, 24.0, 25.5, 27.0), 9000, UNANALYZED)
    call = classify(custom, generic, T, paired=False)
    assert call.status == "regressed" and call.evidence is not None and not call.evidence.paired
    overlap = classify(custom, m((25.0, 9.0, 24.0, 25.5, 10.0), 9000, UNANALYZED), T, paired=False)
    assert overlap.status == "unstable"


def test_thresholds_are_respected() -> None:
    strict = Thresholds(time_ratio=1.1, min_time_delta_ms=0.1)
    assert classify(m(1.0, 10), m(1.3, 10), strict).status == "slower_same_plan"
    assert classify(m(1.0, 10), m(1.3, 10), T).status == "unchanged"


def _side_with(runs: dict, auto: dict, version: int = 180000):  # type: ignore[no-untyped-def]
    from planguard.recording import ServerInfo, SideRecord
    return SideRecord(info=ServerInfo("x", "18", version, ""), runs=runs, auto_generic=auto)


def _generic_case():  # type: ignore[no-untyped-def]
    """The demo's good and bad plans, a maker of 5 runs, and a one-statement workload."""
    from planguard.measure import Run
    from planguard.workload import ParamSet, Source, Statement, Workload

    def runs(plan, ms: float, bufs: int) -> list:  # type: ignore[no-untyped-def]
        return [Run(ms + i * 0.001, 0.1, bufs, 0, plan) for i in range(5)]

    stmt = Statement("fp", "SELECT ... WHERE tenant_id = $1", "select", calls=10,
                     param_sets=(ParamSet("typical", ("1",)),))
    return (parse_plan(plan_fixture("pg18_tenant_list")), parse_plan(plan_fixture("pg18_tenant_list_unanalyzed")),
            runs, Workload(Source("x", 0, "db", "", "t"), (stmt,)))


def test_generic_regression_blocks_only_when_the_plan_cache_picks_it() -> None:
    """Pure: a generic plan that flipped to a worse one; blocker only if NEW would use it,
    and a same-plan slowdown is a warning."""
    from planguard.judge import judge

    good, bad, runs, wl = _generic_case()
    for auto, severity in ((True, "blocker"), (False, "warning")):
        old = _side_with({("fp", "typical", "custom"): runs(good, 0.05, 5),
                          ("fp", "typical", "generic"): runs(good, 0.05, 5)}, {"fp": auto})
        new = _side_with({("fp", "typical", "custom"): runs(good, 0.05, 5),
                          ("fp", "typical", "generic"): runs(bad, 35.0, 1955)}, {"fp": auto})
        judged = judge(wl, old, new, T)
        results, findings = judged.statements, judged.findings
        assert results[0].status == "unchanged" and results[0].generic_status == "regressed"
        kinds = {f.kind: f.severity for f in findings}
        assert kinds["generic_plan_regression"] == severity
    # Both plan caches switch to the same generic plan, NEW's only runs slower: a warning.
    both_generic = _side_with({("fp", "typical", "custom"): runs(good, 0.05, 5),
                               ("fp", "typical", "generic"): runs(good, 0.05, 5)}, {"fp": True})
    same_plan_slower = _side_with({("fp", "typical", "custom"): runs(good, 0.05, 5),
                                   ("fp", "typical", "generic"): runs(good, 5.0, 5)}, {"fp": True})
    findings = judge(wl, both_generic, same_plan_slower, T).findings
    assert {f.kind: f.severity for f in findings}["generic_plan_regression"] == "warning"


def test_estimate_error_on_new_only_is_named() -> None:
    from planguard.diff import runtime_changes

    old = parse_plan(plan_fixture("pg18_tenant_list"))  # its scan stops early under LIMIT: not an error
    new = parse_plan(plan_fixture("pg18_tenant_list_unanalyzed"))
    (change,) = runtime_changes(old, new)
    assert change.kind == "estimate_error" and change.relation == "public.transactions"
    assert "on NEW" in change.detail


def test_no_runtime_change_between_analyzed_15_and_18() -> None:
    from planguard.diff import runtime_changes

    pairs = [(n, n.replace("pg15", "pg18")) for n in fixture_names("pg15")]
    if not pairs:
        pytest.skip("fixtures were recorded without PostgreSQL 15")
    for a, b in pairs:
        assert runtime_changes(parse_plan(plan_fixture(a)), parse_plan(plan_fixture(b))) == (), a


def test_spill_on_new_only() -> None:
    from planguard.diff import runtime_changes

    changes = runtime_changes(parse_plan(plan_fixture("pg18_hash_join_agg")),
                              parse_plan(plan_fixture("pg18_hash_spill")))
    assert any(c.kind == "spill" and "hash spilled" in c.detail for c in changes)


def test_custom_to_generic_flip_is_a_blocker() -> None:
    """OLD's plan cache keeps custom plans, NEW's switches to a generic plan that is slower."""
    from planguard.judge import judge

    good, bad, runs, wl = _generic_case()
    same = {("fp", "typical", "custom"): runs(good, 0.05, 5), ("fp", "typical", "generic"): runs(bad, 35.0, 1955)}
    findings = judge(wl, _side_with(same, {"fp": False}), _side_with(same, {"fp": True}), T).findings
    flips = [f for f in findings if f.kind == "generic_plan_regression"]
    assert flips and flips[0].severity == "blocker" and "OLD's plan cache keeps custom plans" in flips[0].message
    # The same plan_cache_mode on both (no setting_diff): statistics first, then custom plans
    # for the application's role (a placeholder the script leaves commented out).
    fix = flips[0].remediation
    assert "same on both" in fix and fix.endswith("ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;")


def test_a_plan_cache_flip_from_a_differing_plan_cache_mode_is_fixed_with_olds() -> None:
    from planguard.findings import SETTING_DIFF, Finding, Subject
    from planguard.judge import _flip_fix

    differ = Finding(SETTING_DIFF, "warning", "plan_cache_mode", "plan_cache_mode is auto on OLD (default) but "
                     "force_generic_plan on NEW (configuration file)",
                     "ALTER SYSTEM SET plan_cache_mode = 'auto';\nSELECT pg_reload_conf();",
                     Subject("setting", "plan_cache_mode"))
    fix = _flip_fix([differ])
    assert fix.startswith("-- NEW's plan_cache_mode differs from OLD's")
    assert fix.endswith("ALTER SYSTEM SET plan_cache_mode = 'auto';\nSELECT pg_reload_conf();")
    assert "force_custom_plan" in _flip_fix([])


def test_impact_decides_between_blocker_and_warning() -> None:
    from planguard.judge import _load_text
    from planguard.model import Impact

    busy = Impact(calls_per_second=500.0, old_ms=1.0, new_ms=3.0)  # 3x on a hot statement
    nightly = Impact(calls_per_second=1 / 86400, old_ms=10_000.0, new_ms=30_000.0)  # 3x on a report
    assert busy.extra_sessions == pytest.approx(1.0)
    assert _load_text(busy, T, "typical")[0] == "blocker"
    severity, text = _load_text(nightly, T, "typical")
    assert severity == "warning" and "below the 0.05 sessions" in text
    assert _load_text(Impact(None, 1.0, 3.0), T, "typical")[0] == "blocker"  # unknown rate


def test_workload_impact_is_littles_law() -> None:
    from planguard.calls import Call
    from planguard.model import ParamSetResult, StatementResult, workload_impact
    from planguard.workload import Statement

    def result(rate: float | None, old_ms: float, new_ms: float) -> StatementResult:
        p = ParamSetResult("typical", (), Measurement(median_ms=old_ms), Measurement(median_ms=new_ms),
                           Call("unchanged", ""), ())
        return StatementResult(Statement("f", "q", "select", calls_per_second=rate), "unchanged", "", (p,))

    w = workload_impact([result(100.0, 2.0, 4.0), result(10.0, 50.0, 40.0), result(None, 1.0, 9.0)])
    assert w.old_sessions == pytest.approx(100 * 0.002 + 10 * 0.05)
    assert w.new_sessions == pytest.approx(100 * 0.004 + 10 * 0.04)
    assert (w.statements, w.without_rate) == (2, 1)


def test_only_unsettled_calls_get_more_pairs() -> None:
    """More pairs only for an unstable call, ``repeat`` at a time, never beyond max_runs."""
    from planguard.calls import Call, more_pairs

    unstable, settled = Call("unstable", ""), Call("regressed", "")
    assert more_pairs(unstable, 5, T, repeat=5) == 5
    assert more_pairs(unstable, 17, T, repeat=5) == T.max_runs - 17
    assert more_pairs(unstable, T.max_runs, T, repeat=5) == 0
    assert more_pairs(settled, 5, T, repeat=5) == 0
    assert more_pairs(None, 0, T, repeat=5) == 0
    assert more_pairs(unstable, 1, T, repeat=1) == 2  # one pair at a time could never settle


@pytest.mark.parametrize(("old", "new", "ordered", "deterministic", "outcome"), [
    ((3, "a", "x"), (3, "a", "x"), True, True, "same"),
    ((3, "a", "x"), (2, "b", "y"), True, True, "different_count"),
    ((3, "a", "x"), (3, "b", "y"), True, True, "different_rows"),
    ((3, "a", "x"), (3, "b", "x"), True, True, "different_order"),
    ((3, "a", "x"), (3, "b", "x"), False, True, "same"),  # no ORDER BY: order is not part of it
    ((3, "a", "x"), (3, "b", "y"), True, False, "same"),  # LIMIT without ORDER BY, now(): counts only
])
def test_result_check_outcomes(old: tuple, new: tuple, ordered: bool, deterministic: bool, outcome: str) -> None:
    from planguard.measure import Digest
    from planguard.model import ResultCheck

    assert ResultCheck(Digest(*old), Digest(*new), ordered, deterministic).outcome == outcome
    assert ResultCheck("permission denied", Digest(*new), ordered, deterministic).outcome == "not_compared"


def test_result_shape_of_statements() -> None:
    from planguard.params import result_shape

    assert result_shape("SELECT id FROM t WHERE a = $1 ORDER BY id LIMIT 5") == result_shape(
        "SELECT id FROM t ORDER BY id")
    shape = result_shape("SELECT id FROM t LIMIT 5")
    assert shape is not None and not shape.deterministic
    volatile = result_shape("SELECT count(*) FROM t WHERE c > now() - interval '1 hour'")
    assert volatile is not None and not volatile.deterministic
    assert result_shape("UPDATE t SET a = 1") is None and result_shape("SELECT 1 FROM t FOR UPDATE") is None


def test_filter_and_loop_growth_are_named() -> None:
    """Derived from a real plan: the same scan throws away 50x more rows and loops 100x more."""
    import copy

    from planguard.diff import runtime_changes

    raw = plan_fixture("pg18_self_join")
    grown = copy.deepcopy(raw)

    def bump(node: dict) -> None:
        if node.get("Alias") == "b":
            node["Rows Removed by Filter"] = 50_000
            node["Actual Loops"] = node.get("Actual Loops", 1) * 100 + 1000
        for child in node.get("Plans", []):
            bump(child)

    bump(grown[0]["Plan"])
    kinds = {c.kind: c for c in runtime_changes(parse_plan(raw), parse_plan(grown))}
    assert {"filter_rows", "loops"} <= set(kinds)
    assert kinds["loops"].detail.startswith("public.accounts AS b:")
