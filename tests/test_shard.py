"""Sharded comparisons without a server: the split, and a merge equal to an unsharded run.

The recorded postmortem (tests/fixtures/recordings) is cut into shards as ``compare --shard``
would have recorded them (each shard's statements; the catalog in shard 1 only), each shard
judged and saved like the command saves it, then merged: the merged JSON is the unsharded
JSON, but for when it ran and where the recording lies.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from planguard.config import Thresholds
from planguard.judge import comparison_of
from planguard.loader import load
from planguard.recording import Recording, SideRecord
from planguard.report import to_dict
from planguard.shard import (
    SET_COST_MS,
    ShardError,
    cost,
    merge,
    parse,
    ran_as,
    recording_beside,
    select,
    split,
    workload_beside,
    workload_id,
)
from planguard.workload import Workload
from tests.fixtures.record_recordings import OUT
from tests.test_cli import assert_one_line_error, run

NAMES = ("demo_as_restored", "demo_after_analyze")
VOLATILE = ("generated_at", "duration_s", "shard", "recording")


def _recorded(name: str) -> tuple[Workload, Recording]:
    return load(OUT / f"{name}.workload.json"), Recording.load(OUT / f"{name}.recording.json")


def _side_of(side: SideRecord, keys: set[str], first: bool) -> SideRecord:
    """What one shard's run records on one side: its statements; the catalog in shard 1 only,
    and the counters there (they add up to the whole run's)."""
    return SideRecord(
        info=side.info,
        runs={k: v for k, v in side.runs.items() if k[0] in keys},
        errors={k: v for k, v in side.errors.items() if k[0] in keys},
        warmups={k: v for k, v in side.warmups.items() if k[0] in keys},
        auto_generic={k: v for k, v in side.auto_generic.items() if k in keys},
        plan_only={k: v for k, v in side.plan_only.items() if k in keys},
        readiness=dict(side.readiness) if first else {},
        digests={k: v for k, v in side.digests.items() if k[0] in keys},
        executions=side.executions if first else 0, server_ms=side.server_ms if first else 0.0,
        reconnects=side.reconnects if first else 0)


def _save_shards(tmp: Path, name: str, count: int, thresholds: Thresholds | None = None,
                 workload: Workload | None = None) -> list[Path]:
    """Each shard of the recorded comparison saved as 'compare --shard I/N' saves it."""
    full, rec = _recorded(name)
    full = workload or full
    out = []
    for index in range(1, count + 1):
        part, info = select(full, index, count)
        keys = {s.key for s in part.statements}
        shard_rec = Recording(_side_of(rec.old, keys, index == 1), _side_of(rec.new, keys, index == 1))
        base = tmp / f"{name}-shard-{index}-of-{count}.json"
        shard_rec.save(recording_beside(base))
        ran_as(full, part).save(workload_beside(recording_beside(base)))
        result = comparison_of(part, shard_rec, thresholds or Thresholds(), repeat=5, redact=False,
                               started_at=f"2026-01-0{index}T00:00:00+00:00", duration_s=float(index))
        result = replace(result, shard=info, recording=str(recording_beside(base)))
        base.write_text(json.dumps(to_dict(result), default=str))
        out.append(base)
    return out


def _stable(report: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in report.items() if k not in VOLATILE}, indent=1, sort_keys=True,
                      default=str)


def test_shard_specs_parse_and_bad_ones_fail() -> None:
    assert parse("2/3") == (2, 3)
    assert parse(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "x", "1/0", "1", "-1/2", "1/2/3"):
        with pytest.raises(ShardError, match="--shard"):
            parse(bad)


@pytest.mark.parametrize("spec", ["0/3", "4/3", "x"])
def test_a_bad_shard_is_one_line_and_exit_2(spec: str, tmp_path: Path) -> None:
    res = run("compare", "host=127.0.0.1 port=1", "host=127.0.0.1 port=1", "-w",
              str(OUT / "demo_as_restored.workload.json"), "--shard", spec, cwd=tmp_path)
    assert_one_line_error(res, f"--shard {spec!r}")


def test_the_split_is_a_balanced_deterministic_partition() -> None:
    workload, _ = _recorded("demo_as_restored")
    for count in (1, 2, 3, 5, len(workload.statements) + 2):
        shards = split(workload, count)
        keys = [k for shard in shards for k in shard]
        assert sorted(keys) == sorted(s.key for s in workload.statements)  # each exactly once
        # The same split from the statements in any order: every runner computes the same one.
        reordered = replace(workload, statements=tuple(reversed(workload.statements)))
        assert [set(s) for s in split(reordered, count)] == [set(s) for s in shards]
        # LPT: no shard carries more than the lightest plus the heaviest single statement.
        costs = {s.key: cost(s) for s in workload.statements}
        loads = [sum(costs[k] for k in shard) for shard in shards]
        assert max(loads) <= min(loads) + max(costs.values()) + 1e-9
        # ... and each shard lists its statements in workload order.
        order = {s.key: i for i, s in enumerate(workload.statements)}
        assert all(list(s) == sorted(s, key=order.__getitem__) for s in shards)
    assert all(cost(s) >= SET_COST_MS for s in workload.statements)


