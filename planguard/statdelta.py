"""What a cluster did between two readings of ``pg_stat_statements`` (pure: no database).

A ``Reading`` is one read of the view's cumulative counters (``planguard.pgss`` takes it);
``delta(previous, current)`` is what happened in between, per entry, with the events that
make a plain subtraction wrong said out loud:

- **a reset** (``pg_stat_statements_reset()``, seen as a new ``stats_reset`` in
  ``pg_stat_statements_info``): every entry counts from zero again, so the current counters
  *are* the delta;
- **an entry reset or deallocated and added again** (``calls`` went down): its current
  counters are the delta;
- **an entry that is new** since the previous reading (a statement new to the cluster, or
  one added back after deallocation): its current counters are the delta;
- **deallocations** (``pg_stat_statements.max`` reached: ``dealloc`` grew): entries were
  evicted, so some calls of the interval are lost; said, not hidden;
- **a restart** (another ``pg_postmaster_start_time``): counters may have been kept (a clean
  shutdown saves them) or lost (a crash); the interval is not counted, the current reading
  is the new starting point.

Entries are keyed as the view keys them (user, database, ``queryid``, top level); matching
them to statements is the caller's business (by planguard's fingerprint, never by
``queryid``, which differs between major versions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one ``pg_stat_statements`` entry (or their difference)."""

    calls: int = 0
    exec_ms: float = 0.0
    rows: int = 0
    hit: int = 0  # shared_blks_hit
    read: int = 0  # shared_blks_read

    def __add__(self, other: Counters) -> Counters:
        return Counters(self.calls + other.calls, self.exec_ms + other.exec_ms, self.rows + other.rows,
                        self.hit + other.hit, self.read + other.read)

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.calls - other.calls, self.exec_ms - other.exec_ms, self.rows - other.rows,
                        self.hit - other.hit, self.read - other.read)

    @property
    def mean_ms(self) -> float | None:
        return self.exec_ms / self.calls if self.calls else None

    @property
    def buffers_per_call(self) -> float | None:
        return (self.hit + self.read) / self.calls if self.calls else None

    @property
    def rows_per_call(self) -> float | None:
        return self.rows / self.calls if self.calls else None


# (userid, dbid, queryid, toplevel): the view's own key.
EntryKey = tuple[int, int, int, bool]


@dataclass(frozen=True)
class Reading:
    """One read of ``pg_stat_statements``: every entry's counters, and what says whether they
    can be subtracted from the previous read's."""

    at: float  # time.monotonic() on the client when the answer arrived, in seconds
    wall: str  # the server's clock_timestamp(), ISO 8601
    entries: Mapping[EntryKey, Counters]
    stats_reset: str | None  # pg_stat_statements_info.stats_reset (PostgreSQL 14+)
    dealloc: int | None  # pg_stat_statements_info.dealloc (PostgreSQL 14+)
    started: str  # pg_postmaster_start_time()


@dataclass(frozen=True)
class Delta:
    """What happened between two readings: counters per entry that ran, the seconds between
    them, and the events that bear on the figures (a reset, deallocations, a restart)."""

    seconds: float
    entries: Mapping[EntryKey, Counters]
    events: tuple[str, ...] = ()
    counted: bool = True  # False: the interval cannot be counted (a restart): no figures


def delta(previous: Reading, current: Reading) -> Delta:
    """The counters of what ran between ``previous`` and ``current`` (see the module's rules)."""
    seconds = max(current.at - previous.at, 1e-6)
    if current.started != previous.started:
        return Delta(seconds, {}, (f"NEW restarted (postmaster started {current.started}); counting "
                                   "starts again from this reading",), counted=False)
    events: list[str] = []
    reset = current.stats_reset is not None and current.stats_reset != previous.stats_reset
    if reset:
        events.append(f"pg_stat_statements was reset at {current.stats_reset}; this interval counts "
                      "from the reset")
    if (not reset and current.dealloc is not None and previous.dealloc is not None
            and current.dealloc > previous.dealloc):
        events.append(f"{current.dealloc - previous.dealloc} pg_stat_statements entries were deallocated "
                      "(pg_stat_statements.max reached): calls of evicted statements are missing from "
                      "this interval")
    out: dict[EntryKey, Counters] = {}
    renewed = 0
    for key, now in current.entries.items():
        before = None if reset else previous.entries.get(key)
        if before is not None and now.calls < before.calls:
            renewed += 1
            before = None
        d = now if before is None else now - before
        if d.calls > 0:
            out[key] = d
    if renewed:
        events.append(f"{renewed} pg_stat_statements entries were reset or evicted and added again; "
                      "their counters count from then")
    return Delta(seconds, out, tuple(events))
