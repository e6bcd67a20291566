"""Sharded comparisons: one workload split across runners, and joined again (pure: no database).

``compare --shard I/N`` runs the statements of ``split(workload, N)[I - 1]``: a deterministic
slice balanced by what the statements cost on OLD (LPT: longest processing time first, each
statement to the least loaded shard).  A statement costs its captured mean time per call once
per parameter set, plus ``SET_COST_MS`` per set for what planguard does around each (warm-up,
pairs, generic plan); ties are broken by the statement's key, so every shard job computes
the same split from the same workload file, whatever the machine.

The catalog checks (readiness: statistics, indexes, sequences, settings) belong to the whole
workload, not to a slice: shard 1 reads and judges them, the other shards do not read them
(``ShardInfo.catalog_checks``).

``merge`` joins the shards' recordings (what both clusters answered) and workloads (the
statements as each shard ran them) and judges them again through the same pure judge as an
unsharded run: the merged result is the one an unsharded run on the same answers gives.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planguard.budget import Budget
from planguard.config import Thresholds
from planguard.errors import PlanguardError
from planguard.judge import comparison_of
from planguard.model import Comparison, ShardInfo
from planguard.recording import Recording, SideRecord, Stopped, param_sets_of
from planguard.report import load_result
from planguard.safety import Policy
from planguard.workload import Statement, Workload, load_json

SET_COST_MS = 5.0  # planguard's own work per parameter set, on top of the statement's time
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


class ShardError(PlanguardError):
    """A shard that cannot be run or merged (bad ``--shard``, results that do not belong together)."""


__all__ = ["ShardError", "ShardInfo", "cost", "merge", "parse", "select", "split", "workload_id"]


def parse(spec: str) -> tuple[int, int]:
    """``"I/N"`` as (I, N), 1 <= I <= N; ShardError otherwise."""
    m = _SPEC.fullmatch(str(spec))
    if not m:
        raise ShardError(f"--shard {spec!r}: expected I/N, e.g. 1/4 (shard I of N, from 1)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {spec!r}: I must be between 1 and N (N >= 1), e.g. 1/{max(count, 1)}")
    return index, count


def cost(stmt: Statement) -> float:
    """What running ``stmt`` is expected to cost: OLD's mean time once per parameter set, plus
    planguard's own per-set constant (a statement planned only costs the constant)."""
    sets = max(1, len(param_sets_of(stmt)))
    mean = 0.0 if stmt.skip_reason else max(stmt.mean_ms, 0.0)
    return sets * (mean + SET_COST_MS)


def split(workload: Workload, count: int) -> tuple[tuple[str, ...], ...]:
    """The statement keys of each of ``count`` shards, in workload order (LPT, deterministic)."""
    if count < 1:
        raise ShardError(f"cannot split a workload into {count} shards")
    loads = [0.0] * count
    owner: dict[str, int] = {}
    for stmt in sorted(workload.statements, key=lambda s: (-cost(s), s.key)):
        i = min(range(count), key=lambda j: (loads[j], j))
        owner[stmt.key] = i
        loads[i] += cost(stmt)
    return tuple(tuple(s.key for s in workload.statements if owner[s.key] == i) for i in range(count))


