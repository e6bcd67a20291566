"""Readiness checks' evaluate on snapshots recorded from real clusters (no server).

The snapshots in tests/fixtures/snapshots/ come from tests/fixtures/record_snapshots.py
(``make fixtures``); the findings each scenario must yield are defined next to the
SQL that built it, in tests/fixtures/readiness_scenarios.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from planguard.checks import indexes, sequences, settings, statistics
from planguard.checks.readiness import (
    ClusterSnapshot,
    FamilyError,
    evaluate_all,
    load_snapshot,
    merge_findings,
    save_snapshot,
)
from planguard.config import Thresholds
from planguard.errors import SnapshotError
from planguard.findings import Finding
from tests.fixtures.readiness_scenarios import SCENARIOS, Scenario

SNAPSHOTS = Path(__file__).parent / "fixtures" / "snapshots"
RECORDED = [s for s in SCENARIOS if (SNAPSHOTS / f"{s.name}.json").exists()]


def _load(name: str) -> tuple[ClusterSnapshot, ClusterSnapshot, dict[str, Any]]:
    data = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    return ClusterSnapshot.from_dict(data["old"]), ClusterSnapshot.from_dict(data["new"]), data


def _keys(findings: list[Finding], kinds: frozenset[str] | None = None) -> set[tuple[str, str, str]]:
    return {(f.kind, f.severity, f.object) for f in findings if kinds is None or f.kind in kinds}


def test_every_scenario_was_recorded() -> None:
    assert [s.name for s in RECORDED] == [s.name for s in SCENARIOS]
    assert (SNAPSHOTS / "clean.json").exists()


@pytest.mark.parametrize("scenario", RECORDED, ids=[s.name for s in RECORDED])
def test_recorded_fault_yields_exactly_its_finding(scenario: Scenario) -> None:
    old, new, data = _load(scenario.name)
    assert not old.errors and not new.errors
    findings = evaluate_all(old, new, Thresholds(), frozenset(data["used_on_new"]))
    assert _keys(findings, scenario.kinds) == scenario.expected_for(data["database"], data["role"])
    assert len({(f.kind, f.object) for f in findings}) == len(findings)  # one finding per kind and object


def test_recorded_clean_pair_yields_nothing_across_versions() -> None:
    old, new, _ = _load("clean")
    assert evaluate_all(old, new, Thresholds()) == []
    if old.server_version_num // 10000 == new.server_version_num // 10000:
        pytest.skip("recorded with a single PostgreSQL version")
    # ... although built-in defaults differ between the versions (not drift: the new
    # version's intended behaviour), and a setting only one version has exists.
    assert old.settings and new.settings
    o = {s.name: s for s in old.settings.settings}
    n = {s.name: s for s in new.settings.settings}
    assert any(o[k].boot != n[k].boot for k in set(o) & set(n)) or set(n) != set(o)


@pytest.mark.parametrize("name", [*(s.name for s in RECORDED), "clean"])
def test_snapshot_round_trips_through_json(name: str, tmp_path: Path) -> None:
    old, new, _ = _load(name)
    for snap in (old, new):
        assert ClusterSnapshot.from_dict(json.loads(json.dumps(asdict(snap)))) == snap
        save_snapshot(snap, tmp_path / "s.json")
        assert load_snapshot(tmp_path / "s.json") == snap


def test_bad_snapshots_raise_one_line_errors(tmp_path: Path) -> None:
    old, _, data = _load("clean")
    with pytest.raises(SnapshotError, match="format 1"):
        ClusterSnapshot.from_dict({**data["old"], "format": 99})
    broken = json.loads(json.dumps(data["old"]))
    broken["indexes"]["indexes"][0]["valid"] = "yes"
    with pytest.raises(SnapshotError, match=r"indexes\.indexes\[0\]\.valid must be bool"):
        ClusterSnapshot.from_dict(broken)
    broken = json.loads(json.dumps(data["old"]))
    del broken["statistics"]["tables"]
    with pytest.raises(SnapshotError, match=r"statistics\.tables is missing"):
        ClusterSnapshot.from_dict(broken)
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(SnapshotError, match="not JSON"):
        load_snapshot(tmp_path / "x.json")
    with pytest.raises(SnapshotError, match="cannot read"):
        load_snapshot(tmp_path / "missing.json")
    assert old.errors == ()


# -- statistics ----------------------------------------------------------------
def test_giant_table_first_and_vacuumdb_only_where_it_exists() -> None:
    old, new, data = _load("never_analyzed")
    assert old.statistics and new.statistics
    found = [f for f in evaluate_all(old, new, Thresholds()) if f.kind == "never_analyzed"]
    assert [f.object for f in found] == ["public.giant", "public.p", "public.late"]  # biggest first
    assert all(f.remediation.startswith(f"ANALYZE {f.object};") for f in found)
    assert all(f"--missing-stats-only --dbname={data['database']}" in f.remediation for f in found)
    assert "50,000 rows on OLD" in found[0].message
    assert "autovacuum never analyzes partitioned tables" in found[1].message
    assert "column flag" in found[2].message and "index public.late_lower" in found[2].message
    on_17 = replace(new.statistics, server_version_num=170000)
    older = statistics.evaluate(old.statistics, on_17, Thresholds())
    assert {f.object for f in older if f.kind == "never_analyzed"} == {f.object for f in found}
    assert not any("vacuumdb" in f.remediation for f in older)


def test_last_analyze_alone_is_not_trusted() -> None:
    """PostgreSQL 18's pg_upgrade carries statistics without timestamps: decide on the statistics."""
    old, new, _ = _load("clean")
    assert old.statistics and new.statistics
    no_timestamps = replace(new.statistics, tables=tuple(
        replace(t, last_analyze=None, last_autoanalyze=None) for t in new.statistics.tables))
    assert statistics.evaluate(old.statistics, no_timestamps, Thresholds()) == []


