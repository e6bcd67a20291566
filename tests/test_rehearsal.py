"""The rehearsal's schedule, tally and verdict, without a server.

Outcomes are built here the way the replay records them (arrival, connection, end, error
class); the workload is the demo's recorded capture (tests/fixtures).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from planguard.config import Thresholds
from planguard.rehearsal import (
    GO,
    INCONCLUSIVE,
    NO_GO,
    NOT_RUN,
    POOL_TIMEOUT,
    Outcome,
    RehearseOptions,
    Tick,
    arrivals,
    headline,
    judge,
    plan_rehearsal,
)
from planguard.report.rehearsal import rehearsal_dict, render_html, schema
from planguard.statdelta import Counters
from planguard.tally import tally
from planguard.watch import Cause
from planguard.workload import ParamSet, Source, Statement, Workload
from tests.browser import opened
from tests.test_cli import assert_one_line_error, run

T = Thresholds()


def stmt(fp: str, query: str, rate: float | None, mean_ms: float, *, sets: int = 2, kind: str = "select",
         db: str | None = "app", buffers: int = 10) -> Statement:
    calls = 1000
    return Statement(fingerprint=fp * 4, query=query, kind=kind, calls=calls, mean_ms=mean_ms,
                     total_ms=mean_ms * calls, shared_blks_hit=buffers * calls, calls_per_second=rate,
                     database=db, tables=("public.t",),
                     param_sets=tuple(ParamSet(f"s{i}", (str(i),)) for i in range(sets)))


def workload(*statements: Statement, window: float | None = None) -> Workload:
    src = Source("15.8", 150008, "app", "host=old", "2026-12-01T00:00:00+00:00", stats_window_seconds=window)
    return Workload(source=src, statements=tuple(statements))


FAST = stmt("aaaa", "SELECT * FROM t WHERE id = $1", 40.0, 0.1)
SLOW = stmt("bbbb", "SELECT * FROM t WHERE tenant = $1 ORDER BY created LIMIT 50", 10.0, 0.2)


def test_plan_takes_captured_rates_and_says_what_it_leaves_out() -> None:
    no_rate = stmt("cccc", "SELECT 1 FROM t WHERE a = $1", None, 1.0)
    no_params = replace(stmt("dddd", "SELECT 1 FROM t WHERE b = $1", 5.0, 1.0), param_sets=())
    other_db = stmt("eeee", "SELECT 2 FROM t WHERE c = $1", 5.0, 1.0, db="billing")
    skipped = replace(stmt("ffff", "SELECT 3 FROM t WHERE d = $1", 5.0, 1.0), skip_reason="a utility statement")
    p = plan_rehearsal(workload(FAST, SLOW, no_rate, no_params, other_db, skipped), "app")
    assert [t.statement for t in p.targets] == [FAST, SLOW]
    assert math.isclose(p.total_rate, 50.0)
    why = dict(p.left_out)
    assert "no call rate" in why[no_rate.key] and "no parameter values" in why[no_params.key]
    assert "database 'billing'" in why[other_db.key] and why[skipped.key] == "a utility statement"
    # OLD's average active sessions: 40 x 0.1 ms + 10 x 0.2 ms = 0.006; the pool is 3 x that + 2.
    assert math.isclose(p.observed_sessions, 0.006) and p.connections == 3
    assert plan_rehearsal(workload(FAST), "app", connections=12).connections == 12


def test_a_rate_comes_from_the_stats_window_when_none_was_captured_and_one_database_may_be_renamed() -> None:
    s = stmt("cccc", "SELECT 1 FROM t WHERE a = $1", None, 1.0)
    p = plan_rehearsal(workload(s, window=100.0), "app_restored")
    assert [t.rate for t in p.targets] == [10.0], "1000 calls over 100 s; the only database, renamed"


def test_arrivals_are_poisson_at_the_rate_seeded_and_draw_every_parameter_set() -> None:
    p = plan_rehearsal(workload(FAST, SLOW), "app")
    got = list(arrivals(p.targets, 2.0, 100.0, seed=7))
    assert got == list(arrivals(p.targets, 2.0, 100.0, seed=7)), "the same seed, the same schedule"
    assert got != list(arrivals(p.targets, 2.0, 100.0, seed=8))
    assert [a.at for a in got] == sorted(a.at for a in got) and all(0 <= a.at < 100 for a in got)
    fast = [a for a in got if a.target == 0]
    slow = [a for a in got if a.target == 1]
    # 80/s and 20/s for 100 s: Poisson counts within 5 standard deviations.
    assert abs(len(fast) - 8000) < 5 * math.sqrt(8000) and abs(len(slow) - 2000) < 5 * math.sqrt(2000)
    share = sum(1 for a in fast if a.params == 0) / len(fast)
    assert abs(share - 0.5) < 0.05, "the two parameter sets drawn in proportion"


def outcomes(target: int, n: int, rate: float, service_s: float, *, error: str | None = None,
             wait_s: float = 0.0, start_at: float = 0.0) -> list[Outcome]:
    out = []
    for i in range(n):
        at = start_at + i / rate
        out.append(Outcome(target, at, at + wait_s, at + wait_s + service_s, error, at))
    return out


def quiet_ticks(seconds: int, in_use: int = 1) -> list[Tick]:
    return [Tick(s, 10, 10, in_use, 0, in_use, 0, 1.0) for s in range(1, seconds + 1)]


def test_a_step_that_serves_its_calls_holds_and_tabulates_percentiles() -> None:
    p = plan_rehearsal(workload(FAST, SLOW), "app")
    outs = outcomes(0, 400, 40, 0.001) + outcomes(1, 100, 10, 0.004)
    server = {0: Counters(400, 40.0, 400, 4000, 0), 1: Counters(100, 20.0, 5000, 1000, 0)}
    s = tally(p, 1.0, 10.0, outs, quiet_ticks(10), server, RehearseOptions(), client_cpu_s=0.5, wall_s=10.0)
    assert s.held and s.first_behind_s is None and s.saturation == 0
    assert s.arrived == s.served == 500 and math.isclose(s.achieved_rate, 50.0, rel_tol=0.02)
    fast = s.statements[0]
    assert fast.service_ms["p50"] == pytest.approx(1.0) and fast.latency_ms["p99"] == pytest.approx(1.0)
    assert fast.server is not None and fast.server.mean_ms == pytest.approx(0.1)
    # Busy time: 400 x 1 ms against 100 x 4 ms: half each.
    assert fast.time_share == pytest.approx(0.5) and s.client_cpu == pytest.approx(0.05)
    r = judge(p, [s], RehearseOptions(), T)
    assert r.verdict == GO and not r.reasons and r.exit_code == 0
    assert headline(r).startswith("GO: NEW held 1x the captured rate")


def test_a_saturated_pool_is_no_go_naming_the_statement_that_starves_it_with_its_causes() -> None:
    p = plan_rehearsal(workload(FAST, SLOW), "app")
    # SLOW takes 300 ms a call on NEW: 10 calls/s need 3 connections of the 3 the pool has, FAST waits.
    outs = (outcomes(1, 60, 10, 0.3, wait_s=0.5) + outcomes(0, 200, 40, 0.001, wait_s=0.8)
            + outcomes(0, 200, 40, 0.0, error=POOL_TIMEOUT, start_at=5.0))
    outs = [replace(o, start=None) if o.error == POOL_TIMEOUT else o for o in outs]
    ticks = [Tick(s, 50, 20, 3, 12, 3, 0, 900.0) for s in range(1, 11)]
    server = {1: Counters(60, 60 * 290.0, 3000, 60 * 6000, 0), 0: Counters(200, 20.0, 200, 2000, 0)}
    s = tally(p, 1.0, 10.0, outs, ticks, server, RehearseOptions(), client_cpu_s=0.2, wall_s=10.0)
    assert not s.held and s.first_behind_s == 1 and s.saturation == 1.0
    assert s.top is not None and s.top.short_id == "bbbbbbbb" and s.top.time_share > 0.9
    assert s.statements[0].not_served == {POOL_TIMEOUT: 200}
    causes = {SLOW.key: (Cause("never_analyzed", "public.t has never been analyzed on NEW",
                               "ANALYZE public.t;"),)}
    r = judge(p, [s], RehearseOptions(), T, causes)
    assert r.verdict == NO_GO and r.exit_code == 1
    first = r.reasons[0]
    assert first.kind == "cannot_sustain" and first.statement == SLOW.key and first.causes == causes[SLOW.key]
    assert "bbbbbbbb" in first.text and "pool of 3 connections was saturated" in first.text
    # 290 ms on NEW's server against 0.2 ms, 6000 buffers a call against 10: the planner's doing.
    slow = next(x for x in r.reasons if x.kind == "slower_under_load")
    assert slow.statement == SLOW.key and slow.blocks and "6,000 buffers per call against 10" in slow.text
    assert not any(x.statement == FAST.key for x in r.reasons), "FAST only waited behind SLOW"
    doc = rehearsal_dict(r, dsn="host=new", workload="app.json", started_at="2026-12-03T00:00:00+00:00",
                         seconds=12.0)
    jsonschema.validate(json.loads(json.dumps(doc)), schema())
    assert doc["fixes"] == ["ANALYZE public.t;"] and doc["steps"][0]["top_statement"] == SLOW.key
    html = render_html(doc)
    assert "NO-GO" in html and "ANALYZE public.t;" in html and html.count("<polyline") == 4


def test_slower_on_the_server_with_the_same_work_warns_and_time_alone_never_blocks() -> None:
    p = plan_rehearsal(workload(FAST, SLOW), "app")
    outs = outcomes(0, 400, 40, 0.002) + outcomes(1, 100, 10, 0.03)
    # SLOW: 25 ms against 0.2 ms with the same 10 buffers a call: CPU contention can do that.
    server = {1: Counters(100, 2500.0, 100, 1000, 0), 0: Counters(400, 40.0, 400, 4000, 0)}
    s = tally(p, 1.0, 10.0, outs, quiet_ticks(10), server, RehearseOptions(), client_cpu_s=1, wall_s=10)
    r = judge(p, [s], RehearseOptions(), T)
    assert r.verdict == GO and [x.kind for x in r.reasons] == ["slower_same_work"]
    assert not r.reasons[0].blocks
    # Without pg_stat_statements on NEW, the client's timings alone decide nothing.
    s2 = tally(p, 1.0, 10.0, outs, quiet_ticks(10), None, RehearseOptions(), client_cpu_s=1, wall_s=10)
    assert judge(p, [s2], RehearseOptions(), T).verdict == GO


def test_failing_calls_are_no_go_by_error_class_and_lock_timeouts_count() -> None:
    ins = stmt("gggg", "INSERT INTO t (id, v) VALUES (DEFAULT, $1)", 20.0, 0.1, kind="insert")
    p = plan_rehearsal(workload(FAST, ins), "app")
    outs = (outcomes(0, 400, 40, 0.001) + outcomes(1, 150, 20, 0.001)
            + outcomes(1, 50, 20, 0.001, error="UniqueViolation (23505)", start_at=7.5))
    s = tally(p, 1.0, 10.0, outs, quiet_ticks(10), None, RehearseOptions(), client_cpu_s=1, wall_s=10)
    r = judge(p, [s], RehearseOptions(), T, {ins.key: (Cause("sequence_behind", "t_id_seq is behind", "SELECT setval(...)"),)})
    assert r.verdict == NO_GO and r.reasons[0].kind == "errors"
    assert "50 of 200 calls failed (UniqueViolation (23505) x50)" in r.reasons[0].text
    assert r.reasons[0].causes[0].kind == "sequence_behind"


def test_a_ramp_gives_the_headroom_and_a_client_bound_step_proves_nothing() -> None:
    p = plan_rehearsal(workload(FAST), "app")
    o = RehearseOptions(ramp=(0.5, 1.0, 2.0))
    held = [tally(p, r, 10.0, outcomes(0, int(400 * r), 40 * r, 0.001), quiet_ticks(10), None, o, 1, 10)
            for r in (0.5, 1.0)]
    behind = [Tick(s, 80, 30, 3, 40, 3, 0, 2000.0) for s in range(1, 11)]
    lost = outcomes(0, 500, 50, 0.0, error=POOL_TIMEOUT, start_at=0.0)
    failed = tally(p, 2.0, 10.0, outcomes(0, 300, 30, 0.1) + [replace(x, start=None) for x in lost], behind,
                   None, o, 1, 10)
    r = judge(p, [*held, failed], o, T)
    assert r.verdict == GO, "NEW holds 1.0x; 2x is headroom asked for, not the rate required"
    assert r.headroom == 1.0 and r.saturation_rate == 2.0
    assert "headroom: NEW held up to 1x and fell behind at 2x" in headline(r)
    above = judge(p, [failed], RehearseOptions(ramp=(2.0,)), T)
    assert above.verdict == INCONCLUSIVE, "2x not held says nothing of 1x"
    assert judge(p, [replace(held[1], rate=2.0)], RehearseOptions(ramp=(2.0,)), T).verdict == GO
    # The replay itself lagging with connections free: not NEW's fault, and not a GO either.
    late = [replace(x, sent_at=x.at + 0.5) for x in outcomes(0, 400, 40, 0.001)]
    step = tally(p, 1.0, 10.0, late, [Tick(s, 40, 20, 1, 0, 1, 0, 1.0) for s in range(1, 11)], None,
                 RehearseOptions(), 1, 10)
    step = replace(step, held=False)
    got = judge(p, [step], RehearseOptions(), T)
    assert step.client_bound and got.verdict == INCONCLUSIVE and got.reasons[0].kind == "client_bound"


def test_a_stopped_step_is_inconclusive_and_calls_never_run_are_not_errors() -> None:
    p = plan_rehearsal(workload(FAST), "app")
    outs = [*outcomes(0, 100, 40, 0.001), Outcome(0, 2.6, None, 2.7, NOT_RUN, 2.6)]
    s = tally(p, 1.0, 60.0, outs, quiet_ticks(2), None, RehearseOptions(), 0.1, 2.7,
              stopped="interrupted by SIGINT")
    assert not s.held and s.statements[0].errors == {} and s.statements[0].not_served == {NOT_RUN: 1}
    r = judge(p, [s], RehearseOptions(), T)
    assert r.verdict == INCONCLUSIVE and r.exit_code == 1


REHEARSALS = Path(__file__).parent / "fixtures" / "rehearsals"


@pytest.mark.parametrize("name", ["demo-ramp-restored", "demo-analyzed"])
def test_recorded_rehearsals_match_the_schema_and_render(name: str) -> None:
    """Real results (``python -m benchmarks.rehearse_bench`` on the demo, 15 -> 18) as saved."""
    doc = json.loads((REHEARSALS / f"{name}.json").read_text())
    jsonschema.validate(doc, schema())
    html = render_html(doc)
    assert "<script" not in html and doc["verdict"] in html
    assert html.count("<details") == len(doc["steps"]) and html.count("<details open") == 1


@pytest.mark.browser
def test_the_rehearsal_page_reads_in_a_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    doc = json.loads((REHEARSALS / "demo-ramp-restored.json").read_text())
    path = tmp_path / "rehearse.html"
    path.write_text(render_html(doc), encoding="utf-8")
    with opened(path) as page:
        expect(page.locator("section.verdict .call")).to_have_text("NO-GO")
        expect(page.locator("pre.fix")).to_contain_text("ANALYZE public.transactions;")
        expect(page.locator(".reason").first).to_contain_text("cannot sustain")
        expect(page.locator(".reason").nth(1)).to_contain_text("causes: as above")
        # Only the last step's statements are open; the charts fit the page.
        expect(page.locator("details[open] tbody tr").first).to_contain_text("221f488a")
        if len(doc["steps"]) > 1:
            assert not page.locator("details").first.locator("tbody tr").first.is_visible()
        main = page.locator("main").bounding_box()
        for i in range(2):
            box = page.locator("svg").nth(i).bounding_box()
            assert box and main and box["width"] > 500 and box["x"] + box["width"] <= main["x"] + main["width"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--ramp", "1,0.5"], "ascending order"),
    (["--ramp", "a,b"], "not a list of numbers"),
    (["--rate", "0"], "--rate"),
    (["--duration", "0.5"], "--duration must be at least 1 s"),
    (["--connections", "0"], "--connections"),
])
def test_bad_options_are_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    wl = tmp_path / "w.json"
    workload(FAST).save(wl)
    res = run("rehearse", "host=127.0.0.1 port=1", "--workload", str(wl), *args)
    assert_one_line_error(res, needle)


def test_an_unreachable_new_and_a_missing_workload_are_one_line_and_exit_2(tmp_path: Path) -> None:
    wl = tmp_path / "w.json"
    workload(FAST).save(wl)
    res = run("rehearse", "host=127.0.0.1 port=1 connect_timeout=2", "--workload", str(wl),
              "--json", str(tmp_path / "r.json"))
    assert_one_line_error(res, "cannot connect to new cluster")
    assert not (tmp_path / "r.json").exists()
    assert_one_line_error(run("rehearse", "host=x", "--workload", str(tmp_path / "nope.json")), "nope.json")