def workload_id(workload: Workload) -> str:
    """The identity of a workload as far as splitting goes: the same file gives the same id on
    every runner, a different one (other statements or costs) another."""
    items = sorted((s.key, round(cost(s), 6)) for s in workload.statements)
    head = {"database": workload.source.database, "captured_at": workload.source.captured_at}
    text = json.dumps([head, items], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def select(workload: Workload, index: int, count: int) -> tuple[Workload, ShardInfo]:
    """Shard ``index`` (1-based) of ``count``: its statements (in workload order), and its info."""
    if not 1 <= index <= count:
        raise ShardError(f"shard {index} of {count} does not exist")
    if len(workload.databases) > 1 and count > 1:
        # The runner reads each database's catalog with that database's first statement, so a
        # shard 1 without statements of a database would judge no catalog check there.
        raise ShardError(f"--shard: this workload spans {len(workload.databases)} databases "
                         f"({', '.join(workload.databases)}); shard one database at a time "
                         "(capture --database NAME) for now")
    keys = set(split(workload, count)[index - 1])
    part = replace(workload, statements=tuple(s for s in workload.statements if s.key in keys))
    return part, ShardInfo(index, count, workload_id(workload))


def ran_as(full: Workload, part: Workload) -> Workload:
    """``full`` with the statements of ``part`` as that shard ran them (values filled, screened):
    what a shard saves, so that ``merge`` has the whole workload in its order."""
    mine = {s.key: s for s in part.statements}
    return replace(full, statements=tuple(mine.get(s.key, s) for s in full.statements))


def recording_beside(report: Path) -> Path:
    """The recording a shard saves next to its JSON report (``x.json``: ``x.recording.json``)."""
    return report.with_name(f"{report.name.removesuffix('.json')}.recording.json")


def workload_beside(recording: Path) -> Path:
    """The workload a shard saves next to its recording (``x.recording.json``: ``x.workload.json``)."""
    return recording.with_name(f"{recording.name.removesuffix('.json').removesuffix('.recording')}"
                               ".workload.json")


# -- joining ------------------------------------------------------------------------------------

def join_sides(sides: Sequence[SideRecord]) -> SideRecord:
    """One side's records of every shard as one: the first (shard 1) gives the server and the
    catalog; the runs, errors and plans are disjoint by statement; the counts add up."""
    first = sides[0]
    out = SideRecord(info=first.info, readiness=dict(first.readiness))
    for side in sides:
        out.runs.update(side.runs)
        out.errors.update(side.errors)
        out.warmups.update(side.warmups)
        out.auto_generic.update(side.auto_generic)
        out.plan_only.update(side.plan_only)
        out.digests.update(side.digests)
        out.executions += side.executions
        out.server_ms += side.server_ms
        out.reconnects += side.reconnects
    return out


def join_recordings(parts: Sequence[Recording]) -> Recording:
    """The recordings of shards 1..N (in that order) as the recording of one run."""
    stopped = next((p.stopped for p in parts if p.stopped is not None), None)
    if stopped is not None:
        stopped = Stopped(stopped.reason, stopped.kind,
                          tuple(k for p in parts if p.stopped for k in p.stopped.in_flight))
    return Recording(join_sides([p.old for p in parts]), join_sides([p.new for p in parts]), stopped,
                     sum(p.retries for p in parts), round(sum(p.paused_s for p in parts), 3),
                     sum(p.kept for p in parts))


def join_workloads(full: Workload, parts: Sequence[Workload], owners: Sequence[frozenset[str]]) -> Workload:
    """``full``'s statements, each as the shard that owns it ran it."""
    ran: dict[str, Statement] = {}
    for part, keys in zip(parts, owners, strict=True):
        ran.update({s.key: s for s in part.statements if s.key in keys})
    return replace(full, statements=tuple(ran.get(s.key, s) for s in full.statements))


@dataclass(frozen=True)
class ShardResult:
    """One shard's saved result, as ``merge`` reads it."""

    path: Path
    report: dict[str, Any]
    info: ShardInfo
    recording: Recording
    workload: Workload

    @property
    def keys(self) -> frozenset[str]:
        """The statements this shard judged (its report's)."""
        return frozenset(f"{s['database']}:{s['fingerprint']}" if s["database"] else s["fingerprint"]
                         for s in self.report["statements"])


def shard_result(path: Path, report: dict[str, Any]) -> ShardResult:
    """The shard result whose JSON report (already read and checked) is ``report``: its recording
    and workload are the files next to it (or where the report names its recording)."""
    given = report.get("shard")
    if not given:
        raise ShardError(f"{path} is not the result of a sharded comparison (compare --shard I/N)")
    info = ShardInfo(int(given["index"]), int(given["count"]), str(given["workload"]))
    rec_path = recording_beside(path)
    if report.get("recording"):
        named = Path(report["recording"])
        rec_path = named if named.is_absolute() else path.parent / named
        if not rec_path.is_file():  # the reports/ folder copied elsewhere (a CI artifact)
            rec_path = path.parent / named.name
    wl_path = workload_beside(rec_path)
    for needed in (rec_path, wl_path):
        if not needed.is_file():
            raise ShardError(f"{path}: {needed} is missing: merge needs the recording and workload each "
                             "shard writes next to its JSON report (copy the whole reports/ folder)")
    return ShardResult(path, report, info, Recording.load(rec_path), load_json(wl_path))


def _same(results: Sequence[ShardResult], what: str, value: Any, why: str) -> None:
    seen = {json.dumps(value(r), sort_keys=True, default=str): r for r in results}
    if len(seen) > 1:
        a, b = list(seen.values())[:2]
        raise ShardError(f"{a.path} and {b.path} {why}: merge only shards of one comparison ({what})")


def check_mergeable(results: Sequence[ShardResult]) -> list[ShardResult]:
    """The results in shard order, or ShardError saying why they do not make one comparison."""
    if not results:
        raise ShardError("no shard results to merge")
    _same(results, "the same workload file", lambda r: r.info.workload, "are shards of different workloads")
    _same(results, "the same N", lambda r: r.info.count, "split the workload into a different number "
          "of shards")
    _same(results, "the same thresholds, --repeat and --redact",
          lambda r: (r.report["thresholds"], r.report["repeat"], r.report["redacted"]),
          "were judged with different thresholds or options")
    _same(results, "the same OLD and NEW",
          lambda r: [(s.info.version_num, s.info.identity or s.info.dsn) if s.info else None
                     for s in (r.recording.old, r.recording.new)],
          "compared different clusters (or a cluster restarted in between)")
    count = results[0].info.count
    by_index: dict[int, ShardResult] = {}
    for r in results:
        if r.info.index in by_index:
            raise ShardError(f"shard {r.info.index} of {count} is given twice ({by_index[r.info.index].path} "
                             f"and {r.path})")
        by_index[r.info.index] = r
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing:
        raise ShardError(f"shard{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {count} "
                         "missing: merge needs every shard's result")
    ordered = [by_index[i] for i in range(1, count + 1)]
    if not ordered[0].recording.old.readiness and ordered[0].recording.old.info is not None:
        raise ShardError(f"{ordered[0].path}: shard 1 holds no catalog snapshot; it is the shard that "
                         "reads the catalog checks")
    return ordered


def merged(results: Sequence[ShardResult]) -> tuple[Workload, Recording, dict[str, Any]]:
    """The whole workload, the joined recording, and shard 1's report (for its options), from
    the results of every shard of one comparison."""
    ordered = check_mergeable(results)
    owners = [r.keys for r in ordered]
    seen: set[str] = set()
    for r, keys in zip(ordered, owners, strict=True):
        if keys & seen:
            raise ShardError(f"{r.path} judged statements another shard judged too: the shards do not "
                             "split one workload")
        seen |= keys
    full = ordered[0].workload
    unknown = seen - {s.key for s in full.statements}
    if unknown or len(seen) != len(full.statements):
        raise ShardError(f"the shards judged {len(seen)} statements, the workload holds "
                         f"{len(full.statements)}: they do not split one workload")
    workload = join_workloads(full, [r.workload for r in ordered], owners)
    return workload, join_recordings([r.recording for r in ordered]), ordered[0].report


def merge(result_paths: Sequence[Path]) -> Comparison:
    """One comparison from the JSON results of every shard of it (``compare --shard I/N``): the
    joined recordings judged again, exactly as an unsharded run on the same answers."""
    results = [shard_result(p, load_result(p)) for p in result_paths]
    for r in results:
        if r.report["kind"] != "compare":
            raise ShardError(f"{r.path} is a 'planguard check' result: merge takes compare --shard results")
    workload, recording, first = merged(results)
    safety = first.get("safety")
    policy = budget = None
    if safety:
        policy = Policy(safety["writes"], safety["max_query_ms"], safety["allow_same_cluster"])
        budget = Budget(**safety["budget"]) if safety.get("budget") else Budget()
    started = min(str(r.report["generated_at"]) for r in results)
    thresholds = Thresholds(**first["thresholds"])
    result = comparison_of(workload, recording, thresholds, repeat=int(first["repeat"]),
                           redact=bool(first["redacted"]), started_at=started,
                           duration_s=max(float(r.report["duration_s"]) for r in results))
    return replace(result, policy=policy, budget=budget)