def test_stale_thresholds() -> None:
    old, new, _ = _load("stale_stats")
    assert old.statistics and new.statistics
    lenient = Thresholds(row_estimate_ratio=20.0, stale_mod_fraction=5.0)
    assert statistics.evaluate(old.statistics, new.statistics, lenient) == []
    only_rows = Thresholds(stale_mod_fraction=5.0)
    found = statistics.evaluate(old.statistics, new.statistics, only_rows)
    assert {f.object for f in found} == {"public.grown", "public.lagging"}
    assert "rows modified" not in next(f for f in found if f.object == "public.grown").message


def test_stats_coverage_thresholds_and_target_remediation() -> None:
    old, new, _ = _load("stats_coverage")
    assert old.statistics and new.statistics
    th = Thresholds(ndistinct_ratio=1e9, null_frac_delta=1.0)
    table = next(f for f in statistics.evaluate(old.statistics, new.statistics, th) if f.object == "public.s")
    assert "diverge" not in table.message and "a: 1000 on OLD, default on NEW" in table.message
    assert table.remediation.splitlines() == ["ALTER TABLE public.s ALTER COLUMN a SET STATISTICS 1000;",
                                              "ANALYZE public.s;"]


# -- indexes -------------------------------------------------------------------
def test_duplicates_need_identical_opclass_collation_order_and_predicate() -> None:
    _, new, _ = _load("duplicate_index")
    assert new.indexes
    by_name = {ix.relname: ix for ix in new.indexes.indexes}
    for other in ("w_c_pattern", "w_c_lower", "w_d_partial", "w_d_desc"):
        assert not indexes._redundant_to(by_name[other], by_name[other.rsplit("_", 1)[0]])
        assert not indexes._redundant_to(by_name[other.rsplit("_", 1)[0]], by_name[other])
    assert by_name["w_b_inc"].key_count == 1 and by_name["w_b_inc"].columns == ("b", "f")
    # w_e is redundant to the unique w_e_key, never the other way round
    assert indexes._redundant_to(by_name["w_e"], by_name["w_e_key"])
    assert not indexes._redundant_to(by_name["w_e_key"], by_name["w_e"])
    # a different predicate makes the exact duplicate a different index
    changed = replace(by_name["w_e"], predicate="(e > 0)")
    assert not indexes._redundant_to(changed, by_name["w_e_key"])


