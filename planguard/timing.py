"""Timing evidence that noise cannot fake (pure: no database).

The runs that decide a time call are taken in **pairs**: run *i* of a parameter set starts
on OLD and on NEW at the same moment (``planguard.runner``), so a burst of background load
lands on both sides of the pair instead of on one side's whole series.  ``weigh`` judges
the pairs' ratios NEW/OLD:

- the **effect**: the median paired ratio must reach ``time_ratio``, the medians must differ
  by ``min_time_delta_ms``, and the ratio must exceed the **noise floor** (below);
- the **consistency**: either every pair (at least ``MIN_PAIRS``) shows NEW slower beyond
  the same bar (*decisive*: noise that shares the pairs' background cannot do that), or an
  exact one-sided **sign test** over the pairs (NEW slower in k of n) is below ``alpha``.
  When the plans or buffers already say the work differs (``deterministic``), 2 pairs are
  decisive if both are beyond the squared bar: that is what lets ``planguard.calls.settled``
  stop a buffers-decided regression after 2 runs a side.

What passes the effect but not the consistency is *uncertain*: measured again, and called
``unstable`` when more runs do not settle it.  Comparisons that cannot be paired (a custom
plan against a generic one) use the same bars with a one-sided Mann-Whitney U test.

The **noise floor** is measured, not assumed: from the runs this comparison took anyway
(consecutive runs of the same statement on the same side, OLD's and NEW's), the 95th
percentile of their ratio, per duration class, since short statements vary more.  It costs
no extra execution on OLD.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy.stats import binomtest, mannwhitneyu

EPS_MS = 0.005  # added before ratios and logs: EXPLAIN's timer is exact to 1 µs, not to 0
MIN_PAIRS = 3  # fewer pairs never decide a time call on their own
# ... except when the work differs (another plan, or buffers beyond the bars: deterministic):
# then 2 pairs (or runs a side) decide when every one is beyond the *squared* bar.
DETERMINISTIC_PAIRS = 2
NOISE_QUANTILE = 0.95
NOISE_MIN_RATIOS = 8  # a duration class with fewer consecutive-run ratios has no floor of its own
CLASS_BOUNDS_MS = (1.0, 10.0, 100.0)  # duration classes: < 1 ms, 1-10, 10-100, >= 100 ms
CLASS_NAMES = ("< 1 ms", "1-10 ms", "10-100 ms", ">= 100 ms")


def duration_class(ms: float) -> int:
    return bisect.bisect_right(CLASS_BOUNDS_MS, ms)


@dataclass(frozen=True)
class NoiseFloor:
    """How much one statement's time varies from run to run on these clusters, now.

    ``factors[c]`` is the ``quantile`` of ``max(t[i+1]/t[i], t[i]/t[i+1])`` over
    consecutive runs of every series whose median falls in duration class ``c`` (None:
    fewer than NOISE_MIN_RATIOS ratios), ``ratios[c]`` how many ratios it rests on.
    """

    factors: tuple[float | None, ...] = (None,) * len(CLASS_NAMES)
    ratios: tuple[int, ...] = (0,) * len(CLASS_NAMES)
    quantile: float = NOISE_QUANTILE

    def factor(self, ms: float) -> float:
        """The floor for a statement of ``ms``: its class's, else the nearest shorter class's
        (short statements vary more: a conservative stand-in), else a longer one's, else 1."""
        c = duration_class(ms)
        for i in [*range(c, -1, -1), *range(c + 1, len(self.factors))]:
            f = self.factors[i]
            if f is not None:
                return f
        return 1.0

    def describe(self) -> str:
        parts = [f"{name}: ×{f:.2f} ({n} ratios)" for name, f, n in
                 zip(CLASS_NAMES, self.factors, self.ratios, strict=True) if f is not None]
        return "; ".join(parts) or "not measured (too few runs)"


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation (what numpy and pandas call 'linear')."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def noise_floor(series: Iterable[Sequence[float]], quantile: float = NOISE_QUANTILE) -> NoiseFloor:
    """The noise floor from measured series: each one statement's consecutive run times on
    one side, in the order they ran."""
    by_class: list[list[float]] = [[] for _ in CLASS_NAMES]
    for times in series:
        if len(times) < 2:
            continue
        c = duration_class(statistics.median(times))
        for a, b in itertools.pairwise(times):
            by_class[c].append(abs(math.log((b + EPS_MS) / (a + EPS_MS))))
    factors = tuple(math.exp(_quantile(v, quantile)) if len(v) >= NOISE_MIN_RATIOS else None
                    for v in by_class)
    return NoiseFloor(factors, tuple(len(v) for v in by_class), quantile)


