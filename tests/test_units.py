"""Config, workload file, freshness evaluation, verdict (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planguard.checks.freshness import TableStats, evaluate
from planguard.config import Thresholds, load_thresholds
from planguard.errors import ConfigError, WorkloadError
from planguard.findings import Finding
from planguard.loader import load
from planguard.verdict import decide
from planguard.workload import (
    Binding,
    ParamSet,
    Source,
    Statement,
    Workload,
)


# -- config --------------------------------------------------------------------
def test_threshold_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.planguard]\ntime_ratio = 3.0\nmin_buffers_delta = 10\n")
    assert load_thresholds(cwd=tmp_path).time_ratio == 3.0
    monkeypatch.setenv("PLANGUARD_TIME_RATIO", "4")
    assert load_thresholds(cwd=tmp_path).time_ratio == 4.0
    t = load_thresholds({"time_ratio": 5.0, "buffers_ratio": None}, cwd=tmp_path)
    assert (t.time_ratio, t.min_buffers_delta, t.buffers_ratio) == (5.0, 10, 2.0)


def test_planguard_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.planguard]\ntime_ratio = 3.0\n")
    (tmp_path / "planguard.toml").write_text("time_ratio = 1.5\n")
    assert load_thresholds(cwd=tmp_path).time_ratio == 1.5


@pytest.mark.parametrize("bad", [{"time_ratio": "fast"}, {"time_ratio": 0.5}, {"min_time_delta_ms": -1}])
def test_bad_thresholds(bad: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_thresholds(bad, cwd=tmp_path)


# -- workload file -------------------------------------------------------------
def _workload() -> Workload:
    return Workload(
        source=Source("18.1", 180001, "app", "host=x dbname=app", "2026-01-01T00:00:00+00:00"),
        statements=(Statement(
            fingerprint="abc", query="SELECT * FROM t WHERE id = $1", kind="select", calls=3,
            tables=("public.t",), bindings=(Binding(1, "compare", "public.t", "id", "integer"),),
            param_sets=(ParamSet("sampled", ("7",), ("sampled",)),)),),
    )


def test_workload_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    _workload().save(path)
    assert json.loads(path.read_text())["format_version"] == 1
    assert load(path) == _workload()


def test_a_workload_of_an_earlier_capture_still_loads(tmp_path: Path) -> None:
    """Files of format 1 written before the catalog snapshot held everything carry ``tables``
    and ``indexes``, and parameter sets without ``sources``: they load, those are ignored."""
    data = _workload().to_dict()
    data["tables"] = [{"name": "public.t", "reltuples": 10.0, "relpages": 1}]
    data["indexes"] = [{"name": "public.t_pkey", "table": "public.t", "definition": "...", "idx_scan": 4}]
    for s in data["statements"]:
        for p in s["param_sets"]:
            del p["sources"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = load(path)
    assert old.statements[0].param_sets[0].sources == () and old.statements[0].query == "SELECT * FROM t WHERE id = $1"


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"),
    ('{"format_version": 99, "statements": []}', "format_version 99 is not supported"),
    ('{"format_version": 1}', "malformed workload"),
    ("[1, 2]", "not a planguard workload"),
])
def test_bad_workload_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.json"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=message):
        load(path)


def test_missing_workload_file(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="cannot read workload"):
        load(tmp_path / "nope.json")


# -- freshness (recorded catalog snapshots) ------------------------------------
def _stats(**kw: object) -> TableStats:
    base = dict(name="public.t", relkind="r", reltuples=1e6, relpages=10000, size_bytes=80 << 20,
                columns=6, columns_with_stats=6, can_read_stats=True, n_mod_since_analyze=0)
    base.update(kw)
    return TableStats(**base)  # type: ignore[arg-type]


def test_one_unanalyzed_giant_among_analyzed_tables() -> None:
    stats = [_stats(name="public.small", size_bytes=8192, reltuples=10),
             _stats(name="public.big", reltuples=-1, columns_with_stats=0),
             _stats(name="public.mid", size_bytes=1 << 20)]
    findings = evaluate(stats, Thresholds(), 180000, {"public.big": 1_000_000})
    assert [(f.kind, f.object, f.severity) for f in findings] == [("never_analyzed", "public.big", "blocker")]
    assert findings[0].remediation == "ANALYZE public.big;"
    assert "1,000,000 rows on OLD" in findings[0].message


def test_empty_unanalyzed_table_is_not_a_finding() -> None:
    assert evaluate([_stats(size_bytes=0, reltuples=-1, columns_with_stats=0)], Thresholds(), 180000) == []


def test_without_pg_stats_access_reltuples_decides() -> None:
    f = evaluate([_stats(can_read_stats=False, columns_with_stats=0, reltuples=-1)], Thresholds(), 150000)
    assert f and "grant SELECT" in f[0].message
    assert evaluate([_stats(can_read_stats=False, columns_with_stats=0, reltuples=-1)], Thresholds(), 130000) == []


def test_stale_stats_threshold() -> None:
    assert evaluate([_stats(n_mod_since_analyze=150_000)], Thresholds(), 180000) == []
    f = evaluate([_stats(n_mod_since_analyze=300_000)], Thresholds(), 180000)
    assert [(x.kind, x.severity) for x in f] == [("stale_stats", "warning")]


# -- verdict -------------------------------------------------------------------
def test_verdict_blockers_first_and_exit_codes() -> None:
    w = Finding("stale_stats", "warning", "public.a", "stale", "ANALYZE public.a;")
    b1 = Finding("plan_regression", "blocker", "statement x", "slower", "")
    b2 = Finding("never_analyzed", "blocker", "public.t", "no stats", "ANALYZE public.t;")
    v = decide([w, b1, b2])
    assert v.decision == "NO-GO" and v.exit_code == 1
    assert v.reasons == ("never_analyzed: no stats", "plan_regression: slower")
    go = decide([w])
    assert go.decision == "GO" and go.exit_code == 0 and "stale_stats: stale" in go.reasons
    assert decide([]).reasons == ("no blocker found",)


def test_finding_severity_is_checked() -> None:
    with pytest.raises(ValueError):
        Finding("x", "fatal", "o", "m", "r")


def test_default_thresholds_are_the_documented_ones() -> None:
    t = Thresholds()
    assert (t.time_ratio, t.min_time_delta_ms, t.buffers_ratio, t.min_buffers_delta) == (2.0, 1.0, 2.0, 1000)
    assert (t.alpha, t.max_runs, t.impact_block_aas, t.stale_mod_fraction) == (0.01, 20, 0.05, 0.2)