def test_harmful_index_matches_bare_or_qualified_names_only() -> None:
    old, new, _ = _load("harmful_index")
    assert old.indexes and new.indexes
    for used in ({"tx_status_tenant"}, {"public.tx_status_tenant"}):
        found = indexes.harmful_indexes(old.indexes, new.indexes, used)
        assert [(f.kind, f.object) for f in found] == [("harmful_index", "public.tx_status_tenant")]
    assert indexes.harmful_indexes(old.indexes, new.indexes, {"tx_tenant_created"}) == []  # OLD uses it
    assert indexes.harmful_indexes(old.indexes, new.indexes, set()) == []


def test_renamed_index_is_not_missing() -> None:
    old, new, _ = _load("missing_extra_index")
    assert old.indexes and new.indexes
    names = {f.object for f in indexes.evaluate(old.indexes, new.indexes, Thresholds())}
    assert "public.i_c_old" not in names and "public.i_c_new" not in names


# -- sequences -----------------------------------------------------------------
def test_sequence_behind_when_descending() -> None:
    _, new, _ = _load("sequence_behind")
    assert new.sequences
    seq = next(s for s in new.sequences.sequences if s.name == "public.s1_id_seq")
    down = replace(seq, increment=-1, min_value=-1000, max_value=-1, is_called=True,
                   columns=(replace(seq.columns[0], extreme=-100),))  # min(id) = -100

    def run(last_value: int) -> list[Finding]:
        snap = replace(new.sequences, sequences=(replace(down, last_value=last_value),))
        return sequences.evaluate(replace(snap, sequences=()), snap, Thresholds())

    assert run(-200) == []  # next is -201, below every id
    found = run(-50)  # next is -51, and ids go down to -100
    assert [(f.kind, f.object) for f in found] == [("sequence_behind", "public.s1_id_seq")]
    assert found[0].remediation == "SELECT setval('public.s1_id_seq', (SELECT min(id) FROM public.s1));"


def test_sequence_capacity_threshold() -> None:
    old, new, _ = _load("sequence_capacity")
    assert old.sequences and new.sequences
    found = sequences.evaluate(old.sequences, new.sequences, Thresholds(sequence_capacity_fraction=0.95))
    assert [(f.severity, f.object) for f in found] == [("info", "public.wide_seq")]


# -- settings ------------------------------------------------------------------
def test_version_defaults_are_not_drift_but_a_changed_default_is() -> None:
    old, new, _ = _load("clean")
    assert old.settings and new.settings
    assert settings.evaluate(old.settings, new.settings, Thresholds()) == []
    tuned = tuple(replace(s, value="200", source="configuration file") if s.name == "effective_io_concurrency"
                  else s for s in new.settings.settings)
    found = settings.evaluate(old.settings, replace(new.settings, settings=tuned), Thresholds())
    assert [(f.kind, f.object) for f in found] == [("setting_diff", "effective_io_concurrency")]
    assert found[0].remediation.startswith("ALTER SYSTEM SET effective_io_concurrency = ")


def test_setting_values_displayed_in_units() -> None:
    assert settings.display("4096", "kB") == "4MB"
    assert settings.display("524288", "8kB") == "4GB"
    assert settings.display("200", "ms") == "200ms"
    assert settings.display("1.1", None) == "1.1"


# -- readiness -----------------------------------------------------------------
def test_a_family_that_failed_blocks_instead_of_passing() -> None:
    old, new, _ = _load("missing_extra_index")
    failed = replace(new, indexes=None, errors=(FamilyError("indexes", "canceling statement due to lock timeout"),))
    found = evaluate_all(old, failed, Thresholds())
    assert [(f.kind, f.severity, f.object) for f in found if f.kind.endswith("_index")] == []
    assert ("check_incomplete", "blocker", "indexes on NEW") in _keys(found)


def test_merge_keeps_one_finding_per_kind_and_object_most_severe_first() -> None:
    a = Finding("stale_stats", "warning", "public.t", "from compare", "ANALYZE public.t;")
    b = Finding("never_analyzed", "blocker", "public.t", "from readiness", "ANALYZE public.t;")
    c = Finding("never_analyzed", "warning", "public.t", "partial", "ANALYZE public.t;")
    assert merge_findings([a, c], [b]) == [a, b]
