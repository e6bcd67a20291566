"""Measurements as tables, with pandas: every run of a comparison, and summaries of its result.

``runs_frame`` is one row per EXPLAIN ANALYZE execution that counted (both sides, custom and
generic plans, the confirmation rounds): the raw material of every call, for a reviewer's
own analysis (``compare --runs FILE.csv``).  ``summaries`` tabulates a comparison by status,
by table and by impact at production rates, which the command line prints after the verdict.
The judgement itself (``planguard.judge``) does not use pandas: it stays pure and small.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from planguard.errors import PlanguardError
from planguard.model import Comparison, impact_of
from planguard.plan import shape_fingerprint
from planguard.recording import Recording
from planguard.workload import Workload

RUN_COLUMNS = ("database", "statement", "fingerprint", "query", "param_set", "mode", "side", "run",
               "execution_ms", "planning_ms", "shared_buffers", "temp_buffers", "shared_read",
               "plan_fingerprint")


def runs_frame(recording: Recording, workload: Workload) -> pd.DataFrame:
    """Every measured run, one row each; ``run`` is its place in the series (pairs share it)."""
    by_key = {s.key: s for s in workload.statements}
    rows = []
    for side, rec in (("old", recording.old), ("new", recording.new)):
        for (key, label, mode), runs in rec.runs.items():
            stmt = by_key.get(key)
            for i, r in enumerate(runs):
                rows.append((
                    stmt.database if stmt else None, key, stmt.fingerprint if stmt else key,
                    stmt.query[:200] if stmt else "", label, mode, side, i, r.execution_ms, r.planning_ms,
                    r.shared_buffers, r.temp_buffers, r.shared_read, shape_fingerprint(r.plan),
                ))
    return pd.DataFrame.from_records(rows, columns=list(RUN_COLUMNS))


def export_runs(recording: Recording, workload: Workload, path: Path) -> int:
    """Write every run to ``path`` (CSV, or Parquet for ``.parquet`` when pyarrow is there); rows."""
    frame = runs_frame(recording, workload)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
    except ImportError as exc:
        raise PlanguardError(f"cannot write {path}: {exc} (write a .csv instead)") from exc
    except OSError as exc:
        raise PlanguardError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return len(frame)


def summaries(c: Comparison) -> dict[str, pd.DataFrame]:
    """The comparison by status, by table and by impact (the statements adding the most load)."""
    rows = []
    for r in c.statements:
        s = r.statement
        imp = impact_of(s, r.param_sets[0] if r.param_sets else None)
        for table in s.tables or ("",):
            rows.append({"statement": s.short_id, "status": r.status, "table": table, "calls": s.calls,
                         "old_total_ms": s.total_ms,
                         "extra_sessions": None if imp is None else imp.extra_sessions})
    frame = pd.DataFrame.from_records(rows, columns=["statement", "status", "table", "calls", "old_total_ms",
                                                      "extra_sessions"])
    unique = frame.drop_duplicates("statement")
    by_status = unique.groupby("status").agg(statements=("statement", "size"), calls=("calls", "sum"),
                                             old_total_ms=("old_total_ms", "sum"))
    by_table = frame.groupby("table").agg(statements=("statement", "nunique"),
                                          regressed=("status", lambda s: int((s == "regressed").sum())),
                                          old_total_ms=("old_total_ms", "sum"))
    by_impact = (unique.dropna(subset=["extra_sessions"]).sort_values("extra_sessions", ascending=False)
                 .head(10)[["statement", "status", "extra_sessions"]])
    return {"status": by_status, "table": by_table.sort_values("old_total_ms", ascending=False),
            "impact": by_impact.reset_index(drop=True)}
