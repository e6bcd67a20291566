"""A cutover rehearsal, judged (pure: no database).

``planguard rehearse`` (``planguard.rehearser`` does the I/O) replays the captured workload
against NEW, open-loop, at the captured call rates times ``rate``, through a bounded pool of
connections like the application's.  This module holds what needs no server:

- **the schedule**: each statement's target rate, Poisson arrivals at that rate (seeded, so
  a rehearsal can be repeated), the captured parameter sets drawn in proportion (each one
  equally: each is one sample of what the application sent);
- **the tally**'s types (``planguard.tally`` tabulates them, with pandas): every call's
  outcome as the client saw it (arrival, the moment it got a connection, its end, its error
  class), per-statement
  throughput against the target, latency percentiles (from arrival: what the application
  waits, pool wait included) and service-time percentiles (from the moment it got a
  connection), errors by class and lock timeouts; and a per-second timeline of the pool
  (in use, waiting), NEW's active sessions and lock waits;
- **the call**: whether a step *held* its rate, the first moment it could not, which
  statement took the largest share of the time (the one that starves the pool), and the
  verdict: NO-GO when NEW cannot sustain the rate asked (1.0 by default), when a statement's
  calls fail, or when a statement is slower on NEW's server *and* does more work per call
  (``pg_stat_statements`` deltas against OLD's captured figures: the same two kinds of
  evidence compare asks for, so the client's own noise never decides).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from planguard.config import Thresholds
from planguard.statdelta import Counters
from planguard.watch import Cause, short_query
from planguard.workload import Statement, Workload

GO, NO_GO, INCONCLUSIVE = "GO", "NO-GO", "INCONCLUSIVE"
# What a call that never ran is counted as: not an error of the statement, a failure of the step.
POOL_TIMEOUT = "pool timeout"  # waited longer than pool_timeout_s for a connection
NOT_RUN = "not run (the step ended)"  # still waiting when the step ended
CANCELLED = "cancelled (the step ended)"  # running when the step ended (or was stopped): cancelled
NOT_SERVED = (POOL_TIMEOUT, NOT_RUN, CANCELLED)
LOCK_TIMEOUT = "LockNotAvailable (55P03)"


@dataclass(frozen=True)
class RehearseOptions:
    rate: float = 1.0  # times the captured call rates
    duration_s: float = 60.0  # per step
    connections: int | None = None  # the pool's size; None: from OLD's observed concurrency
    ramp: tuple[float, ...] = ()  # rates to try in turn, stopping after the first not held
    pool_timeout_s: float = 5.0  # a call waiting longer for a connection fails, like an app's pool
    statement_timeout_ms: int = 5_000
    lock_timeout_ms: int = 200  # writes: a rolled-back write must never queue behind a lock for long
    seed: int = 1
    max_other_sessions: int = 3  # client sessions not planguard's above which NEW looks like production
    hold_share: float = 0.95  # a step holds when this share of its calls is served on time
    max_error_share: float = 0.01  # a statement whose calls fail more often is a NO-GO
    max_lag_ms: float = 100.0  # the replay's own lateness (p95) above which it is client-bound

    @property
    def rates(self) -> tuple[float, ...]:
        return self.ramp or (self.rate,)


@dataclass(frozen=True)
class Target:
    """One statement to replay and the rate it is asked for at 1.0."""

    index: int
    statement: Statement
    rate: float  # calls per second at --rate 1.0


@dataclass(frozen=True)
class Plan:
    """What a rehearsal replays: the statements, the ones left out and why, the pool."""

    targets: tuple[Target, ...]
    left_out: tuple[tuple[str, str], ...]  # (statement key, why)
    connections: int
    connections_from: str  # how the pool's size was chosen
    observed_sessions: float  # OLD's average active sessions, by Little's law

    @property
    def total_rate(self) -> float:
        return sum(t.rate for t in self.targets)


def captured_rate(stmt: Statement, workload: Workload) -> float | None:
    """Calls per second on OLD: the captured rate, else calls over the stats window."""
    if stmt.calls_per_second:
        return stmt.calls_per_second
    window = workload.source.stats_window_seconds if workload.source else None
    if stmt.calls and window:
        return stmt.calls / window
    return None


def plan_rehearsal(workload: Workload, database: str, connections: int | None = None) -> Plan:
    """The statements of ``database`` (or of the workload's only database: one renamed in the
    move) that can be replayed, at their captured rates, and the pool's size."""
    dbs = workload.databases
    only = dbs[0] if len(dbs) == 1 else None
    targets: list[Target] = []
    left: list[tuple[str, str]] = []
    busy = 0.0
    for stmt in workload.statements:
        if stmt.database and only is None and stmt.database != database:
            left.append((stmt.key, f"runs in database {stmt.database!r}, not {database!r}"))
            continue
        if stmt.skip_reason:
            left.append((stmt.key, stmt.skip_reason))
            continue
        if "$" in stmt.query and not stmt.param_sets:
            left.append((stmt.key, "no parameter values were captured"))
            continue
        rate = captured_rate(stmt, workload)
        if not rate:
            left.append((stmt.key, "no call rate was captured (a .sql file or log workload)"))
            continue
        targets.append(Target(len(targets), stmt, rate))
        busy += rate * stmt.mean_ms / 1000
    if connections:
        size, why = connections, "--connections"
    else:
        # An application's pool is larger than its average use: room for bursts.
        size = min(max(math.ceil(3 * busy) + 2, 2), 32)
        why = f"3 x OLD's {busy:.2f} average active sessions + 2, within 2..32 (--connections to set)"
    return Plan(tuple(targets), tuple(left), size, why, busy)


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds from the step's start
    target: int
    params: int  # index into the statement's parameter sets (0 when it has none)


