"""Thresholds and options: CLI flag > environment (``PLANGUARD_*``) > ``[tool.planguard]``
in ``pyproject.toml`` or a ``planguard.toml`` in the working directory > defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from planguard.errors import ConfigError


@dataclass(frozen=True)
class Thresholds:
    """When a difference between OLD and NEW counts.

    NEW is *slower* when its runs, taken in pairs with OLD's, are at least ``time_ratio``
    times OLD's **and** at least ``min_time_delta_ms`` slower **and** beyond the noise
    floor measured on the clusters **and** confirmed (every pair beyond that bar, or a
    one-sided sign test over the pairs below ``alpha``): see ``planguard.timing``.  A
    slower statement *regressed* when NEW also does other work: another plan, or median
    buffers (shared hit + read, plus temp) ``buffers_ratio`` times OLD's **and**
    ``min_buffers_delta`` more.  Slower with the same plan and buffers is
    ``slower_same_plan``: a warning, a blocker only when NEW is ``same_plan_block_ratio``
    times and ``same_plan_block_ms`` slower in two independent rounds of pairs.  A time
    difference the runs cannot confirm is ``unstable``, measured again up to ``max_runs``.

    A regression blocks when it adds ``impact_block_aas`` average active sessions or
    more at production call rates (Little's law), or when the rate is unknown; a
    smaller one warns.

    The readiness checks' thresholds (``planguard.checks.readiness``) follow; each
    says which finding kind it tunes.
    """

    time_ratio: float = 2.0
    min_time_delta_ms: float = 1.0
    buffers_ratio: float = 2.0
    min_buffers_delta: int = 1000
    # significance of a time difference (one-sided sign test over the pairs of runs; with
    # 0.01, seven pairs at least when not every pair is beyond the bar)
    alpha: float = 0.01
    # slower_same_plan blocks only from this ratio and this many ms, confirmed twice
    same_plan_block_ratio: float = 3.0
    same_plan_block_ms: float = 5.0
    # runs per statement and side at most, counting the adaptive re-measurements
    max_runs: int = 20
    # added average active sessions (calls/s x extra seconds) from which a regression blocks
    impact_block_aas: float = 0.05
    # share of OLD's captured time (of statements, when no time was captured) the verdict must
    # have judged; below it, NO-GO with incomplete_coverage
    min_coverage: float = 0.9
    # stale_stats: rows modified since the last ANALYZE, relative to the table's rows.
    stale_mod_fraction: float = 0.2
    # stale_stats: NEW's row estimate (reltuples) is this many times OLD's, or OLD's is
    # this many times NEW's (and they differ by at least 1,000 rows).
    row_estimate_ratio: float = 2.0
    # stats_coverage: a column's number of distinct values differs by this factor between
    # OLD and NEW (and by at least 100 values).
    ndistinct_ratio: float = 10.0
    # stats_coverage: a column's fraction of NULLs differs by more than this (0 to 1).
    null_frac_delta: float = 0.3
    # sequence_capacity: share of a sequence's range (or of its column type's) already used.
    sequence_capacity_fraction: float = 0.75


def _file_settings(cwd: Path) -> dict[str, Any]:
    for name, key in (("planguard.toml", None), ("pyproject.toml", "planguard")):
        path = cwd / name
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        section = data if key is None else data.get("tool", {}).get(key, {})
        if section:
            return dict(section)
    return {}


def load_thresholds(
    overrides: Mapping[str, Any] | None = None, cwd: Path | None = None
) -> Thresholds:
    """Thresholds from defaults, file, environment and ``overrides`` (None values ignored)."""
    result = Thresholds()
    known = {f.name: f.type for f in fields(Thresholds)}
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("config file", _file_settings(cwd or Path.cwd())),
        ("environment", {
            name: os.environ[f"PLANGUARD_{name.upper()}"]
            for name in known if f"PLANGUARD_{name.upper()}" in os.environ
        }),
        ("command line", {k: v for k, v in (overrides or {}).items() if v is not None}),
    ]
    for origin, layer in layers:
        for name, raw in layer.items():
            if name not in known:
                continue  # other tools' keys, or options that are not thresholds
            cast = int if known[name] in (int, "int") else float
            try:
                value = cast(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{name} from {origin} must be a number, got {raw!r}") from exc
            if value < 0:
                raise ConfigError(f"{name} from {origin} must not be negative, got {raw!r}")
            result = replace(result, **{name: value})  # type: ignore[arg-type]
    if result.time_ratio < 1 or result.buffers_ratio < 1:
        raise ConfigError("time_ratio and buffers_ratio must be at least 1.0")
    if result.row_estimate_ratio < 1 or result.ndistinct_ratio < 1:
        raise ConfigError("row_estimate_ratio and ndistinct_ratio must be at least 1.0")
    if result.null_frac_delta > 1 or result.sequence_capacity_fraction > 1 or result.min_coverage > 1:
        raise ConfigError("null_frac_delta, sequence_capacity_fraction and min_coverage must be at most 1.0")
    return result
