"""Adaptive, sequential measurement (issue 15): a series stops once its call is settled.

The rule (``planguard.calls.settled``) is tested without a server on recorded runs: cut
short where the rule stops, every recorded series is called as with all its runs.  One
test on real clusters checks the runner stops where the rule says, on run counts (never
on times).
"""

from __future__ import annotations

import statistics

import psycopg
import pytest

from planguard.calls import classify, settled
from planguard.compare import compare
from planguard.config import Thresholds
from planguard.measure import Run, summarize
from planguard.params import analyze
from planguard.plan import parse_plan
from planguard.recording import Recording
from planguard.timing import clearly_same, weigh
from planguard.workload import ParamSet, Source, Statement, Workload
from tests.conftest import plan_fixture
from tests.fixtures.record_recordings import OUT

T = Thresholds()


def _stop(old: list[Run], new: list[Run], noise: object) -> int | None:
    """Where the sequential rule stops a recorded series (None: it never settles)."""
    return next((m for m in range(2, min(len(old), len(new)) + 1)
                 if settled(summarize(old[:m]), summarize(new[:m]), T, noise)), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["demo_as_restored", "demo_after_analyze"])
def test_a_series_cut_where_the_rule_stops_gets_the_call_of_all_its_runs(name: str) -> None:
    from planguard.timing import noise_floor

    rec = Recording.load(OUT / f"{name}.recording.json")
    noise = noise_floor([r.execution_ms for r in runs] for side in (rec.old, rec.new)
                        for runs in side.runs.values())
    stops = []
    for key, old in rec.old.runs.items():
        new = rec.new.runs[key]
        full = classify(summarize(old), summarize(new), T, noise)
        stop = _stop(old, new, noise)
        stops.append(stop or len(old))
        if stop is not None:
            cut = classify(summarize(old[:stop]), summarize(new[:stop]), T, noise)
            assert cut.status == full.status, (key, cut.reason, full.reason)
        if full.status == "regressed":  # buffers decide: 2 pairs, each beyond the squared bar
            assert stop == 2, full.reason
    assert statistics.median(stops) <= 3


def _run(ms: float, buffers: int, fixture: str = "pg15_index_only") -> Run:
    plan = parse_plan(plan_fixture(fixture))
    return Run(ms, 0.1, buffers, 0, plan)


def test_two_pairs_decide_only_when_the_work_differs_and_both_are_beyond_the_squared_bar() -> None:
    old = [_run(1.0, 100), _run(1.1, 100)]
    # Far more buffers, 20x slower in both pairs: settled, and regressed, after 2 pairs.
    far = [_run(20.0, 50_000), _run(22.0, 50_000)]
    assert settled(summarize(old), summarize(far), T)
    assert classify(summarize(old), summarize(far), T).status == "regressed"
    # The same work 20x slower: a time-only call, never decided by 2 pairs.
    same = [_run(20.0, 100), _run(22.0, 100)]
    assert not settled(summarize(old), summarize(same), T)
    assert classify(summarize(old), summarize(same), T).status == "unstable"
    # Other work, 3x slower: beyond the bar (2x), not its square (4x): more pairs.
    near = [_run(3.0, 50_000), _run(3.3, 50_000)]
    assert not settled(summarize(old), summarize(near), T)


def test_identical_work_and_times_well_inside_the_bars_stop_early() -> None:
    old = [_run(0.05, 100), _run(0.06, 100)]
    new = [_run(0.07, 100), _run(0.05, 100)]
    assert settled(summarize(old), summarize(new), T)
    assert classify(summarize(old), summarize(new), T).status == "unchanged"
    # One run a side is never enough, and a time apart by more than the root of the bar is not clear.
    assert not clearly_same([1.0], [1.0], time_ratio=2.0, min_delta_ms=1.0)
    assert not clearly_same([10.0, 10.0], [15.0, 10.0], time_ratio=2.0, min_delta_ms=1.0)
    assert clearly_same([10.0, 10.0], [13.0, 9.0], time_ratio=2.0, min_delta_ms=1.0)


def test_the_squared_bar_applies_below_min_pairs_only() -> None:
    kw = {"time_ratio": 2.0, "min_delta_ms": 1.0, "alpha": 0.01}
    assert weigh([1.0, 1.0], [5.0, 5.0], deterministic=True, **kw).decisive
    assert not weigh([1.0, 1.0], [3.0, 3.0], deterministic=True, **kw).decisive
    assert not weigh([1.0, 1.0], [5.0, 5.0], **kw).decisive
    assert weigh([1.0, 1.0, 1.0], [3.0, 3.0, 3.0], **kw).decisive
    assert weigh([1.0, 1.0], [5.0, 5.0], deterministic=True, paired=False, **kw).decisive


