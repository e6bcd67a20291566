"""A rehearsal step's outcomes as tables, with pandas (pure: no database).

``tally`` turns every call's ``Outcome`` (as the replay recorded it), the per-second ``Tick``s
and NEW's ``pg_stat_statements`` delta into a ``Step``: per statement, throughput against the
target, latency percentiles from arrival (what the application waits, the pool's wait
included) and from getting a connection (service), errors by class, share of the
connections' time; for the step, whether it held its rate and the first second it could not.
The verdict (``planguard.rehearsal.judge``) does not use pandas: it stays pure and small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pandas as pd

from planguard.rehearsal import NOT_RUN, NOT_SERVED, Outcome, Plan, RehearseOptions, StatementLoad, Step, Tick
from planguard.statdelta import Counters

PCTS = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def _pcts(series: pd.Series) -> dict[str, float | None]:
    if series.empty:
        return dict.fromkeys(PCTS)
    q = series.quantile(list(PCTS.values()))
    return {k: round(float(v), 3) for k, v in zip(PCTS, q.tolist(), strict=True)}


def _behind(ticks: Sequence[Tick], connections: int, run: int = 3) -> int | None:
    """The first second of a run of ``run`` seconds (or the step's last seconds) in which calls
    waited for a connection while more than the pool's worth were outstanding."""
    behind = [t.waiting > 0 and (t.in_use + t.waiting) > connections for t in ticks]
    for i in range(len(behind)):
        window = behind[i:i + run]
        if window and all(window) and (len(window) == run or i + len(window) == len(behind)):
            return ticks[i].second
    return None


def busy_per_second(outcomes: Sequence[Outcome], seconds: int) -> list[float]:
    """Connections busy on average in each second ``1..seconds``: every call's span from getting a
    connection to its end, spread over the seconds it overlaps."""
    busy = [0.0] * (seconds + 1)
    for o in outcomes:
        if o.start is None:
            continue
        first, last = int(o.start), min(int(o.end), seconds)
        for sec in range(first, last + 1):
            if sec < seconds:
                busy[sec] += max(min(o.end, sec + 1) - max(o.start, sec), 0.0)
    return [round(b, 3) for b in busy[:seconds]]


def tally(plan: Plan, rate: float, duration_s: float, outcomes: Sequence[Outcome],
          ticks: Sequence[Tick], server: Mapping[int, Counters] | None, opts: RehearseOptions,
          client_cpu_s: float, wall_s: float, stopped: str | None = None) -> Step:
    """One step's figures from its outcomes, its timeline and NEW's pg_stat_statements delta
    (by target index; None when NEW has no pg_stat_statements)."""
    cols = ["target", "at", "start", "end", "error", "sent_at"]
    df = pd.DataFrame([(o.target, o.at, o.start, o.end, o.error, o.sent_at) for o in outcomes], columns=cols)
    df["latency_ms"] = (df["end"] - df["at"]) * 1000
    df["service_ms"] = (df["end"] - df["start"]) * 1000
    df["served"] = df["start"].notna() & ~df["error"].isin(NOT_SERVED)
    # Throughput counts what was served within the step: the backlog drained after it does not.
    df["in_time"] = df["served"] & (df["end"] <= duration_s)
    busy = float(df.loc[df["served"], "service_ms"].sum())
    span = duration_s if not stopped else max(min(duration_s, wall_s), 1e-3)
    # The connections' busy time within the step (a call running past its end counts up to it).
    inside = (df["end"].clip(upper=span) - df["start"].clip(upper=span)).clip(lower=0)
    busy_inside = float(inside[df["start"].notna()].sum())
    spread = busy_per_second(outcomes, len(ticks))
    ticks = [replace(t, busy=spread[i]) for i, t in enumerate(ticks)]
    loads: list[StatementLoad] = []
    for t in plan.targets:
        d = df[df["target"] == t.index]
        ok = d[d["served"]]
        errs = d.loc[d["served"] & d["error"].notna(), "error"].value_counts()
        lost = d.loc[~d["served"], "error"].fillna(NOT_RUN).value_counts()
        s = t.statement
        loads.append(StatementLoad(
            key=s.key, short_id=s.short_id, query=s.query, target_rate=round(t.rate * rate, 3),
            achieved_rate=round(int(d["in_time"].sum()) / span, 3), arrived=len(d), served=len(ok),
            errors={str(k): int(v) for k, v in errs.items()},
            not_served={str(k): int(v) for k, v in lost.items()},
            latency_ms=_pcts(ok["latency_ms"]), service_ms=_pcts(ok["service_ms"]),
            old_mean_ms=s.mean_ms, old_buffers=s.buffers_per_call,
            server=(server or {}).get(t.index) if server is not None else None,
            time_share=round(float(ok["service_ms"].sum()) / busy, 4) if busy else 0.0))
    arrived = len(df)
    served = int(df["served"].sum())
    lag = (df["sent_at"] - df["at"]).dropna() * 1000
    lag_p95 = float(lag.quantile(0.95)) if not lag.empty else 0.0
    waited = [t for t in ticks if t.waiting > 0]
    saturation = len(waited) / len(ticks) if ticks else 0.0
    sampled = [t.server_active for t in ticks if t.server_active is not None]
    first = _behind(ticks, plan.connections)
    held = arrived > 0 and served >= opts.hold_share * arrived and first is None
    return Step(
        rate=rate, duration_s=duration_s, connections=plan.connections,
        target_rate=round(plan.total_rate * rate, 3), arrived=arrived, served=served,
        achieved_rate=round(int(df["in_time"].sum()) / span, 3), held=held and not stopped,
        first_behind_s=first,
        saturation=round(saturation, 3), client_sessions=round(busy_inside / span, 3),
        server_sessions=round(sum(sampled) / len(sampled), 3) if sampled else None,
        lag_p95_ms=round(lag_p95, 1), client_bound=lag_p95 > opts.max_lag_ms and saturation < 0.2,
        client_cpu=round(client_cpu_s / wall_s, 3) if wall_s else 0.0,
        statements=tuple(loads), timeline=tuple(ticks), stopped=stopped)
