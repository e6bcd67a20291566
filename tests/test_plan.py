"""Plan model on real EXPLAIN JSON from PostgreSQL 15 and 18 (no server)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest

from planguard.plan import (
    PlanFormatError,
    PlanNode,
    indexes_used,
    parse_plan,
    relations,
    render_text,
    shape_fingerprint,
)
from tests.conftest import fixture_names, plan_fixture

ALL = fixture_names()


def test_fixtures_cover_two_major_versions() -> None:
    majors = {name.split("_")[0] for name in ALL}
    assert len(ALL) >= 20
    assert {"pg18"} <= majors


@pytest.mark.parametrize("name", ALL)
def test_every_recorded_plan_parses_and_renders(name: str) -> None:
    plan = parse_plan(plan_fixture(name))
    nodes = list(plan.nodes())
    assert nodes and plan.execution_ms is not None and plan.execution_ms >= 0
    text = render_text(plan)
    assert text.splitlines()[0].startswith(plan.root.label)
    assert "Execution Time" in text
    assert len(shape_fingerprint(plan)) == 16


def test_parse_accepts_text_list_and_dict_forms() -> None:
    raw = plan_fixture("pg18_tenant_list")
    fp = shape_fingerprint(parse_plan(raw))
    assert shape_fingerprint(parse_plan(json.dumps(raw))) == fp
    assert shape_fingerprint(parse_plan(raw[0])) == fp


def test_fractional_actual_rows_of_pg18_are_kept() -> None:
    plan = parse_plan(plan_fixture("pg18_memoize"))
    rows = [n.actual_rows for n in plan.nodes() if n.actual_rows is not None]
    assert rows and all(isinstance(r, float) for r in rows)


def test_fingerprint_ignores_costs_rows_and_timings() -> None:
    raw = plan_fixture("pg18_hash_join_agg")
    changed = copy.deepcopy(raw)

    def scramble(node: dict) -> None:
        for key in ("Total Cost", "Startup Cost", "Plan Rows", "Actual Rows", "Actual Total Time",
                    "Shared Hit Blocks"):
            if key in node:
                node[key] = node[key] * 7 + 1
        for child in node.get("Plans", []):
            scramble(child)

    scramble(changed[0]["Plan"])
    changed[0]["Execution Time"] = 12345.0
    assert shape_fingerprint(parse_plan(raw)) == shape_fingerprint(parse_plan(changed))


def test_fingerprint_sees_a_different_index() -> None:
    good = parse_plan(plan_fixture("pg18_tenant_list"))
    bad = parse_plan(plan_fixture("pg18_tenant_list_unanalyzed"))
    assert shape_fingerprint(good) != shape_fingerprint(bad)
    assert indexes_used(good) == ("transactions_tenant_created_idx",)
    assert indexes_used(bad) == ("transactions_status_tenant_idx",)


def test_same_plan_on_15_and_18_has_the_same_fingerprint() -> None:
    if "pg15_tenant_list" not in ALL:
        pytest.skip("fixtures were recorded without PostgreSQL 15")
    assert shape_fingerprint(parse_plan(plan_fixture("pg15_tenant_list"))) == \
        shape_fingerprint(parse_plan(plan_fixture("pg18_tenant_list")))


def test_relations_are_schema_qualified_from_verbose_output() -> None:
    plan = parse_plan(plan_fixture("pg18_account_join"))
    assert relations(plan) == ("public.accounts", "public.transactions")


def test_buffers_come_from_the_root_totals() -> None:
    raw = plan_fixture("pg18_tenant_list_unanalyzed")
    plan = parse_plan(raw)
    root = raw[0]["Plan"]
    assert plan.shared_buffers == root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)
    assert plan.shared_buffers > 100


def test_unknown_node_types_are_kept() -> None:
    raw = [{"Plan": {"Node Type": "Quantum Scan", "Plans": [{"Node Type": "Seq Scan",
            "Relation Name": "t", "Schema": "s"}]}, "Execution Time": 1.0}]
    plan = parse_plan(raw)
    assert [n.node_type for n in plan.nodes()] == ["Quantum Scan", "Seq Scan"]
    assert "Quantum Scan" in render_text(plan)


def test_parse_does_not_modify_its_input() -> None:
    raw = plan_fixture("pg18_cte_subplan")
    before = json.dumps(raw, sort_keys=True)
    parse_plan(raw)
    assert json.dumps(raw, sort_keys=True) == before


@pytest.mark.parametrize("bad", ["not json", "[]", '{"Query": 1}', '[{"Plan": {"Node": 1}}]'])
def test_bad_input_raises_plan_format_error(bad: str) -> None:
    with pytest.raises(PlanFormatError):
        parse_plan(bad)


def test_q_error_on_the_unanalyzed_flip() -> None:
    plan = parse_plan(plan_fixture("pg18_tenant_list_unanalyzed"))
    heap = next(n for n in plan.nodes() if n.node_type == "Bitmap Heap Scan")
    assert heap.q_error is not None and heap.q_error > 1000  # estimated 4 rows, got ~95,000


@pytest.mark.parametrize(("name", "kind"), [("pg18_sort_spill", "sort"), ("pg18_hash_spill", "hash")])
def test_spills_are_recognised(name: str, kind: str) -> None:
    spills = [n.spill for n in parse_plan(plan_fixture(name)).nodes() if n.spill]
    assert spills and spills[0].startswith(kind)


def test_no_spill_in_plans_that_fit_in_memory() -> None:
    for name in ("pg18_tenant_list", "pg18_hash_join_agg", "pg18_merge_join"):
        assert not [n.spill for n in parse_plan(plan_fixture(name)).nodes() if n.spill]


@pytest.mark.parametrize("major", ["pg15", "pg18"])
def test_newer_node_types_parse_and_render(major: str) -> None:
    """Incremental Sort, partition pruning, Merge Append, triggers: recorded on both versions."""
    types = {name: {n.node_type for n in parse_plan(plan_fixture(f"{major}_{name}")).nodes()}
             for name in ("incremental_sort", "partition_pruning", "merge_append", "triggers")}
    assert "Incremental Sort" in types["incremental_sort"]
    assert "Append" in types["partition_pruning"] and "Merge Append" in types["merge_append"]
    pruned = parse_plan(plan_fixture(f"{major}_partition_pruning"))
    append = next(n for n in pruned.nodes() if n.node_type == "Append")
    assert append.raw.get("Subplans Removed") == 2 and "Subplans Removed: 2" in render_text(pruned)
    trig = parse_plan(plan_fixture(f"{major}_triggers"))
    assert trig.triggers and "Trigger audited_touch" in render_text(trig)


def test_jit_is_kept_when_the_server_has_it() -> None:
    jit_plans = [parse_plan(plan_fixture(n)) for n in fixture_names() if n.endswith("_jit")]
    with_jit = [p for p in jit_plans if p.jit]
    if not with_jit:
        pytest.skip("no recorded server was built with JIT")
    assert "JIT:" in render_text(with_jit[0])


def test_self_join_scans_are_told_apart_by_alias() -> None:
    from planguard.diff import _scans

    scans = _scans(parse_plan(plan_fixture("pg18_self_join")))
    assert {"public.accounts AS a", "public.accounts AS b"} <= set(scans)


def test_plans_round_trip_through_their_json() -> None:
    """A plan written back as EXPLAIN JSON reads as the same plan: recordings replay exactly."""
    from planguard.plan import plan_json

    for name in fixture_names():
        plan = parse_plan(plan_fixture(name))
        again = parse_plan(plan_json(plan))
        assert again == plan and [n.raw for n in again.nodes()] == [n.raw for n in plan.nodes()], name
        assert render_text(again) == render_text(plan)


def _recursive_walk(node: PlanNode) -> Iterator[PlanNode]:
    yield node
    for child in node.children:
        yield from _recursive_walk(child)


def test_the_listed_nodes_and_cached_figures_are_what_a_fresh_walk_gives() -> None:
    """The iterative walk, the node list and the relations below each node (computed once per
    plan, for speed) give the same answers as walking the tree again; the fingerprint kept on
    the plan is the one computed from scratch."""
    import hashlib

    from planguard.plan import _shape

    for name in fixture_names():
        plan = parse_plan(plan_fixture(name))
        again = list(_recursive_walk(plan.root))
        assert [id(n) for n in plan.root.walk()] == [id(n) for n in again], name
        assert [id(n) for n in plan.nodes()] == [id(n) for n in again] == [id(n) for n in plan.flat], name
        for node in again:
            assert plan.relations_below[id(node)] == frozenset(
                x.relation for x in _recursive_walk(node) if x.relation), name
        canon = json.dumps(_shape(plan.root), separators=(",", ":"))
        assert shape_fingerprint(plan) == hashlib.sha1(canon.encode()).hexdigest()[:16], name


def test_a_plan_keeps_its_json_compressed_and_reads_it_back_read_only() -> None:
    """A node's raw is its EXPLAIN object as given ("Plans" too), read-only, decoded from the
    plan's compressed JSON: the plan keeps nothing of the objects it was given, so changing
    them after does not change it. The JSON written back carries each child once, under its
    parent's "Plans"; ``compact=False`` reads the given objects through views instead."""
    import copy

    from planguard.plan import plan_json, raw_json

    data = plan_fixture("pg18_self_join")
    original = copy.deepcopy(data)
    plan = parse_plan(data)
    top = data[0] if isinstance(data, list) else data
    assert plan.root.raw["Node Type"] == top["Plan"]["Node Type"]
    with pytest.raises(TypeError):
        plan.root.raw["Node Type"] = "Seq Scan"  # type: ignore[index]
    top["Plan"]["Node Type"] = "Changed after"
    top["Plan"]["Plans"] = []
    orig_top = original[0] if isinstance(original, list) else original
    assert plan.root.raw["Node Type"] == orig_top["Plan"]["Node Type"] == plan.root.node_type
    written = plan_json(plan)[0]["Plan"]
    assert written == orig_top["Plan"] == raw_json(plan)
    assert written is not raw_json(plan)  # each a fresh copy
    view = parse_plan(copy.deepcopy(original), compact=False)
    assert view == plan and plan_json(view) == plan_json(plan)


