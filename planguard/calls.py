"""The regression call (pure: no database): from both sides' measurements of one parameter
set, whether NEW is slower, and whether it does other work.

The plans and buffers (deterministic) say whether NEW does different work; the paired run
times (``planguard.timing``) whether it is slower.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from planguard.config import Thresholds
from planguard.measure import Measurement, Run, summarize
from planguard.timing import EPS_MS, Evidence, NoiseFloor, clearly_same, noise_floor, weigh

K = TypeVar("K")

STATUSES = ("regressed", "error", "slower_same_plan", "unstable", "plan_changed", "improved",
            "unchanged", "skipped")
# Order of severity when a statement's parameter sets disagree: the worst one speaks.
SEVERITY = {s: i for i, s in enumerate(STATUSES)}


def worse(new: float, old: float, ratio: float, floor: float) -> bool:
    """``new`` beyond ``old`` by both bars: ``ratio`` times and ``floor`` more (buffers, times)."""
    return new >= old * ratio and new - old >= floor


@dataclass(frozen=True)
class Call:
    """A regression call: the status, the one-line reason, and the evidence behind it."""

    status: str
    reason: str
    evidence: Evidence | None = None
    # Both sides ran: True when the plan shape and the buffers (within buffers_ratio and
    # min_buffers_delta) are the same, so a time difference cannot come from the planner.
    same_work: bool | None = None


def same_shapes(old: Measurement, new: Measurement) -> bool:
    """One plan shape on each side, and the same one, across all runs."""
    shapes = set(old.plan_fingerprints or (old.plan_fingerprint,)) | set(
        new.plan_fingerprints or (new.plan_fingerprint,))
    return len(shapes) == 1


def classify(old: Measurement, new: Measurement, t: Thresholds, noise: NoiseFloor | None = None,
             paired: bool = True) -> Call:
    """Status of one parameter set from both sides' runs.

    - ``regressed``: NEW is slower (``planguard.timing.weigh``: beyond ``time_ratio``,
      ``min_time_delta_ms`` and the noise floor, and confirmed by the runs) and does other
      work: another plan, or ``buffers_ratio`` times and ``min_buffers_delta`` more buffers;
    - ``slower_same_plan``: NEW is slower with the same plan and buffers: nothing the planner
      chose explains it (CPU, executor, JIT, a function, a cold cache);
    - ``unstable``: a difference beyond the thresholds that the runs do not confirm, or that
      is within the measured noise: measured again, never called a regression;
    - ``improved``: the mirror image of a slowdown; ``plan_changed``: another plan that is
      not slower, even when it reads more buffers (a plan may trade buffers for CPU);
    - ``unchanged``: the same plan, not slower.

    ``paired``: the runs of both sides were taken in pairs (the default for OLD against
    NEW); False for comparisons of series taken apart (a custom plan against a generic one).
    """
    if new.not_measured or old.not_measured:
        side = "both" if new.not_measured and old.not_measured else ("NEW" if new.not_measured else "OLD")
        return Call("error", f"not measured on {side}: {(new if new.not_measured else old).error}")
    if not new.ok and not old.ok:
        return Call("error", f"fails on both clusters, an existing error: {new.error}")
    if not new.ok:
        return Call("error", f"fails on NEW only: {new.error}")
    if not old.ok:
        return Call("error", f"fails on OLD only: {old.error}")
    assert old.median_ms is not None and new.median_ms is not None
    ob, nb = old.buffers, new.buffers
    more = worse(nb, ob, t.buffers_ratio, t.min_buffers_delta)
    fewer = worse(ob, nb, t.buffers_ratio, t.min_buffers_delta)
    same_plan = same_shapes(old, new)
    same_work = same_plan and not more and not fewer
    ev = weigh(old.samples, new.samples, time_ratio=t.time_ratio, min_delta_ms=t.min_time_delta_ms,
               alpha=t.alpha, noise=noise.factor(old.median_ms) if noise else 1.0, paired=paired,
               deterministic=not same_work)
    work = ("same plan, same buffers" if same_work else
            ("same plan" if same_plan else "different plan")
            + (f", buffers {ob} → {nb} ({nb / max(ob, 1):.1f}×)" if more or fewer else ""))
    reason = f"{ev.text()}; {work}"
    if ev.direction == "slower" and ev.confirmed:
        return Call("slower_same_plan" if same_work else "regressed", reason, ev, same_work)
    if ev.uncertain and (ev.direction == "slower" or ev.ratio > 1):
        return Call("unstable", reason, ev, same_work)
    if ev.direction == "faster" and ev.confirmed:
        return Call("improved", reason, ev, same_work)
    if not same_plan:
        return Call("plan_changed", reason + ("; not slower" if more else ""), ev, same_work)
    return Call("unchanged", reason, ev, same_work)


def settled(old: Measurement, new: Measurement, t: Thresholds, noise: NoiseFloor | None = None,
            paired: bool = True, calls_per_second: float | None = None, repeat: int | None = None,
            ) -> bool:
    """The sequential rule: may measuring this parameter set stop now, more runs being unable
    to change its call?

    - a side failed: the error is the call;
    - the work differs (another plan shape, or buffers beyond ``buffers_ratio`` and
      ``min_buffers_delta``: deterministic) and the time call is already decisive (after 2
      pairs, every pair beyond the squared bar: ``planguard.timing.weigh``), and, given the
      statement's production ``calls_per_second``, a slowdown's severity too: every pair's
      added active sessions on the same side of ``impact_block_aas``, by the root of
      ``time_ratio`` or the noise floor of NEW's times (what a regression's blocker or
      warning rests on);
    - the times are clearly the same (``planguard.timing.clearly_same``): every pair within
      the square root of the bar, or apart by less than half of ``min_time_delta_ms``;
    - given ``repeat`` (the pairs the fixed rule takes), a majority of them already has a
      ratio strictly within ``time_ratio`` either way: the median of ``repeat`` pairs then is
      too, whatever the others say, so the call can be neither slower, faster nor within
      the noise (``unchanged``, or ``plan_changed``), exactly as the fixed rule would make it.

    Anything else (a time-only difference, a borderline one) is not settled: it gets the
    fixed ``repeat`` pairs, then more while ``unstable``, up to ``max_runs``.
    """
    if not old.ok or not new.ok:
        return True
    call = classify(old, new, t, noise, paired)
    ev = call.evidence
    assert ev is not None
    if not call.same_work and ev.decisive:
        return ev.direction != "slower" or calls_per_second is None or _impact_settled(
            old.samples, new.samples, calls_per_second, t,
            noise.factor(new.median_ms or 0.0) if noise else 1.0)
    if paired and repeat is not None:
        inside = sum(1 for a, b in zip(old.samples, new.samples, strict=False)
                     if 1 / t.time_ratio < (b + EPS_MS) / (a + EPS_MS) < t.time_ratio)
        if inside >= repeat // 2 + 1:
            return True
    return clearly_same(old.samples, new.samples, time_ratio=t.time_ratio,
                        min_delta_ms=t.min_time_delta_ms,
                        noise=noise.factor(old.median_ms or 0.0) if noise else 1.0, paired=paired)


def _impact_settled(old: tuple[float, ...], new: tuple[float, ...], calls_per_second: float,
                    t: Thresholds, noise: float = 1.0) -> bool:
    """Every pair's added active sessions (calls/s × extra seconds) well on one side of the
    blocking bar, by the root of ``time_ratio`` or NEW's measured run-to-run noise if larger:
    more runs would not move the regression's severity."""
    margin = max(math.sqrt(t.time_ratio), noise)
    extra = [calls_per_second * (b - a) / 1000 for a, b in zip(old, new, strict=False)]
    return (all(x >= t.impact_block_aas * margin for x in extra)
            or all(x <= t.impact_block_aas / margin for x in extra))