def test_the_heaviest_statements_go_to_different_shards() -> None:
    workload, _ = _recorded("demo_as_restored")
    heavy = sorted(workload.statements, key=lambda s: (-cost(s), s.key))[:3]
    shards = split(workload, 3)
    assert {next(i for i, sh in enumerate(shards) if s.key in sh) for s in heavy} == {0, 1, 2}


def test_only_shard_1_judges_the_catalog(tmp_path: Path) -> None:
    paths = _save_shards(tmp_path, "demo_as_restored", 2)
    first, second = (json.loads(p.read_text()) for p in paths)
    assert first["shard"]["catalog_checks"] is True and second["shard"]["catalog_checks"] is False
    assert first["shard"]["workload"] == second["shard"]["workload"]
    catalog = {"never_analyzed", "stale_stats"}
    assert catalog & {f["kind"] for f in first["findings"]}
    assert not catalog & {f["kind"] for f in second["findings"]}
    assert second["tables"] == []


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("count", [2, 3])
def test_merged_shards_equal_the_unsharded_run(name: str, count: int, tmp_path: Path) -> None:
    workload, rec = _recorded(name)
    whole = to_dict(comparison_of(workload, rec, Thresholds(), repeat=5, redact=False,
                                  started_at="recorded", duration_s=0.0))
    merged = to_dict(merge(_save_shards(tmp_path, name, count)))
    assert merged["shard"] is None
    assert merged["generated_at"] == "2026-01-01T00:00:00+00:00"
    assert _stable(merged) == _stable(whole)


def test_merge_on_the_command_line(tmp_path: Path) -> None:
    paths = _save_shards(tmp_path, "demo_as_restored", 2)
    res = run("merge", *map(str, paths), "--json", str(tmp_path / "m.json"), "-o", str(tmp_path / "m.html"),
              "--md", str(tmp_path / "m.md"), cwd=tmp_path)
    assert res.returncode == 1, res.stderr  # the postmortem: NO-GO
    assert "NO-GO" in res.stdout and "merged 2 shards" in res.stdout
    assert json.loads((tmp_path / "m.json").read_text())["verdict"] == "NO-GO"
    assert (tmp_path / "m.html").is_file() and (tmp_path / "m.md").is_file()


def test_merge_refuses_what_is_not_one_comparison(tmp_path: Path) -> None:
    a = _save_shards(tmp_path / "a", "demo_as_restored", 3)
    with pytest.raises(ShardError, match="given twice"):
        merge([a[0], a[0], a[1], a[2]])
    with pytest.raises(ShardError, match="shard 3 of 3 missing"):
        merge(a[:2])
    b = _save_shards(tmp_path / "b", "demo_as_restored", 2)
    with pytest.raises(ShardError, match="different number of shards"):
        merge([a[0], a[1], b[1]])
    strict = _save_shards(tmp_path / "c", "demo_as_restored", 3, thresholds=Thresholds(time_ratio=3.0))
    with pytest.raises(ShardError, match="different thresholds"):
        merge([a[0], a[1], strict[2]])
    workload, _ = _recorded("demo_as_restored")
    fewer = replace(workload, statements=workload.statements[1:])
    assert workload_id(fewer) != workload_id(workload)
    other = _save_shards(tmp_path / "d", "demo_as_restored", 3, workload=fewer)
    with pytest.raises(ShardError, match="different workloads"):
        merge([a[0], a[1], other[2]])
    # Other clusters: the same shard recorded against another NEW.
    rec = Recording.load(recording_beside(a[2]))
    assert rec.new.info is not None
    moved = replace(rec, new=replace(rec.new, info=replace(rec.new.info, identity="elsewhere")))
    moved.save(recording_beside(a[2]))
    with pytest.raises(ShardError, match="different clusters"):
        merge(a)
    res = run("merge", *map(str, a[:2]), cwd=tmp_path)
    assert_one_line_error(res, "missing")


def test_merge_refuses_an_unsharded_result(tmp_path: Path) -> None:
    res = run("merge", str(OUT / "demo_as_restored.report.json"), cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_a_workload_of_several_databases_is_not_sharded_yet() -> None:
    workload, _ = _recorded("demo_as_restored")
    a, b = workload.statements[0], workload.statements[1]
    two = replace(workload, statements=(replace(a, database="app"), replace(b, database="billing")))
    with pytest.raises(ShardError, match="spans 2 databases"):
        select(two, 1, 2)
    assert select(two, 1, 1)[0] == two  # one shard is the whole workload