def test_the_slots_judging_reads_are_what_each_nodes_json_says() -> None:
    """What judging reads of a node (buffers, workers, rows removed, spills, q-error) is copied
    into slots at parse time: it equals what the node's EXPLAIN object says, on every
    recorded plan."""
    from planguard.plan import SCAN_METHODS

    for name in fixture_names():
        plan = parse_plan(plan_fixture(name))
        for n in plan.nodes():
            r = n.raw
            assert n.shared_hit == int(r.get("Shared Hit Blocks", 0)), name
            assert n.shared_read == int(r.get("Shared Read Blocks", 0)), name
            assert n.temp_blocks == int(r.get("Temp Read Blocks", 0)) + int(r.get("Temp Written Blocks", 0))
            assert n.rows_removed_by_filter == float(r.get("Rows Removed by Filter", 0)), name
            assert n.workers_planned == r.get("Workers Planned"), name
            assert n.workers_launched == r.get("Workers Launched"), name
            assert n.partial_mode == r.get("Partial Mode"), name
            assert n.scan_method == SCAN_METHODS.get(r["Node Type"]), name
            # Every slot from its own key (nodes are built positionally, for speed).
            assert n.node_type == r["Node Type"] and n.alias == r.get("Alias"), name
            rel = r.get("Relation Name")
            assert n.relation == (f"{r['Schema']}.{rel}" if rel and r.get("Schema") else rel), name
            assert (n.index_name, n.join_type, n.strategy, n.parent_relationship, n.subplan_name) == (
                r.get("Index Name"), r.get("Join Type"), r.get("Strategy"), r.get("Parent Relationship"),
                r.get("Subplan Name")), name
            assert n.parallel_aware == bool(r.get("Parallel Aware")), name
            assert (n.plan_rows, n.total_cost) == (float(r["Plan Rows"]), float(r["Total Cost"])), name
            assert n.actual_rows == r.get("Actual Rows") and n.actual_loops == r.get("Actual Loops"), name
            assert len(n.children) == len(r.get("Plans", ())), name
            if "Actual Rows" in r and r.get("Actual Loops"):
                est, act = max(float(r["Plan Rows"]), 1.0), max(float(r["Actual Rows"]), 1.0)
                assert n.q_error == max(est / act, act / est), name
            else:
                assert n.q_error is None, name
        root = plan.root.raw
        assert plan.shared_buffers == int(root.get("Shared Hit Blocks", 0)) + int(root.get("Shared Read Blocks", 0))