@dataclass(frozen=True)
class Evidence:
    """What the runs say about NEW's execution time against OLD's."""

    paired: bool
    runs: int  # pairs (paired) or the smaller side's runs
    old_ms: float  # medians
    new_ms: float
    ratio: float  # NEW/OLD: the median of the pairs' ratios, or the ratio of the medians
    noise: float  # the noise floor that applied
    direction: str  # "slower", "faster" or "same"
    within_noise: bool  # beyond time_ratio and the floor in ms, but not beyond the noise floor
    confirmed: bool  # direction settled: decisive or p < alpha
    decisive: bool  # every pair beyond the bar
    agree: int  # pairs (or, unpaired, runs) on the side of the direction
    p: float | None  # one-sided p-value of the direction (None: "same", or too few runs)

    @property
    def uncertain(self) -> bool:
        """Worth measuring again: a difference the runs have not settled."""
        return (self.direction != "same" and not self.confirmed) or self.within_noise

    def text(self) -> str:
        """One line: medians, ratio, and how sure."""
        head = f"median time {self.old_ms:.2f} → {self.new_ms:.2f} ms ({ratio_text(self.ratio)}"
        head += f" over {self.runs} pairs" if self.paired else f", {self.runs} runs a side"
        if self.direction == "same" and not self.within_noise:
            return head + ")"
        word = "slower" if self.direction == "slower" or self.ratio > 1 else "faster"
        parts = []
        if self.paired:
            parts.append(f"NEW {word} in {self.agree} of {self.runs}")
        if self.decisive:
            parts.append("every pair beyond the bar" if self.paired else "fully separated")
        elif self.p is not None:
            test = "sign test" if self.paired else "Mann-Whitney"
            parts.append(f"{test} p={self.p:.3f}" + ("" if self.confirmed else ", not confirmed"))
        elif not self.within_noise:
            parts.append("too few runs to confirm")
        if self.within_noise:
            parts.append(f"within the measured noise of ×{self.noise:.2f}")
        else:
            parts.append(f"noise floor ×{self.noise:.2f}")
        return head + ": " + ", ".join(parts) + ")"


def ratio_text(ratio: float) -> str:
    """928×, 12.3×, 1.75×."""
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    return f"{ratio:.1f}×" if ratio >= 10 else f"{ratio:.2f}×"


def weigh(old: Sequence[float], new: Sequence[float], *, time_ratio: float, min_delta_ms: float,
          alpha: float, noise: float = 1.0, paired: bool = True,
          deterministic: bool = False) -> Evidence:
    """Judge NEW's run times against OLD's (see the module docstring).

    ``paired``: ``old[i]`` and ``new[i]`` ran at the same moment (the pairs beyond the
    shorter series are ignored); otherwise the two series are independent samples.
    ``deterministic``: the plans or buffers differ, so ``DETERMINISTIC_PAIRS`` pairs beyond
    the squared bar are decisive (``MIN_PAIRS`` and more use the plain bar, as always).
    """
    if paired:
        n = min(len(old), len(new))
        old, new = old[:n], new[:n]
    else:
        n = min(len(old), len(new))
    om, nm = statistics.median(old), statistics.median(new)
    if paired:
        logs = [math.log((b + EPS_MS) / (a + EPS_MS)) for a, b in zip(old, new, strict=True)]
        ratio = math.exp(statistics.median(logs))
    else:
        logs = []
        ratio = (nm + EPS_MS) / (om + EPS_MS)
    bar = max(time_ratio, noise)
    delta = nm - om
    if ratio >= bar and delta >= min_delta_ms:
        direction = "slower"
    elif 1 / ratio >= bar and -delta >= min_delta_ms:
        direction = "faster"
    else:
        direction = "same"
    within = direction == "same" and abs(delta) >= min_delta_ms and (
        ratio >= time_ratio or 1 / ratio >= time_ratio)
    sign = 1 if direction != "faster" else -1
    need = DETERMINISTIC_PAIRS if deterministic else MIN_PAIRS
    dbar = bar if n >= MIN_PAIRS else bar * bar  # fewer pairs than MIN_PAIRS: the squared bar
    if paired:
        agree = sum(1 for d in logs if sign * d > 0)
        decisive = direction != "same" and n >= need and all(
            sign * d >= math.log(dbar) and sign * (b - a) >= min_delta_ms
            for d, a, b in zip(logs, old, new, strict=True))
        nonzero = sum(1 for d in logs if d != 0)
        p = (float(binomtest(agree, nonzero, 0.5, alternative="greater").pvalue)
             if direction != "same" and nonzero >= MIN_PAIRS else None)
    else:
        slow, fast = (new, old) if sign > 0 else (old, new)
        agree = sum(1 for x in slow if x > max(fast))
        decisive = direction != "same" and n >= need and min(slow) >= max(fast) * dbar and \
            min(slow) - max(fast) >= min_delta_ms
        p = None
        if direction != "same" and n >= MIN_PAIRS:
            p = 1.0 if len(set(slow) | set(fast)) == 1 else float(
                mannwhitneyu(slow, fast, alternative="greater").pvalue)
    confirmed = direction != "same" and (decisive or (p is not None and p < alpha))
    return Evidence(paired, n, om, nm, ratio, noise, direction, within, confirmed, decisive, agree, p)


def clearly_same(old: Sequence[float], new: Sequence[float], *, time_ratio: float, min_delta_ms: float,
                 noise: float = 1.0, paired: bool = True) -> bool:
    """The times are well inside the bars, so more runs would not move the call: at least
    ``DETERMINISTIC_PAIRS`` pairs, and in every pair (unpaired: every run of one side against
    every run of the other) the ratio is within the square root of the bar either way, or the
    difference is under half of ``min_delta_ms``."""
    n = min(len(old), len(new))
    if n < DETERMINISTIC_PAIRS:
        return False
    root = math.sqrt(max(time_ratio, noise))
    pairs: Iterable[tuple[float, float]] = (
        zip(old[:n], new[:n], strict=True) if paired else itertools.product(old, new))
    return all(abs(b - a) < min_delta_ms / 2
               or max((b + EPS_MS) / (a + EPS_MS), (a + EPS_MS) / (b + EPS_MS)) <= root
               for a, b in pairs)