def arrivals(targets: Sequence[Target], rate: float, duration_s: float, seed: int) -> Iterator[Arrival]:
    """Poisson arrivals of every target at ``rate`` times its rate, in time order, seeded."""
    rng = random.Random(seed)
    streams: list[Iterator[Arrival]] = []

    def stream(t: Target, r: float, own: random.Random) -> Iterator[Arrival]:
        at = own.expovariate(r)
        n = max(len(t.statement.param_sets), 1)
        while at < duration_s:
            yield Arrival(at, t.index, own.randrange(n))
            at += own.expovariate(r)

    for t in targets:
        r = t.rate * rate
        if r > 0:
            streams.append(stream(t, r, random.Random(rng.getrandbits(64))))
    yield from heapq.merge(*streams, key=lambda a: a.at)


# -- the tally ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One call as the client saw it (seconds from the step's start)."""

    target: int
    at: float  # when it arrived (was scheduled)
    start: float | None  # when it got a connection (None: never)
    end: float  # when it finished, failed, or was given up
    error: str | None = None  # its class: "UniqueViolation (23505)", POOL_TIMEOUT, ...
    sent_at: float | None = None  # when the replay actually dispatched it (lag = sent_at - at)


@dataclass(frozen=True)
class Tick:
    """One second of the step, sampled at its end."""

    second: int
    arrived: int
    done: int
    in_use: int  # the pool's connections busy at the sample
    waiting: int  # calls waiting for a connection
    server_active: int | None  # the replay's sessions active on NEW (pg_stat_activity)
    lock_waits: int | None  # ... of them waiting on a lock
    p95_ms: float | None  # latency of the calls that finished in this second
    busy: float | None = None  # connections busy on average over the second (from the calls' spans)


@dataclass(frozen=True)
class StatementLoad:
    """One statement over one step: what was asked, served and failed, and how long it took."""

    key: str
    short_id: str
    query: str
    target_rate: float  # calls per second asked for
    achieved_rate: float  # calls per second served within the step (finished, errors included)
    arrived: int
    served: int
    errors: Mapping[str, int]  # the statement's own failures, by class
    not_served: Mapping[str, int]  # calls that never got a connection
    latency_ms: Mapping[str, float | None]  # p50 p95 p99 from arrival (pool wait included)
    service_ms: Mapping[str, float | None]  # p50 p95 p99 from getting a connection
    old_mean_ms: float
    old_buffers: float | None  # per call on OLD
    server: Counters | None  # NEW's pg_stat_statements delta over the step
    time_share: float  # of all the connections' busy time in the step

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_share(self) -> float:
        return self.error_count / self.served if self.served else 0.0

    @property
    def lock_timeouts(self) -> int:
        return self.errors.get(LOCK_TIMEOUT, 0)