def test_spills_are_read_from_the_nodes_json() -> None:
    """An external sort and a multi-batch hash say they went to disk; an in-memory sort does not."""
    def spill(extra: dict[str, object]) -> str | None:
        return parse_plan({"Plan": {"Node Type": "Sort", **extra}}).root.spill

    assert spill({"Sort Method": "external merge", "Sort Space Type": "Disk"}) == \
        "sort spilled to disk (external merge)"
    assert spill({"Sort Method": "quicksort", "Sort Space Type": "Memory"}) is None
    assert spill({"Hash Batches": 4}) == "hash spilled to disk (4 batches)"
    assert spill({"HashAgg Batches": 5, "Disk Usage": 1024}) == "hash aggregate spilled to disk (1024 kB)"
    assert spill({}) is None


def test_decoded_plans_are_kept_for_the_last_few_only() -> None:
    """Reading raw decodes a plan's nodes once; past DECODED_KEPT plans read, the oldest are
    dropped and decoded again when read again, with the same objects' contents."""
    from planguard import plan as plan_module

    plans = [parse_plan(plan_fixture("pg18_self_join")) for _ in range(plan_module.DECODED_KEPT + 5)]
    first = dict(plans[0].root.raw)
    assert plans[0].root.source is not None and plans[0].root.source.decoded is not None
    for p in plans[1:]:
        assert [n.raw["Node Type"] for n in p.nodes()] == [n.node_type for n in p.nodes()]
    assert plans[0].root.source.decoded is None  # dropped: the most recent are kept
    assert plans[-1].root.source is not None and plans[-1].root.source.decoded is not None
    assert dict(plans[0].root.raw) == first
    assert len(plan_module._Source._recent) <= plan_module.DECODED_KEPT


def test_long_lived_blocks_nest_and_give_the_collector_back() -> None:
    import gc

    from planguard.heap import long_lived

    enabled = gc.isenabled()
    with long_lived():
        assert not gc.isenabled() and gc.get_freeze_count() > 0
        with long_lived():
            assert not gc.isenabled()
        assert not gc.isenabled() and gc.get_freeze_count() > 0
    assert gc.isenabled() == enabled and gc.get_freeze_count() == 0
