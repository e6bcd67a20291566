"""planguard check: the catalog checklist on the postmortem's faults, and its fixes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from planguard.demo import load_old, restore_new
from tests.conftest import Pair

pytestmark = pytest.mark.db


def check(old: str, new: str, tmp: Path, name: str) -> tuple[int, dict]:
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "check", old, new,
                          "-o", str(tmp / f"{name}.html"), "--json", str(tmp / f"{name}.json")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, json.loads((tmp / f"{name}.json").read_text())


def test_check_finds_the_postmortem_faults_and_its_sql_fixes_them(
        clusters: Pair, dbname: str, olddb: str, newdb: str, tmp_path: Path) -> None:
    load_old(clusters.old, rows=20_000, iterations=50, dbname=dbname)
    restore_new(clusters.old, clusters.new, tmp_path, dbname=dbname)
    with psycopg.connect(newdb, autocommit=True) as conn:
        # rows replicated with their ids after the snapshot: the sequence stays behind
        conn.execute("INSERT INTO accounts (id, tenant_id, email, status, created_at) "
                     "SELECT id + 1000000, tenant_id, 'r' || email, status, created_at "
                     "FROM accounts WHERE id <= 10")

    code, report = check(olddb, newdb, tmp_path, "before")
    assert code == 1 and report["kind"] == "check" and report["verdict"] == "NO-GO"
    blockers = {(f["kind"], f["object"]) for f in report["findings"] if f["severity"] == "blocker"}
    assert ("never_analyzed", "public.transactions") in blockers
    assert ("sequence_behind", "public.accounts_id_seq") in blockers
    html = (tmp_path / "before.html").read_text()
    assert "readiness check" in html and "sequence_behind" in html

    with psycopg.connect(newdb, autocommit=True) as conn:
        for f in report["findings"]:
            if f["severity"] == "blocker":
                conn.execute(f["remediation"])
    code, report = check(olddb, newdb, tmp_path, "after")
    assert code == 0, report["reasons"]
    assert not [f for f in report["findings"] if f["severity"] == "blocker"]


def test_check_bad_dsn_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "check", "host=127.0.0.1 port=1", "x=y"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("planguard: error:")


def test_check_against_the_catalog_a_workload_recorded(clusters: Pair, dbname: str, olddb: str,
                                                       newdb: str, tmp_path: Path) -> None:
    """OLD as captured: its sequences kept moving after the capture, NEW is compared with
    production's truth at capture time."""
    load_old(clusters.old, rows=20_000, iterations=50, dbname=dbname)
    restore_new(clusters.old, clusters.new, tmp_path, dbname=dbname)
    wl = tmp_path / "w.json"
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "capture", "--dsn", olddb, "-o", str(wl), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(wl.read_text())["catalog"][dbname]["sequences"]["sequences"]
    with psycopg.connect(newdb, autocommit=True) as conn:
        conn.execute("ANALYZE")
    code, report = check(str(wl), newdb, tmp_path, "recorded")
    assert report["old"]["dsn"] == f"catalog recorded in {wl}"
    assert not [f for f in report["findings"] if f["kind"] == "sequence_behind"], report["findings"]
    assert code == 0, report["reasons"]