ITEMS = """
CREATE TABLE items (id bigserial PRIMARY KEY, owner int NOT NULL, qty int NOT NULL, pad text);
INSERT INTO items (owner, qty, pad) SELECT g % 1000, g, repeat('x', 40) FROM generate_series(1, 200000) g;
CREATE INDEX items_owner_idx ON items (owner);
ANALYZE items;
"""


@pytest.mark.db
def test_the_runner_stops_a_buffers_decided_regression_at_two_pairs(olddb: str, newdb: str,
                                                                     dbname: str) -> None:
    for dsn in (olddb, newdb):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ITEMS)
    with psycopg.connect(newdb, autocommit=True) as conn:
        conn.execute("DROP INDEX items_owner_idx")  # NEW scans the whole table
    queries = [("SELECT count(*), sum(qty) FROM items WHERE owner = $1", ("7",)),
               ("SELECT qty FROM items WHERE id = $1", ("42",))]
    stmts = tuple(Statement(fingerprint=analyze(q).fingerprint, query=q, kind="select", calls=100,
                            tables=("public.items",), param_sets=(ParamSet("given", v),))
                  for q, v in queries)
    wl = Workload(Source("x", 0, dbname, "", "2026-01-01"), stmts)
    result = compare(olddb, newdb, wl, repeat=5)
    (regressed, same) = (next(r for r in result.statements if r.statement.query == q) for q, _ in queries)
    assert regressed.status == "regressed", regressed.reason
    assert same.status == "unchanged", same.reason
    (p,) = regressed.param_sets
    assert (p.old.runs, p.new.runs) == (2, 2), p.call.reason
    # Its generic plan stops once its comparisons with the custom plans settle too: those
    # compare separate series on a noisy NEW, so only the call is asserted here.
    assert p.generic is not None and p.generic.call.status == "regressed"
    assert p.generic.old.runs == p.generic.new.runs
    (q,) = same.param_sets
    assert q.old.runs == q.new.runs and q.old.runs < 5, q.call.reason
    # The fixed rule still takes repeat pairs of each.
    fixed = compare(olddb, newdb, wl, repeat=5, adaptive=False)
    assert {r.status for r in fixed.statements} == {"regressed", "unchanged"}
    assert all(p.old.runs == 5 for r in fixed.statements for p in r.param_sets)


def test_a_majority_of_the_fixed_pairs_inside_the_ratio_settles_the_call_exactly() -> None:
    """3 of 5 pairs within 2x either way: the median of 5 is too, whatever the other two say."""
    old = [_run(10.0, 100), _run(10.0, 100), _run(10.0, 100)]
    new = [_run(16.0, 100), _run(6.0, 100), _run(15.0, 100)]  # not clearly the same: 1.6x apart
    assert not settled(summarize(old[:2]), summarize(new[:2]), T, repeat=5)
    assert settled(summarize(old), summarize(new), T, repeat=5)
    for rest in ([_run(50.0, 100)] * 2, [_run(1.0, 100)] * 2):  # the fixed rule's other two pairs
        full = classify(summarize(old + [_run(10.0, 100)] * 2), summarize(new + rest), T)
        assert full.status == classify(summarize(old), summarize(new), T).status == "unchanged"


def test_a_regression_whose_severity_is_borderline_is_measured_on() -> None:
    """Buffers decide the call, not its severity: that rests on the added active sessions at
    production rates (impact_block_aas, 0.05), so 2 pairs near that bar do not settle it."""
    old = [_run(0.1, 10), _run(0.1, 10)]
    new = [_run(50.0, 5000), _run(52.0, 5000)]  # ~0.05 s more a call
    assert settled(summarize(old), summarize(new), T, calls_per_second=0.01)  # 0.0005 sessions
    assert settled(summarize(old), summarize(new), T, calls_per_second=100.0)  # 5 sessions
    assert not settled(summarize(old), summarize(new), T, calls_per_second=1.0)  # 0.05: the bar


def test_a_generic_series_doing_other_work_settles_early_only_on_a_decisive_time_call() -> None:
    """NEW's generic plan against its custom plan (``generic_plan_slower``): with other work
    (more buffers), two runs that are not yet slower must not stop the series, since the next
    runs can still show it slower; with the same work they may; decisively slower always does."""
    from planguard.calls import settled_slower

    custom = [_run(1.0, 100), _run(1.1, 100)]
    other_work = [_run(1.2, 5_000), _run(1.3, 5_000)]  # noisy, not (yet) slower: more buffers
    assert not settled_slower(summarize(custom), summarize(other_work), T)
    same_work = [_run(1.2, 100), _run(1.3, 100)]
    assert settled_slower(summarize(custom), summarize(same_work), T)
    far = [_run(9.0, 5_000), _run(9.5, 5_000)]
    assert settled_slower(summarize(custom), summarize(far), T)


