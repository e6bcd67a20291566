"""Hand-written .sql workloads: the format (no server) and a real comparison with one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from planguard.errors import WorkloadError
from planguard.loader import load
from tests.conftest import Pair

EXAMPLE = Path(__file__).parent.parent / "workloads" / "example.sql"


def test_example_file_reads_with_names_and_sets() -> None:
    wl = load(EXAMPLE)
    assert wl.source.database == "postgres"
    names = [s.name for s in wl.statements]
    assert names[0] == "recent transactions of a tenant" and len(names) == 5
    listing = wl.statements[0]
    assert [p.label for p in listing.param_sets] == ["typical", "heavy hitter", "rare"]
    assert listing.param_sets[2].values == ("517", "failed", "50")
    assert wl.statements[2].kind == "update"
    assert wl.statements[3].param_sets == () and wl.statements[3].skip_reason is None
    assert wl.statements[4].skip_reason == "no '-- params' line in the workload file"


def test_literals_are_read_by_postgres_parser(tmp_path: Path) -> None:
    f = tmp_path / "w.sql"
    f.write_text("-- params: 'it''s', NULL, -5, '2024-01-01'::date, true, 1.5\n"
                 "SELECT 1 FROM t WHERE a = $1 AND b = $2 AND c = $3 AND d = $4 AND e = $5 AND f = $6;\n"
                 "SELECT 'é;' FROM t;  -- a semicolon in a string\n")
    wl = load(f)
    assert wl.statements[0].param_sets[0].values == ("it's", None, "-5", "2024-01-01", "true", "1.5")
    assert wl.statements[1].query == "SELECT 'é;' FROM t"


@pytest.mark.parametrize(("text", "message"), [
    ("SELECT 1;\n\nSELECT FROM WHERE;", "w.sql:3: not valid SQL"),
    ("-- params: 1, 2\nSELECT 1 FROM t WHERE a = $1;", "has 2 values, the statement has 1 parameters"),
    ("VACUUM t;", "only SELECT, INSERT, UPDATE, DELETE and MERGE"),
    ("-- params: now()\nSELECT 1 FROM t WHERE a = $1;", "must be SQL literals"),
    ("-- nothing here\n", "no statement found"),
])
def test_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "w.sql"
    f.write_text(text)
    with pytest.raises(WorkloadError, match=message):
        load(f)


@pytest.mark.db
def test_compare_with_the_example_workload(clusters: Pair, dbname: str, olddb: str, newdb: str,
                                           tmp_path: Path) -> None:
    from planguard.demo import load_old, restore_new

    load_old(clusters.old, rows=20_000, iterations=10, dbname=dbname)
    restore_new(clusters.old, clusters.new, tmp_path, dbname=dbname)
    for dsn in (newdb,):
        import psycopg
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
    out = tmp_path / "r.json"
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "compare", olddb, newdb, "-w", str(EXAMPLE),
                          "-o", str(tmp_path / "r.html"), "--json", str(out), "--repeat", "2", "-q"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode in (0, 1), res.stderr
    report = json.loads(out.read_text())
    by_status = {s["query"][:30]: s["status"] for s in report["statements"]}
    assert "error" not in by_status.values(), report["statements"]
    skipped = [s for s in report["statements"] if s["status"] == "skipped"]
    assert len(skipped) == 1 and skipped[0]["plan_only"]["old"] and skipped[0]["plan_only"]["new"]
    # The example leaves one of five statements without values on purpose: 80 % judged is
    # below min_coverage, and the verdict says so instead of giving a GO that rests on less.
    assert report["verdict"] == "NO-GO"
    blockers = [f for f in report["findings"] if f["severity"] == "blocker"]
    assert [f["kind"] for f in blockers] == ["incomplete_coverage"], report["reasons"]
    assert "judged 80.0% of the statements (4 of 5 statements)" in blockers[0]["message"]
    assert skipped[0]["fingerprint"][:8] in blockers[0]["message"]
    assert report["coverage"]["share"] == 0.8 and report["coverage"]["by"] == "statements"
    assert "judged 80.0% of the statements" in res.stdout
    # Knowingly accepted, the same comparison is a GO.
    res = subprocess.run([sys.executable, "-m", "planguard.cli", "compare", olddb, newdb, "-w", str(EXAMPLE),
                          "-o", str(tmp_path / "r.html"), "--json", str(out), "--repeat", "2", "-q",
                          "--min-coverage", "0.8"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads(out.read_text())["verdict"] == "GO"