@dataclass(frozen=True)
class Step:
    """One rate, replayed for the step's duration, and what it showed."""

    rate: float
    duration_s: float
    connections: int
    target_rate: float  # calls per second asked for
    arrived: int
    served: int
    achieved_rate: float
    held: bool
    first_behind_s: int | None  # the first second from which the rate could not be held
    saturation: float  # share of the seconds in which calls waited for a connection
    client_sessions: float  # average busy connections (the replay's own view)
    server_sessions: float | None  # average active sessions on NEW (sampled)
    lag_p95_ms: float  # how late the replay dispatched calls (its own overhead)
    client_bound: bool  # the replay, not NEW, could not keep up
    client_cpu: float  # the replay's CPU time over the step's wall time (1.0 = one core)
    statements: tuple[StatementLoad, ...]
    timeline: tuple[Tick, ...]
    stopped: str | None = None  # a stop asked during the step

    @property
    def top(self) -> StatementLoad | None:
        """The statement that took the largest share of the connections' time."""
        return max(self.statements, key=lambda s: s.time_share, default=None)


# -- the call --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reason:
    """Why a rehearsal is NO-GO (or a warning): the statement it names and its causes."""

    kind: str  # cannot_sustain, errors, slower_under_load, slower_same_work, client_bound
    text: str
    statement: str | None = None  # key
    causes: tuple[Cause, ...] = ()
    blocks: bool = True