def test_a_series_settled_under_the_early_noise_floor_is_measured_again_under_the_final_one() -> None:
    """Recorded in a trust run (misleading_index): OLD 4.50/0.80 ms, NEW 26.6/23.4 ms on
    another plan with 146x the buffers.  With the noise floor of the runs taken so far (none
    yet for 1-10 ms), 2 pairs beyond the squared bar settled it; the floor of the whole run
    (x2.6, from later series) put the first pair under the squared bar, and the judge called
    it ``unstable``: a missed regression.  ``unsettled`` finds it, more pairs regress it."""
    from planguard.calls import noise_of, unsettled
    from planguard.timing import noise_floor

    old = [_run(4.495, 43), _run(0.795, 43)]
    new = [_run(26.6, 6286, "pg15_account_join"), _run(23.358, 6286, "pg15_account_join")]
    early = noise_floor([[4.495, 0.795], [26.6, 23.358]])  # too few runs for a floor: x1
    assert settled(summarize(old), summarize(new), T, early)  # where the runner stopped
    noisy = {f"later {i}": [_run(2.0, 10), _run(5.2, 10)] for i in range(10)}  # ratio 2.6 each
    olds, news = {"rare": old, **noisy}, {"rare": new, **noisy}
    final = noise_of(olds, news)
    assert final.factor(2.65) == pytest.approx(2.6, rel=0.01)
    assert classify(summarize(old), summarize(new), T, final).status == "unstable"
    assert unsettled(olds, news, list(olds), T, repeat=5) == {"rare": 5}
    old += [_run(0.81, 43), _run(0.79, 43), _run(0.80, 43)]
    new += [_run(21.0, 6286, "pg15_account_join")] * 3
    olds["rare"], news["rare"] = old, new
    assert classify(summarize(old), summarize(new), T, noise_of(olds, news)).status == "regressed"
    assert unsettled(olds, news, list(olds), T, repeat=5) == {}


def test_unstable_at_max_runs_is_not_measured_again() -> None:
    from planguard.calls import unsettled

    # NEW 3x slower in 14 pairs of 20, 3x faster in 6: beyond the bar, never confirmed
    slower = [i % 10 not in (1, 4, 7) for i in range(T.max_runs)]
    old = [_run(1.0 if s else 3.0, 100) for s in slower]
    new = [_run(3.0 if s else 1.0, 100) for s in slower]
    assert classify(summarize(old), summarize(new), T).status == "unstable"
    assert unsettled({"k": old}, {"k": new}, ["k"], T, repeat=5) == {}
    assert unsettled({"k": old[:5]}, {"k": new[:5]}, ["k"], T, repeat=5) == {"k": 5}
    assert unsettled({"k": old[:17]}, {"k": new[:17]}, ["k"], T, repeat=5) == {"k": 3}
    assert unsettled({"k": old}, {}, ["k"], T, repeat=5) == {}  # one side failed: nothing to pair


def test_a_generic_series_whose_unpaired_comparison_is_unsettled_gets_more_runs_with_its_custom_one() -> None:
    """Recorded in a test run under load (test_generic_plan_much_slower_than_custom_is_flagged):
    NEW's custom plan 0.34 ms, its generic plan 2.90 ms (8.5x), 2 runs each.  The judge compares
    them unpaired; under the final noise floor 2 runs a side do not decide it: both series (the
    comparison rests on the shorter one) are measured again."""
    from planguard.calls import noise_of, unsettled

    t = Thresholds(min_time_delta_ms=0.2)
    custom = [_run(0.33, 10), _run(0.35, 10)]
    generic = [_run(2.85, 900, "pg15_account_join"), _run(2.95, 900, "pg15_account_join")]
    noisy = {f"later {i}": [_run(0.30, 10), _run(0.90, 10)] for i in range(10)}  # x3 under 1 ms
    olds = {"c": custom, "g": generic, **noisy}
    news = {"c": custom, "g": generic, **noisy}
    floor = noise_of(olds, news)
    assert classify(summarize(custom), summarize(generic), t, floor, paired=False).status == "unstable"
    assert classify(summarize(custom), summarize(generic), t, paired=False).status == "regressed"  # early
    assert unsettled(olds, news, ["c", "g"], t, repeat=5) == {}  # each paired call is settled
    assert unsettled(olds, news, ["c", "g"], t, repeat=5, unpaired={"g": "c"}) == {"g": 5, "c": 5}
    custom5 = custom + [_run(0.34, 10)] * 3
    generic5 = generic + [_run(2.9, 900, "pg15_account_join")] * 3
    olds.update(c=custom5, g=generic5)
    news.update(c=custom5, g=generic5)
    assert classify(summarize(custom5), summarize(generic5), t, noise_of(olds, news),
                    paired=False).status == "regressed"
    assert unsettled(olds, news, ["c", "g"], t, repeat=5, unpaired={"g": "c"}) == {}
