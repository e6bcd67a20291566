"""A sharded comparison on real clusters: two shards, then merge; progress from the runner.

NEW lacks an index OLD's plan uses.  Shard 1 is run through the library (its progress events
collected), shard 2 through the command line as a CI job runs it (throttled progress lines);
``planguard merge`` then gives one NO-GO whose regression names the missing index, a cause
only shard 1's catalog checks know, whichever shard measured the statement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from planguard.compare import compare
from planguard.params import analyze
from planguard.progress import Step
from planguard.recording import Recording
from planguard.report import context_of, write_context
from planguard.shard import recording_beside, split, workload_beside
from planguard.workload import ParamSet, Source, Statement, Workload

pytestmark = pytest.mark.db

TABLE = """
CREATE TABLE orders (id bigserial PRIMARY KEY, code text NOT NULL, owner int NOT NULL, qty int NOT NULL);
INSERT INTO orders (code, owner, qty) SELECT 'c' || g, g % 50, g % 7 FROM generate_series(1, 100000) g;
CREATE INDEX orders_owner_idx ON orders (owner);
ANALYZE orders;
"""
QUERIES = [  # (query, values, OLD's mean ms: what the split balances)
    ("SELECT id, qty FROM orders WHERE code = $1", ("c4242",), 0.05),
    ("SELECT count(*) FROM orders WHERE owner = $1", ("7",), 2.0),
    ("SELECT id FROM orders WHERE id = $1", ("99",), 0.02),
    ("SELECT max(qty) FROM orders WHERE owner = $1 AND qty > $2", ("3", "2"), 1.5),
]


def _workload(dbname: str) -> Workload:
    stmts = []
    for query, values, mean in QUERIES:
        shape = analyze(query)
        stmts.append(Statement(fingerprint=shape.fingerprint, query=query, kind="select", calls=1000,
                               total_ms=mean * 1000, mean_ms=mean, tables=("public.orders",),
                               param_sets=(ParamSet("given", values),)))
    return Workload(Source("x", 0, dbname, "", "2026-01-01T00:00:00+00:00"), tuple(stmts))


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planguard.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


def test_two_shards_and_merge_on_real_clusters(olddb: str, newdb: str, dbname: str, tmp_path: Path) -> None:
    for dsn in (olddb, newdb):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)
    with psycopg.connect(olddb, autocommit=True) as conn:
        conn.execute("CREATE INDEX orders_code_idx ON orders (code); ANALYZE orders")
    workload = _workload(dbname)
    wl_path = tmp_path / "app.json"
    workload.save(wl_path)
    code_key = workload.statements[0].key
    # The split is deterministic: the statement that regresses falls in shard 2, whose run reads
    # no catalog; the cause (the index missing on NEW) is in shard 1's catalog checks.
    assert code_key in split(workload, 2)[1] and split(workload, 2)[0]

    # Shard 1 through the library, with its progress events.
    steps: list[Step] = []
    reports = tmp_path / "reports"
    base = reports / "app-shard-1-of-2.json"
    first = compare(olddb, newdb, workload, repeat=3, on_step=steps.append, shard=(1, 2),
                    save_recording=recording_beside(base), save_workload=workload_beside(recording_beside(base)))
    write_context(context_of(first), {"json": base})
    mine = len(first.statements)
    assert [s.done for s in steps] == list(range(mine + 1)) and {s.total for s in steps} == {mine}
    regressed = sum(1 for r in first.statements if r.status == "regressed")
    assert steps[-1].regressions == regressed

    # Shard 2 as a CI job runs it: progress as throttled lines on stderr, not a bar.
    env = {**os.environ, "CI": "true"}
    res = _cli("compare", olddb, newdb, "-w", str(wl_path), "--shard", "2/2", "--repeat", "3",
               cwd=tmp_path, env=env)
    assert res.returncode in (0, 1), res.stderr
    assert "Traceback" not in res.stderr
    assert "compare shard 2/2: " in res.stderr and "the catalog checks run in shard 1" in res.stderr
    second = json.loads((reports / "app-shard-2-of-2.json").read_text())
    assert second["shard"]["index"] == 2 and second["shard"]["catalog_checks"] is False
    assert second["tables"] == []
    alone = {c["kind"] for f in second["findings"] for c in f["causes"]}
    assert "missing_index" not in alone  # shard 2 alone cannot know it
    # Shard 2 never read the catalogs: its recording holds none.
    rec2 = Recording.load(reports / "app-shard-2-of-2.recording.json")
    assert rec2.old.readiness == {} and rec2.new.readiness == {}
    assert (reports / "app-shard-2-of-2.workload.json").is_file()
    assert mine + len(second["statements"]) == len(QUERIES)

    res = _cli("merge", str(base), str(reports / "app-shard-2-of-2.json"), cwd=tmp_path, env=env)
    assert res.returncode == 1, (res.stdout, res.stderr)
    merged = json.loads((reports / "app.json").read_text())
    assert merged["verdict"] == "NO-GO" and merged["shard"] is None
    assert len(merged["statements"]) == len(QUERIES)
    status = {s["fingerprint"]: s["status"] for s in merged["statements"]}
    assert status[code_key] == "regressed", status
    causes = {c["kind"] for f in merged["findings"] if f["severity"] == "blocker" for c in f["causes"]}
    assert "missing_index" in causes, merged["reasons"]
    assert (reports / "app.html").is_file()
