"""Verified fixes on real clusters: each injected fault's blocker gets an outcome, the right fix
restores OLD's plan, attribution tells statistics from the planner, applying the verified fix
script for real gives GO, and NEW's catalog is unchanged by the trials.

The faults are tests/fixtures/trust_scenarios.py's, each in a template copy of one base
database (same data and statistics) on the NEW cluster, as tests/test_trust.py uses them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from planguard.compare import compare
from planguard.report.json import to_dict
from planguard.safety import Policy
from planguard.trials import OUTCOMES
from planguard.verify import verify
from planguard.workload import Workload
from tests.conftest import Pair
from tests.fixtures.trust_scenarios import (
    SCENARIOS,
    copy_with_fault,
    drop,
    trust_base,
)

pytestmark = [pytest.mark.db, pytest.mark.slow]
BASE = "verify_base"
SAME = Policy(allow_same_cluster=True)


@pytest.fixture(scope="module")
def base(clusters: Pair) -> Iterator[tuple[str, Workload]]:
    with trust_base(clusters.new, BASE) as b:
        yield b


def _verified(clusters: Pair, base: tuple[str, Workload], name: str, fault: list[str],
              allow_locks: bool = True) -> tuple[str, dict[str, Any], dict[str, Any]]:
    dsn, wl = base
    copy = copy_with_fault(clusters.new, BASE, f"verify_{name}", fault)
    said: list[str] = []
    result = to_dict(compare(dsn, copy, wl, repeat=5, policy=SAME))
    assert result["verdict"] == "NO-GO", result["reasons"]
    return copy, result, verify(result, copy, dsn, allow_locks=allow_locks, progress=said.append) | {"said": said}


def _blockers(v: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in v["findings"] if f["severity"] == "blocker"]


def _check_common(v: dict[str, Any]) -> None:
    for f in _blockers(v):
        assert f["verification"] is not None and f["verification"]["outcome"] in OUTCOMES, f["id"]
        assert f["verification"]["summary"]
    assert v["verification"]["catalog_unchanged"], v["verification"]["catalog_diff"]


@pytest.mark.parametrize(("name", "restoring"), [
    ("unanalyzed", "never_analyzed"),
    ("drop_index", "plan_regression"),
    ("random_page_cost", "plan_regression"),
    ("misleading_index", "plan_regression"),
    ("forced_generic_plan", "generic_plan_regression"),
])
def test_the_fix_of_each_fault_restores_olds_plan(clusters: Pair, base: tuple[str, Workload], name: str,
                                                   restoring: str) -> None:
    _, _, v = _verified(clusters, base, name, SCENARIOS[name][0])
    try:
        _check_common(v)
        restored = [f for f in _blockers(v) if f["kind"] == restoring]
        assert restored, [f["kind"] for f in _blockers(v)]
        for f in restored:
            ver = f["verification"]
            assert ver["outcome"] == "restores_old_plan", (f["id"], ver)
            assert all(s["plan_restored"] and not s["still_regressed"] for s in ver["statements"])
            assert "restores OLD's plan for" in ver["summary"]
        if name == "unanalyzed":  # said before it was done, and put back after (PostgreSQL 18)
            assert any("before it is done: ANALYZE" in m and "in place" in m for m in v["said"])
            never = next(f for f in restored if f["kind"] == "never_analyzed")
            assert "pg_dump --statistics-only --table=public.transactions" in never["verification"]["reason"]
        if name in ("drop_index", "misleading_index"):
            assert any(f["verification"]["lock"] for f in restored)  # --allow-locks: the lock is said
        attributions = {s["attribution"] for s in v["statements"] if s["status"] == "regressed"}
        if name == "unanalyzed":
            assert attributions == {"statistics"}
        if name == "random_page_cost":  # the same statistics, another plan: the planner's choice
            assert attributions == {"planner"}
            notes = [s["attribution_note"] for s in v["statements"] if s["attribution"] == "planner"]
            assert all("mitigation verified: SET LOCAL" in n or "tried without OLD's plan back" in n
                       for n in notes), notes
            assert any("mitigation verified" in n for n in notes), notes
        verified = [s for s in v["fix_script"]["steps"] if s["verified"]] if v["fix_script"] else []
        if name == "unanalyzed":
            assert verified and verified[0]["verified"] == "restores_old_plan"
            assert v["fix_script"]["steps"][0] == verified[0]  # verified steps first
    finally:
        drop(clusters.new, f"verify_{name}")


def test_without_allow_locks_an_index_fix_is_not_tried_and_says_why(clusters: Pair,
                                                                    base: tuple[str, Workload]) -> None:
    _, _, v = _verified(clusters, base, "drop_index_nolocks", SCENARIOS["drop_index"][0], allow_locks=False)
    try:
        _check_common(v)
        missing = [f for f in _blockers(v) if f["kind"] == "missing_index"]
        assert missing and all(f["verification"]["outcome"] == "not_tried" for f in missing)
        assert all("--allow-locks" in f["verification"]["reason"] for f in missing)
    finally:
        drop(clusters.new, "verify_drop_index_nolocks")


def test_a_sequence_behind_is_checked_in_its_fixed_state_not_tried(clusters: Pair,
                                                                   base: tuple[str, Workload]) -> None:
    copy, _, v = _verified(clusters, base, "sequence", ["SELECT setval('transactions_id_seq', 10)",
                                                        *SCENARIOS["unanalyzed"][0]])
    try:
        _check_common(v)
        (seq,) = [f for f in _blockers(v) if f["kind"] == "sequence_behind"]
        ver = seq["verification"]
        assert ver["outcome"] == "not_tried"
        assert "the INSERT succeeds (rolled back)" in ver["reason"] and "apply it before the cutover" in ver["reason"]
        # The check drew no sequence value and left no row: NEW's catalog snapshot, sequences
        # included, is the same after the trials as before.
        assert not [d for d in v["verification"]["catalog_diff"] if d.startswith("sequence")]
        top = int(re.search(r"maximum (\d+)", ver["reason"]).group(1))  # type: ignore[union-attr]
        with psycopg.connect(copy) as conn:  # the INSERT with maximum + 1 left no row
            row = conn.execute("SELECT max(id) FROM transactions").fetchone()
            assert row is not None and row[0] == top
    finally:
        drop(clusters.new, "verify_sequence")


def test_applying_the_verified_fix_script_gives_go(clusters: Pair, base: tuple[str, Workload]) -> None:
    dsn, wl = base
    copy, _, v = _verified(clusters, base, "apply", SCENARIOS["unanalyzed"][0])
    try:
        steps = [s for s in v["fix_script"]["steps"] if s["runnable"] and s["verified"]]
        assert steps
        with psycopg.connect(copy, autocommit=True) as conn:
            for s in steps:
                conn.execute(s["sql"])
        after = compare(dsn, copy, wl, repeat=5, policy=SAME)
        assert after.verdict.decision == "GO", after.verdict.reasons
    finally:
        drop(clusters.new, "verify_apply")


@pytest.fixture(scope="module")
def base15(clusters: Pair) -> Iterator[tuple[str, Workload]]:
    """The base database on the other cluster (PostgreSQL 15 here), where HypoPG may be installed."""
    with trust_base(clusters.old, BASE, no_parallel=False) as b:
        yield b


def test_with_hypopg_a_missing_index_is_tried_hypothetically_locking_nothing(
        clusters: Pair, base15: tuple[str, Workload]) -> None:
    """HypoPG (postgresql-15-hypopg): the missing index planned as a hypothetical one, no lock,
    nothing built; below PostgreSQL 18 the attribution is an approximation and says so."""
    dsn, wl = base15
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone() is None:
            pytest.skip("HypoPG is not installed for this server (make sysdeps installs postgresql-15-hypopg)")
    copy = copy_with_fault(clusters.old, BASE, "verify_hypo",
                           [*SCENARIOS["drop_index"][0], "CREATE EXTENSION hypopg"])
    try:
        result = to_dict(compare(dsn, copy, wl, repeat=5, policy=SAME))
        v = verify(result, copy, dsn)  # no --allow-locks: nothing may take a lock
        _check_common(v)
        assert v["verification"]["hypopg"]
        missing = [f for f in _blockers(v) if f["kind"] == "missing_index"]
        assert missing
        for f in missing:
            ver = f["verification"]
            assert ver["outcome"] == "restores_old_plan", ver
            assert "hypopg_create_index" in ver["trial"] and "planned only" in ver["summary"]
            assert ver["lock"] is None
        with psycopg.connect(copy) as conn:  # nothing hypothetical or real left behind
            assert conn.execute("SELECT count(*) FROM hypopg_list_indexes").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = "
                                "'transactions_tenant_created_idx'").fetchone() == (0,)
        notes = {s["attribution_note"] for s in v["statements"] if s["attribution"]}
        assert notes and all("approximation" in n for n in notes)
    finally:
        drop(clusters.old, "verify_hypo")


def test_the_cli_verifies_on_compare_and_on_a_saved_result(clusters: Pair, base: tuple[str, Workload],
                                                           tmp_path: Path) -> None:
    dsn, wl = base
    copy = copy_with_fault(clusters.new, BASE, "verify_cli", SCENARIOS["unanalyzed"][0])
    wl_path = tmp_path / "w.json"
    wl.save(wl_path)
    try:
        out = tmp_path / "r.json"
        res = subprocess.run([sys.executable, "-m", "planguard.cli", "compare", dsn, copy, "-w", str(wl_path),
                              "--json", str(out), "-o", str(tmp_path / "r.html"), "--verify-fixes",
                              "--allow-same-cluster"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert "before it is done: ANALYZE" in res.stderr  # said before it was done
        report = json.loads(out.read_text())
        assert report["verification"]["catalog_unchanged"]
        assert "Verified fixes" in (tmp_path / "r.html").read_text()
        res = subprocess.run([sys.executable, "-m", "planguard.cli", "verify", str(out), dsn, copy, "-q"],
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 1, res.stderr
        assert "restores_old_plan" in res.stdout and "NEW's catalog: unchanged" in res.stdout
        check = tmp_path / "c.json"
        subprocess.run([sys.executable, "-m", "planguard.cli", "check", dsn, copy, "--json", str(check),
                        "-o", str(tmp_path / "c.html")], capture_output=True, text=True, timeout=300)
        res = subprocess.run([sys.executable, "-m", "planguard.cli", "verify", str(check), dsn, copy],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert res.stderr.strip().count("\n") == 0 and "needs a comparison" in res.stderr
    finally:
        drop(clusters.new, "verify_cli")
