"""Adaptive measurement at scale (issue 15, P1 and P2): one run, figures as ratios.

Starts OLD and NEW throwaway clusters with the demo's schema (NEW restored without
statistics on its big table: plans regress), runs ``--statements`` distinct synthetic
statements on OLD, captures them from ``pg_stat_statements``, then measures on the same pair:

- ``compare`` adaptive (the default) and ``compare`` with the fixed rule (``--fixed-runs``):
  server time on OLD and on NEW (planning + execution, warm-ups included) as ratios,
  measured runs per series (median and distribution), and whether every statement's status
  and every finding's severity are the same;
- P2: the adaptive compare's wall time against 1.10 × the larger side's server time + 2 s,
  and against a naive sequential loop of ``psql -c "EXPLAIN (ANALYZE, BUFFERS) …"`` over
  the same statements and parameter sets, OLD then NEW, one run each.

Asserts nothing (the machine is shared and noisy): it prints the figures and the command
that reproduces them.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from planguard import runner
from planguard.capture import capture
from planguard.clusters import Cluster, cluster_pair
from planguard.compare import compare
from planguard.demo import SCHEMA, restore_new
from planguard.model import Comparison
from planguard.params import quote_literal, render
from planguard.recording import Recording, param_sets_of
from planguard.report.json import to_dict
from planguard.workload import Workload

T_COLS = ("id", "amount", "status", "created_at", "account_id", "tenant_id")
A_COLS = ("id", "tenant_id", "email", "status", "created_at")
AGGS = ("count(*)", "sum(amount)", "avg(amount)", "max(amount)", "min(amount)", "max(created_at)")
TEN_COLS = ("id", "name", "plan", "upper(name)", "length(name)", "lower(plan)")
# How often each statement is called on OLD before the capture (its production rate):
# skewed, so regressions land on both sides of impact_block_aas, few near it.
CALLS = (40, 3, 20, 5, 10, 2, 30, 4, 15, 1, 8, 25)
GROUP_AGGS = ("count(*)", "min(created_at)", "max(created_at)", "count(DISTINCT email)", "max(id)")


def _cols(cols: tuple[str, ...], i: int, prefix: str = "") -> str:
    combos = [c for k in range(1, len(cols) + 1) for c in itertools.combinations(cols, k)]
    return ", ".join(prefix + c for c in combos[i % len(combos)])


def statements(n: int) -> list[tuple[str, Any]]:
    """``n`` distinct statements over the demo's tables (distinct texts: distinct entries in
    pg_stat_statements), each with a generator of arguments."""
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    templates = [
        (lambda i: f"SELECT {_cols(T_COLS, i)} FROM transactions WHERE tenant_id = %s AND status = %s "
                   "ORDER BY created_at DESC LIMIT 50",
         lambda r: (r.choice((1, 2, 3)), "settled")),
        (lambda i: f"SELECT {_cols(T_COLS, i, 't.')}, a.email FROM transactions t JOIN accounts a "
                   "ON a.id = t.account_id WHERE t.account_id = %s ORDER BY t.created_at DESC LIMIT 20",
         lambda r: (r.randint(1, 20_000),)),
        (lambda i: f"SELECT {_cols(AGGS, i)} FROM transactions WHERE tenant_id = %s AND created_at > %s",
         lambda r: (r.randint(4, 1000), hour_ago)),
        (lambda i: f"SELECT {_cols(A_COLS, i)} FROM accounts WHERE email = %s",
         lambda r: (f"user{r.randint(1, 20_000)}@example.com",)),
        (lambda i: f"SELECT {_cols(TEN_COLS, i)} FROM tenants WHERE id = %s",
         lambda r: (r.randint(1, 1000),)),
        (lambda i: f"SELECT a.tenant_id, {_cols(GROUP_AGGS, i)} FROM accounts a WHERE a.status = %s "
                   "GROUP BY a.tenant_id",
         lambda r: ("suspended",)),
    ]
    out = []
    for i in range(n):
        text, args = templates[i % len(templates)]
        out.append((text(i // len(templates)), args))
    return out


def build(old: Cluster, new: Cluster, rows: int, n: int, tmp: Path) -> Workload:
    accounts = max(1000, rows // 10)
    with psycopg.connect(old.dsn(), autocommit=True) as conn:
        conn.execute(SCHEMA.format(rows=rows, accounts=accounts))
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
    rng = random.Random(7)
    stmts = statements(n)
    with psycopg.connect(old.dsn(), autocommit=True, prepare_threshold=None) as conn:
        for i, (text, args) in enumerate(stmts):
            for _ in range(CALLS[i % len(CALLS)]):  # skewed call counts, as in production
                conn.execute(text, args(rng))
    restore_new(old, new, tmp)
    return capture(old.dsn(), top=n)


def literal_sql(query: str, bindings: Any, values: tuple[str | None, ...]) -> str:
    text, binds = render(query, bindings, values)
    for i in range(len(binds), 0, -1):
        text = re.sub(rf"\${i}(?!\d)", "NULL" if binds[i - 1] is None else quote_literal(binds[i - 1] or ""),
                      text)
    return text


def naive_loop(old: Cluster, new: Cluster, wl: Workload, times: dict[tuple[str, str, str], int] | None = None,
               ) -> tuple[float, int]:
    """``psql -c "EXPLAIN (ANALYZE, BUFFERS) …"`` on OLD, then on NEW, one after the other, for
    every statement and parameter set: once each, or (``times``) as many times as a compare
    executed that series on that side (custom, generic, confirmation; warm-ups included).
    Its wall time and how many psql commands ran."""
    todo = {(s.key, ps.label): literal_sql(s.query, s.bindings, ps.values)
            for s in wl.statements if not s.skip_reason for ps in param_sets_of(s)}
    n = 0
    t0 = time.perf_counter()
    for side, cluster in (("old", old), ("new", new)):
        for (key, label), text in todo.items():
            count = 1 if times is None else times.get((side, key, label), 0)
            for _ in range(count):
                subprocess.run([new.install.tool("psql"), "-X", "-q", "-d", cluster.dsn(), "-c",
                                "EXPLAIN (ANALYZE, BUFFERS) " + text], check=True, capture_output=True)
                n += 1
    return time.perf_counter() - t0, n


def executions(result: Comparison) -> dict[tuple[str, str, str], int]:
    """Per side, statement and parameter set: the runs a compare executed (warm-ups included)."""
    out: dict[tuple[str, str, str], int] = {}
    for r in result.statements:
        for p in r.param_sets:
            for side in ("old", "new"):
                ms = [getattr(x, side) for x in (p, p.generic, p.confirmation) if x is not None]
                out[(side, r.statement.key, p.label)] = sum(
                    m.runs + (m.warmup.runs if m.warmup else 0) for m in ms)
    return out


RECORDED: list[Recording] = []


def _keep(*args: Any, **kw: Any) -> Recording:
    rec = _RUN(*args, **kw)
    RECORDED.append(rec)
    return rec


_RUN, runner.run = runner.run, _keep  # the recordings, for where_time_goes


def timed(old: Cluster, new: Cluster, wl: Workload, repeat: int, adaptive: bool) -> tuple[Comparison, float]:
    t0 = time.perf_counter()
    result = compare(old.dsn(), new.dsn(), wl, repeat=repeat, adaptive=adaptive)
    return result, time.perf_counter() - t0


def where_time_goes(rec: Recording, wall: float) -> str:
    """Profiling notes from one compare's recording: of its wall time, how much the measured
    pairs took (from the client's clock), how much of that the slower server side of each
    pair explains, and what the rest is."""
    pairs = bound = 0.0
    n = 0
    for key, olds in rec.old.runs.items():
        for o, nw in zip(olds, rec.new.runs.get(key, ()), strict=False):
            if None in (o.started, o.ended, nw.started, nw.ended):
                continue
            pairs += max(o.ended, nw.ended) - min(o.started, nw.started)  # type: ignore[type-var,operator]
            bound += max(o.execution_ms + (o.planning_ms or 0),
                         nw.execution_ms + (nw.planning_ms or 0)) / 1000
            n += 1
    return (f"wall {wall:.2f} s: {n} measured pairs took {pairs:.2f} s, of which the slower side's "
            f"server time {bound:.2f} s ({(pairs - bound) / max(n, 1) * 1000:.2f} ms a pair on top: "
            f"EXPLAIN's output, the round trip, parsing the plan); the other {wall - pairs:.2f} s: "
            "warm-up runs not kept, the plan cache's choice, PREPARE/DEALLOCATE, catalogs, judging")


def calls_of(result: Comparison) -> tuple[dict[str, str], Counter[tuple[str, str, str]]]:
    statuses = {r.statement.short_id: r.status for r in result.statements}
    findings = Counter((f.kind, f.severity, f.subject.name if f.subject else f.object)
                       for f in result.findings)
    return statuses, findings


def series_table(result: Comparison) -> Counter[tuple[str, str, int]]:
    """How the series ended: (custom or generic, its call, runs on OLD)."""
    out: Counter[tuple[str, str, int]] = Counter()
    for r in result.statements:
        for p in r.param_sets:
            out[("custom", p.call.status, p.old.runs)] += 1
            if p.generic is not None:
                out[("generic", p.generic.call.status, p.generic.old.runs)] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--statements", type=int, default=60)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2,
                    help="adaptive and fixed compares alternated this many times (the machine's "
                         "load varies: server times are summed over the rounds)")
    args = ap.parse_args()
    cmd = (f"python -m benchmarks.scale --statements {args.statements} --rows {args.rows} "
           f"--rounds {args.rounds}")
    with cluster_pair(new_settings={"autovacuum": "off"}) as (old, new), tempfile.TemporaryDirectory() as tmp:
        print(f"scale: OLD PostgreSQL {old.major}, NEW PostgreSQL {new.major}, {args.rows:,} rows")
        wl = build(old, new, args.rows, args.statements, Path(tmp))
        sets = sum(len(param_sets_of(s)) for s in wl.statements if not s.skip_reason)
        print(f"workload: {len(wl.statements)} statements captured, {sets} parameter sets")
        # A first fixed run brings both clusters to the state the next two see (caches warm,
        # OLD's index usage counters moved by planguard's own runs): adaptive is compared
        # with the second fixed run, and the two fixed runs with each other (the noise).
        first, _ = timed(old, new, wl, args.repeat, adaptive=False)
        server = {True: [0.0, 0.0], False: [0.0, 0.0]}
        for _ in range(args.rounds):
            adaptive, a_wall = timed(old, new, wl, args.repeat, adaptive=True)
            a_rec = RECORDED[-1]
            fixed, f_wall = timed(old, new, wl, args.repeat, adaptive=False)
            f_rec = RECORDED[-1]
            for mode, c in ((True, adaptive), (False, fixed)):
                assert c.load is not None
                server[mode][0] += c.load[0].server_ms
                server[mode][1] += c.load[1].server_ms
        naive, ran = naive_loop(old, new, wl)
        naive_same, ran_same = naive_loop(old, new, wl, executions(adaptive))
    print("adaptive series (kind, call, runs a side): "
          + ", ".join(f"{k}: {v}" for k, v in sorted(series_table(adaptive).items())), file=sys.stderr)
    assert adaptive.load and fixed.load
    a_json, f_json = to_dict(adaptive)["load"], to_dict(fixed)["load"]
    a_calls, f_calls = calls_of(adaptive), calls_of(fixed)
    differ = [k for k in a_calls[0] if a_calls[0][k] != f_calls[0].get(k)]
    rows = []
    for side, i in (("OLD", 0), ("NEW", 1)):
        a, f = adaptive.load[i], fixed.load[i]
        sa, sf = server[True][i], server[False][i]
        rows.append((f"P1 server time {side} adaptive/fixed", f"{sa / max(sf, 1e-9):.2f}",
                     f"{sa / 1000:.2f} s / {sf / 1000:.2f} s over {args.rounds} rounds; last round's "
                     f"{a.server_ms / 1000:.2f} s / {f.server_ms / 1000:.2f} s, executions "
                     f"{a.executions} / {f.executions}"))
    for side in ("old", "new"):
        rps = a_json[side]["runs_per_series"]
        rows.append((f"P1 runs per series {side.upper()} (adaptive) median", f"{rps['median']}",
                     f"distribution {rps['counts']}; "
                     f"fixed median {f_json[side]['runs_per_series']['median']}"))
    rows.append(("P1 statuses identical", str(not differ and a_calls[0] == f_calls[0]),
                 f"differ: {differ}" if differ else
                 f"{dict(Counter(a_calls[0].values()))}; verdict {adaptive.verdict.decision} / "
                 f"{fixed.verdict.decision}"))
    rows.append(("P1 findings and severities identical", str(a_calls[1] == f_calls[1]),
                 "" if a_calls[1] == f_calls[1] else
                 f"adaptive only {sorted((a_calls[1] - f_calls[1]).elements())}; "
                 f"fixed only {sorted((f_calls[1] - a_calls[1]).elements())}"))
    larger = max(adaptive.load[0].server_ms, adaptive.load[1].server_ms) / 1000
    bound = 1.10 * larger + 2
    rows.append(("P2 wall / (1.10 × larger side's server time + 2 s)", f"{a_wall / bound:.2f}",
                 f"wall {a_wall:.2f} s, larger side {larger:.2f} s (fixed rule: wall {f_wall:.2f} s)"))
    rows.append(("P2 wall / naive psql loop, one run a set", f"{a_wall / naive:.2f}",
                 f"naive loop {naive:.2f} s ({ran} psql commands: each set once on each cluster)"))
    rows.append(("P2 wall / naive psql loop, same executions", f"{a_wall / naive_same:.2f}",
                 f"naive loop {naive_same:.2f} s ({ran_same} psql commands: what the adaptive compare "
                 "executed, one after the other)"))
    first_calls = calls_of(first)
    noise = [k for k in f_calls[0] if f_calls[0][k] != first_calls[0].get(k)]
    rows.append(("fixed vs fixed (noise): statuses identical", str(not noise),
                 f"differ: {noise}" if noise else ""))
    rows.append(("fixed vs fixed (noise): findings identical", str(first_calls[1] == f_calls[1]),
                 "" if first_calls[1] == f_calls[1] else
                 f"first only {sorted((first_calls[1] - f_calls[1]).elements())}; "
                 f"second only {sorted((f_calls[1] - first_calls[1]).elements())}"))
    rows.append(("profile adaptive", "", where_time_goes(a_rec, a_wall)))
    rows.append(("profile fixed", "", where_time_goes(f_rec, f_wall)))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure'.ljust(width)}  value  detail   (reproduce: {cmd})")
    for name, value, detail in rows:
        print(f"{name.ljust(width)}  {value:>5}  {detail}")
    by_id = {name: {r.statement.short_id: r for r in c.statements}
             for name, c in (("adaptive", adaptive), ("fixed", fixed), ("first fixed", first))}
    for k in sorted(set(differ) | set(noise)):
        print(f"  {k}: " + "; ".join(f"{name} {rs[k].status} ({rs[k].reason})" for name, rs in by_id.items()),
              file=sys.stderr)

if __name__ == "__main__":
    main()