def settled_slower(base: Measurement, other: Measurement, t: Thresholds,
                   noise: NoiseFloor | None = None) -> bool:
    """The sequential rule for a comparison of separate series that matters only when
    ``other`` is slower (NEW's generic plan against a custom plan: ``generic_plan_slower``, a
    plan-cache flip): when the work differs, settled only when the time call is decisive (as
    ``settled``, unpaired); with the same work, also when ``other``'s median is not beyond
    ``base``'s by the root of the bar, or by half of ``min_time_delta_ms``: more runs would not
    make it slower."""
    if not base.ok or not other.ok:
        return True
    call = classify(base, other, t, noise, paired=False)
    ev = call.evidence
    assert ev is not None and base.median_ms is not None and other.median_ms is not None
    if not call.same_work:
        # Other work (the generic plan walks another index, reads more buffers): only a decisive
        # time call settles it early; otherwise the fixed rule's pairs decide, as before.
        return ev.decisive
    bar = max(t.time_ratio, noise.factor(base.median_ms) if noise else 1.0)
    return (other.median_ms <= base.median_ms * math.sqrt(bar)
            or other.median_ms - base.median_ms < t.min_time_delta_ms / 2)


def more_pairs(call: Call | None, pairs: int, t: Thresholds, repeat: int) -> int:
    """How many more pairs a series needs: none once its call is settled (anything but
    ``unstable``) or ``max_runs`` is reached, else another ``repeat`` (at least 2)."""
    if call is None or call.status != "unstable" or pairs >= t.max_runs:
        return 0
    return min(max(repeat, 2), t.max_runs - pairs)


def noise_of(*sides: Mapping[K, Sequence[Run]]) -> NoiseFloor:
    """A comparison's noise floor: from every series of runs of both sides, as they ran (the
    floor the judge applies to every call)."""
    return noise_floor([r.execution_ms for r in runs] for side in sides for runs in side.values())


def unsettled(old: Mapping[K, Sequence[Run]], new: Mapping[K, Sequence[Run]], keys: Iterable[K],
              t: Thresholds, repeat: int, unpaired: Mapping[K, K] | None = None) -> dict[K, int]:
    """Of ``keys``, the series the comparison's final noise floor (``noise_of`` every run)
    leaves unsettled, with how many more pairs each gets (``repeat``, at least 2, up to
    ``max_runs``): its own call ``unstable``, or, for a key of ``unpaired`` (a generic series
    and its custom one), a comparison the judge makes of separate series (NEW's custom plan
    against NEW's generic one, OLD's custom against NEW's generic) ``unstable``: then both
    series, since an unpaired comparison rests on the shorter one.

    The runner settles a series under the floor of the runs taken so far, and the floor
    grows as a run goes on: a series that stopped early (two pairs beyond a squared bar
    that was lower then) can be unsettled under the final floor.  Measured again, it is
    called as its runs say, instead of ``unstable`` for want of runs."""
    noise = noise_of(old, new)
    out: dict[K, int] = {}

    def more(k: K) -> None:
        n = len(old[k])
        if n < t.max_runs:
            out[k] = min(max(repeat, 2), t.max_runs - n)

    for k in keys:
        if not old.get(k) or not new.get(k):
            continue
        if classify(summarize(old[k]), summarize(new[k]), t, noise).status == "unstable":
            more(k)
        c = (unpaired or {}).get(k)
        if c is None or not old.get(c) or not new.get(c):
            continue
        generic = summarize(new[k])
        if any(classify(summarize(side[c]), generic, t, noise, paired=False).status == "unstable"
               for side in (new, old)):
            more(k)
            more(c)
    return out