@dataclass(frozen=True)
class Rehearsal:
    """The whole rehearsal: its steps, the verdict and why."""

    verdict: str
    reasons: tuple[Reason, ...]
    steps: tuple[Step, ...]
    plan: Plan
    headroom: float | None  # the largest rate held (in a ramp: before NEW stopped keeping up)
    saturation_rate: float | None  # the first rate not held
    options: RehearseOptions
    causes: Mapping[str, tuple[Cause, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 0 if self.verdict == GO else 1


def _ms(v: float | None) -> str:
    return "?" if v is None else f"{v:.3g} ms" if v < 100 else f"{v:,.0f} ms"


def slower(load: StatementLoad, t: Thresholds) -> tuple[str, str] | None:
    """Whether NEW's server runs this statement slower than OLD did, and with more work.

    ``slower_under_load``: NEW's mean execution time over the step (pg_stat_statements) is
    ``time_ratio`` times and ``min_time_delta_ms`` above OLD's captured mean **and** it reads
    ``buffers_ratio`` times and ``min_buffers_delta`` more buffers per call: the planner's doing.
    ``slower_same_work``: slower by ``same_plan_block_ratio`` and ``same_plan_block_ms`` with the
    same work (a warning: CPU contention under load does that too).
    """
    srv = load.server
    if srv is None or not srv.calls or srv.mean_ms is None:
        return None
    new, old = srv.mean_ms, load.old_mean_ms
    if not (new >= old * t.time_ratio and new - old >= t.min_time_delta_ms):
        return None
    nb, ob = srv.buffers_per_call, load.old_buffers
    more_work = (nb is not None and ob is not None and nb >= ob * t.buffers_ratio
                 and nb - ob >= t.min_buffers_delta)
    p95 = load.service_ms.get("p95")
    figures = (f"mean {_ms(new)} on NEW's server against {_ms(old)} on OLD, p95 {_ms(p95)} under load")
    if more_work:
        return "slower_under_load", f"{figures}, {nb:,.0f} buffers per call against {ob:,.0f}"
    if new >= old * t.same_plan_block_ratio and new - old >= t.same_plan_block_ms:
        return "slower_same_work", f"{figures}, with the same work per call"
    return None


def judge(plan: Plan, steps: Sequence[Step], opts: RehearseOptions, t: Thresholds,
          causes: Mapping[str, tuple[Cause, ...]] | None = None, notes: Iterable[str] = ()) -> Rehearsal:
    """The verdict over the steps run.

    NO-GO when a step at or below the rate asked (``opts.rate``; 1.0 unless given) did not hold,
    when a statement's own calls failed (``max_error_share``), or when a statement is slower on
    NEW's server with more work per call.  A step the replay itself could not drive (client-bound)
    proves nothing: INCONCLUSIVE, unless a NO-GO reason stands anyway.
    """
    causes = dict(causes or {})
    reasons: list[Reason] = []
    required = [s for s in steps if s.rate <= opts.rate + 1e-9]
    held = [s.rate for s in steps if s.held]
    not_held = [s for s in steps if not s.held and not s.stopped]
    headroom = max(held) if held else None
    saturation_rate = min((s.rate for s in not_held), default=None)
    by_key: dict[str, StatementLoad] = {}
    for s in required or steps[:1]:
        for load in s.statements:
            by_key[load.key] = load  # the highest required rate's figures speak
    for s in required:
        if s.held or s.stopped or s.client_bound:
            continue
        top = s.top
        when = (f"from second {s.first_behind_s} " if s.first_behind_s is not None else "")
        text = (f"NEW could not sustain {s.rate:g}x the captured rate: {s.achieved_rate:,.1f} of "
                f"{s.target_rate:,.1f} calls/s served; {when}the pool of {s.connections} connections was "
                f"saturated ({s.saturation:.0%} of the seconds had calls waiting)")
        if top is not None:
            text += (f"; {top.short_id} `{short_query(top.query, 60)}` took {top.time_share:.0%} of the "
                     f"connections' time (p95 {_ms(top.service_ms.get('p95'))} against OLD's mean "
                     f"{_ms(top.old_mean_ms)})")
        reasons.append(Reason("cannot_sustain", text, top.key if top else None,
                              causes.get(top.key, ()) if top else ()))
        break
    for load in by_key.values():
        name = f"{load.short_id} `{short_query(load.query, 70)}`"
        if load.served and load.error_share > opts.max_error_share:
            kinds = ", ".join(f"{k} x{v}" for k, v in sorted(load.errors.items(), key=lambda kv: -kv[1]))
            failed = f"{name}: {load.error_count} of {load.served} calls failed ({kinds})"
            reasons.append(Reason("errors", failed, load.key, causes.get(load.key, ())))
        got = slower(load, t)
        if got is not None:
            kind, figures = got
            reasons.append(Reason(kind, f"{name}: {figures}", load.key, causes.get(load.key, ()),
                                  blocks=kind == "slower_under_load"))
    bound = [s for s in required if s.client_bound and not s.held]
    for s in bound:
        reasons.append(Reason("client_bound", f"at {s.rate:g}x the replay itself fell behind (it dispatched "
                              f"calls {s.lag_p95_ms:,.0f} ms late at p95, with connections free): this "
                              "machine could not drive the rate; lower --rate or run planguard closer to "
                              "NEW on a larger machine", blocks=False))
    if any(r.blocks for r in reasons):
        verdict = NO_GO
    elif not required and steps and steps[0].held and not steps[0].stopped:
        verdict = GO  # a ramp that starts above --rate and holds there holds --rate too
    elif bound or not required or any(s.stopped for s in required):
        verdict = INCONCLUSIVE
    else:
        verdict = GO
    return Rehearsal(verdict, tuple(reasons), tuple(steps), plan, headroom, saturation_rate, opts, causes,
                     tuple(notes))


def headline(r: Rehearsal) -> str:
    """One line: the verdict and the figure that carries it."""
    first = next((x for x in r.reasons if x.blocks), None) or (r.reasons[0] if r.reasons else None)
    steps = r.steps
    last = next((s for s in reversed(steps) if s.rate <= r.options.rate + 1e-9), steps[-1] if steps else None)
    if first is not None:
        return f"{r.verdict}: {first.text}"
    if last is None:
        return f"{r.verdict}: nothing was replayed"
    ramp = (f"; headroom: NEW held up to {r.headroom:g}x" + (f" and fell behind at {r.saturation_rate:g}x"
            if r.saturation_rate else "")) if len(steps) > 1 and r.headroom else ""
    return (f"{r.verdict}: NEW held {last.rate:g}x the captured rate ({last.achieved_rate:,.1f} of "
            f"{last.target_rate:,.1f} calls/s) over {last.connections} connections{ramp}")
