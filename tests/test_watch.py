"""The watch's pure parts: deltas between pg_stat_statements readings, the interval's judgement,
confirmation over two intervals, recovery, the rollback call and its outputs.  No server: the
readings are the view's own columns, the baseline is a real captured workload."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from planguard.config import Thresholds
from planguard.loader import load
from planguard.report.watch import interval_dict, render_snapshot, snapshot_context, write_prometheus
from planguard.statdelta import Counters, Reading, delta
from planguard.watch import (
    OK,
    RECOVERED,
    REGRESSION,
    ROLLBACK,
    Baseline,
    Cause,
    WatchOptions,
    WatchState,
    observe,
)
from tests.browser import opened

WORKLOAD = Path(__file__).parent / "fixtures" / "recordings" / "demo_as_restored.workload.json"
K1, K2 = (10, 5, 111, True), (10, 5, 222, True)


def reading(at: float, entries: dict, *, reset: str = "r0", dealloc: int = 0, started: str = "s0") -> Reading:
    return Reading(at, f"t{at}", entries, reset, dealloc, started)


def test_delta_subtracts_counters_and_keeps_only_what_ran() -> None:
    a = reading(0, {K1: Counters(10, 5.0, 10, 100, 1), K2: Counters(3, 1.0, 3, 9, 0)})
    b = reading(10, {K1: Counters(15, 8.0, 15, 150, 2), K2: Counters(3, 1.0, 3, 9, 0)})
    d = delta(a, b)
    assert d.seconds == 10 and d.counted and d.events == ()
    assert d.entries == {K1: Counters(5, 3.0, 5, 50, 1)}


def test_a_reset_makes_the_current_counters_the_delta() -> None:
    a = reading(0, {K1: Counters(1000, 500.0)})
    b = reading(10, {K1: Counters(7, 3.5)}, reset="r1")
    d = delta(a, b)
    assert d.entries[K1] == Counters(7, 3.5)
    assert any("was reset at r1" in e for e in d.events)


def test_an_entry_evicted_and_added_again_or_new_counts_from_zero() -> None:
    a = reading(0, {K1: Counters(1000, 500.0)}, dealloc=4)
    b = reading(10, {K1: Counters(20, 9.0), K2: Counters(5, 1.0)}, dealloc=6)
    d = delta(a, b)
    assert d.entries == {K1: Counters(20, 9.0), K2: Counters(5, 1.0)}
    assert any("2 pg_stat_statements entries were deallocated" in e for e in d.events)
    assert any("reset or evicted and added again" in e for e in d.events)


def test_a_restart_is_not_counted() -> None:
    d = delta(reading(0, {K1: Counters(1, 1.0)}), reading(10, {K1: Counters(9, 9.0)}, started="s1"))
    assert not d.counted and d.entries == {} and "restarted" in d.events[0]


@pytest.fixture
def state() -> WatchState:
    return WatchState(WatchOptions(interval_s=10, cores=2), Thresholds(), Baseline.of(load(WORKLOAD)))


def listing(state: WatchState):  # the demo's tenant listing: 0.05 ms and a few buffers on OLD
    return next(s for s in state.baseline.workload.statements if "status = $2 ORDER BY" in s.query)


def interval_of(state: WatchState, mean_ms: float, calls: int = 50, buffers: int = 3000, **kw):
    s = listing(state)
    key = (s.database, s.fingerprint)
    c = Counters(calls, calls * mean_ms, calls * 50, calls * buffers, 0)
    return observe(state, "t", 10.0, 60.0, {key: (c, s.query)}, capacity=2.0, **kw)


def test_one_slow_interval_is_suspect_two_confirm_and_two_good_ones_recover(state: WatchState) -> None:
    first = interval_of(state, 150.0)
    assert first.call.verdict == OK and first.rows[0].state == "suspect"
    second = interval_of(state, 150.0, causes={(listing(state).database, listing(state).fingerprint): (
        Cause("never_analyzed", "public.transactions has never been analyzed on NEW",
              "ANALYZE public.transactions;"),)})
    assert second.call.verdict == REGRESSION  # 5 calls/s x 150 ms: 0.75 sessions, under half of 2 cores
    assert second.rows[0].state == "regressed"
    assert second.call.fixes == ("ANALYZE public.transactions;",)
    assert "never been analyzed" in second.call.summary
    # Back at the baseline: recovering once, recovered after two good intervals.
    recovering = interval_of(state, 0.06, buffers=5)
    assert recovering.call.verdict == REGRESSION and recovering.rows[0].state == "recovering"
    assert interval_of(state, 0.06, buffers=5).call.verdict == RECOVERED


def test_a_single_slow_burst_between_good_intervals_raises_nothing(state: WatchState) -> None:
    verdicts = [interval_of(state, ms).call.verdict for ms in (0.06, 150.0, 0.06, 150.0, 0.06)]
    assert verdicts == [OK] * 5


def test_the_rollback_call_needs_a_share_of_capacity(state: WatchState) -> None:
    # 5 calls/s x 30 ms: 0.15 sessions, far below half of 2 cores: a regression, not a rollback.
    interval_of(state, 30.0)
    call = interval_of(state, 30.0).call
    assert call.verdict == REGRESSION and "capacity 2 (cores)" in " ".join(call.evidence)
    # 40 calls/s x 30 ms: 1.2 sessions: over half of the capacity, within the window.
    assert interval_of(state, 30.0, calls=400).call.verdict == ROLLBACK
    # It stands while the regression lasts, even when the rate drops.
    assert interval_of(state, 30.0).call.verdict == ROLLBACK


def test_slower_with_the_same_work_needs_compare_s_same_plan_bar(state: WatchState) -> None:
    # 4x slower with OLD's buffers: only from 3x and 5 ms (same_plan_block_*), never below.
    base = listing(state)
    bpc = (base.shared_blks_hit + base.shared_blks_read) // base.calls
    for _ in range(3):
        small = interval_of(state, base.mean_ms * 4, calls=5000, buffers=bpc)
    assert small.call.verdict == OK  # 4x, but 0.15 ms more: under min_time_delta_ms


def test_too_few_calls_are_not_judged(state: WatchState) -> None:
    for _ in range(3):
        iv = interval_of(state, 500.0, calls=2)
    assert iv.call.verdict == OK and iv.rows[0].state == "few_calls"


def test_a_statement_not_in_the_baseline_is_new_and_ranked(state: WatchState) -> None:
    s = listing(state)
    iv = observe(state, "t", 10.0, 5.0, {
        ("postgres", "feedfacecafe"): (Counters(100, 9000.0), "SELECT 1 FROM nowhere"),
        (s.database, s.fingerprint): (Counters(50, 3.0, 50, 200), s.query)})
    assert [r.state for r in iv.rows] == ["new", "ok"]
    assert iv.rows[0].share > 0.99 and iv.rows[0].added_sessions is None


def test_memory_stays_bounded_over_many_intervals(state: WatchState) -> None:
    for i in range(500):
        observe(state, "t", 10.0, 5.0, {("postgres", f"fp{i}"): (Counters(5, 1.0), "SELECT 1")})
    assert len(state.history) == state.options.history
    assert len(state.tracks) <= 62


def test_outputs_render_the_same_interval(state: WatchState, tmp_path: Path) -> None:
    interval_of(state, 150.0)
    iv = interval_of(state, 150.0)
    d = interval_dict(iv)
    assert d["verdict"] == iv.call.verdict and d["statements"][0]["state"] == "regressed"
    write_prometheus(iv, tmp_path / "w.prom")
    names = {m.name for m in text_string_to_metric_families((tmp_path / "w.prom").read_text())}
    assert {"planguard_watch_verdict", "planguard_watch_latency_ratio",
            "planguard_watch_added_active_sessions"} <= names
    html = render_snapshot(snapshot_context(list(state.history), dsn="host=new", baseline="demo.json",
                                            started_at="t0", stopped="test", explains=1, catalog_reads=1,
                                            reconnects=0, events=[]))
    assert iv.call.verdict in html and "<script" not in html and "<polyline" in html


@pytest.mark.browser
def test_the_snapshot_reads_in_a_browser(state: WatchState, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    for ms in (0.04, 150.0, 180.0):
        iv = interval_of(state, ms, calls=200)
    path = tmp_path / "watch.html"
    path.write_text(render_snapshot(snapshot_context(
        list(state.history), dsn="host=new", baseline="app.json", started_at="t0", stopped="test", explains=1,
        catalog_reads=1, reconnects=0, events=[])), encoding="utf-8")
    with opened(path) as page:
        expect(page.locator("section.verdict .call")).to_have_text(iv.call.verdict)
        expect(page.locator("tbody tr").first.locator("td.state")).to_have_text("regressed")
        box = page.locator("svg").first.bounding_box()
        card = page.locator(".card").first.bounding_box()
        assert box and card and box["x"] + box["width"] <= card["x"] + card["width"] + 1  # the chart fits its card
