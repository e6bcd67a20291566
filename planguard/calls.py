"""The regression call (pure: no database): from both sides' measurements of one parameter
set, whether NEW is slower, and whether it does other work.

The plans and buffers (deterministic) say whether NEW does different work; the paired run
times (``planguard.timing``) whether it is slower.
"""

from __future__ import annotations

from dataclasses import dataclass

from planguard.config import Thresholds
from planguard.measure import Measurement
from planguard.timing import Evidence, NoiseFloor, weigh

STATUSES = ("regressed", "error", "slower_same_plan", "unstable", "plan_changed", "improved",
            "unchanged", "skipped")
# Order of severity when a statement's parameter sets disagree: the worst one speaks.
SEVERITY = {s: i for i, s in enumerate(STATUSES)}


def _worse(new: float, old: float, ratio: float, floor: float) -> bool:
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
    more = _worse(nb, ob, t.buffers_ratio, t.min_buffers_delta)
    fewer = _worse(ob, nb, t.buffers_ratio, t.min_buffers_delta)
    same_plan = same_shapes(old, new)
    same_work = same_plan and not more and not fewer
    ev = weigh(old.samples, new.samples, time_ratio=t.time_ratio, min_delta_ms=t.min_time_delta_ms,
               alpha=t.alpha, noise=noise.factor(old.median_ms) if noise else 1.0, paired=paired)
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
