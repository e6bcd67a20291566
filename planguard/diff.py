"""Plan differences and the regression call (pure: no database).

``diff_plans(old, new)`` aligns the two plans by relation (not by position) and
names what the planner chose differently: the scan method and index per relation,
indexes used on one side only, the join method per set of joined relations, the
join order, aggregate strategies and parallelism.

``classify(old, new, thresholds, noise)`` decides a parameter set's status from both
sides' runs: the plans and buffers (deterministic) say whether NEW does different work,
the paired run times (``planguard.timing``) whether it is slower.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from planguard.config import Thresholds
from planguard.plan import JOIN_NODES, Plan, PlanNode, shape_fingerprint
from planguard.timing import Evidence, NoiseFloor, weigh

STATUSES = ("regressed", "error", "slower_same_plan", "unstable", "plan_changed", "improved",
            "unchanged", "skipped")
# Order of severity when a statement's parameter sets disagree: the worst one speaks.
SEVERITY = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True)
class Change:
    """One thing the planner chose differently on NEW. ``kind`` is a stable name."""

    kind: str  # scan_method, index_changed, index_new_only, index_old_only, join_method,
    #            join_order, aggregate_strategy, parallelism, plan_shape
    detail: str
    relation: str | None = None
    index: str | None = None


@dataclass(frozen=True)
class Run:
    """One measured execution."""

    execution_ms: float
    planning_ms: float | None
    shared_buffers: int
    temp_buffers: int
    plan: Plan
    shared_read: int = 0  # of shared_buffers, the blocks that were not in shared buffers yet
    # When the client sent it and had the answer (time.monotonic(), seconds): pairs overlap.
    started: float | None = field(default=None, compare=False)
    ended: float | None = field(default=None, compare=False)

    @classmethod
    def of(cls, plan: Plan) -> Run:
        return cls(float(plan.execution_ms or 0.0), plan.planning_ms, plan.shared_buffers,
                   plan.temp_buffers, plan, plan.shared_read)


@dataclass(frozen=True)
class Warmup:
    """The discarded runs before the measured ones: until reads from outside shared buffers
    stopped falling (a cold cache warming up), within a bound of runs and time."""

    runs: int
    first_read: int  # blocks the first execution read (not found in shared buffers)
    last_read: int  # ... the last warm-up execution
    reads_by_relation: tuple[tuple[str, int], ...] = ()  # the first execution's, largest first


@dataclass(frozen=True)
class Measurement:
    """One side's result for one parameter set: medians over the measured runs."""

    median_ms: float | None = None
    shared_buffers: int | None = None  # shared hit + read, median over runs
    temp_buffers: int | None = None  # temp read + written, median over runs
    runs: int = 0
    plan: Plan | None = None  # the run whose time is closest to the median
    error: str | None = None
    plan_fingerprints: tuple[str, ...] = ()  # distinct shapes seen across runs
    times_ms: tuple[float, ...] = ()  # every measured run's execution time, in the order they ran
    warmup: Warmup | None = None

    @property
    def plan_fingerprint(self) -> str | None:
        return shape_fingerprint(self.plan) if self.plan else None

    @property
    def buffers(self) -> int:
        """Shared plus temp buffers: what the regression call compares."""
        return (self.shared_buffers or 0) + (self.temp_buffers or 0)

    @property
    def ok(self) -> bool:
        return self.error is None and self.plan is not None

    @property
    def samples(self) -> tuple[float, ...]:
        """The run times, or the median alone when only that is known."""
        if self.times_ms:
            return self.times_ms
        return () if self.median_ms is None else (self.median_ms,)


def summarize(runs: Sequence[Run], warmup: Warmup | None = None) -> Measurement:
    """One side's Measurement from its runs: medians, the run closest to the median time,
    the shapes seen, every run's time in order."""
    times = tuple(r.execution_ms for r in runs)
    median_ms = statistics.median(times)
    typical = min(runs, key=lambda r: abs(r.execution_ms - median_ms))
    return Measurement(
        median_ms=median_ms,
        shared_buffers=int(statistics.median(r.shared_buffers for r in runs)),
        temp_buffers=int(statistics.median(r.temp_buffers for r in runs)),
        runs=len(runs), plan=typical.plan,
        plan_fingerprints=tuple(sorted({shape_fingerprint(r.plan) for r in runs})),
        times_ms=times, warmup=warmup,
    )


def _scans(plan: Plan) -> dict[str, list[tuple[str, str | None]]]:
    """relation -> [(scan node type, index or None)], bitmap heap scans with their indexes."""
    out: dict[str, list[tuple[str, str | None]]] = {}

    def bitmap_indexes(node: PlanNode) -> list[str]:
        return sorted({n.index_name for n in node.walk() if n.index_name})

    for node in plan.nodes():
        if not node.scan_method or not node.relation:
            continue
        if node.node_type == "Bitmap Heap Scan":
            idx = ", ".join(bitmap_indexes(node)) or None
        else:
            idx = node.index_name
        out.setdefault(_scan_key(node), []).append((node.node_type, idx))
    return {k: sorted(v, key=lambda x: (x[0], x[1] or "")) for k, v in out.items()}


def _scan_key(node: PlanNode) -> str:
    """A scan's relation, with its alias when the alias tells two scans of it apart (self-joins)."""
    assert node.relation is not None
    bare = node.relation.rsplit(".", 1)[-1]
    return node.relation if node.alias in (None, bare) else f"{node.relation} AS {node.alias}"


def _describe_scan(node_type: str, index: str | None) -> str:
    return f"{node_type} using {index}" if index else node_type


def _leaf_relations(node: PlanNode) -> frozenset[str]:
    return frozenset(n.relation for n in node.walk() if n.relation)


def _joins(plan: Plan) -> dict[frozenset[str], list[str]]:
    out: dict[frozenset[str], list[str]] = {}
    for node in plan.nodes():
        if node.node_type in JOIN_NODES:
            rels = _leaf_relations(node)
            label = node.node_type + (f" ({node.join_type})" if node.join_type not in (None, "Inner") else "")
            out.setdefault(rels, []).append(label)
    return out


def _join_order(plan: Plan) -> list[str]:
    order: list[str] = []
    for node in plan.nodes():
        if node.scan_method and node.relation and node.relation not in order:
            order.append(node.relation)
    return order


def diff_plans(old: Plan, new: Plan) -> tuple[Change, ...]:
    """What the planner chose differently on NEW than on OLD; empty when the shapes match."""
    if shape_fingerprint(old) == shape_fingerprint(new):
        return ()
    changes: list[Change] = []
    old_scans, new_scans = _scans(old), _scans(new)
    for rel in sorted(set(old_scans) & set(new_scans)):
        o, n = old_scans[rel], new_scans[rel]
        if o == n:
            continue
        o_types, n_types = [t for t, _ in o], [t for t, _ in n]
        o_text = ", ".join(_describe_scan(*x) for x in o)
        n_text = ", ".join(_describe_scan(*x) for x in n)
        kind = "scan_method" if o_types != n_types else "index_changed"
        changes.append(Change(kind, f"{rel}: {o_text} → {n_text}", relation=rel))
    old_idx = {(rel, i) for rel, v in old_scans.items() for _, idx in v if idx for i in idx.split(", ")}
    new_idx = {(rel, i) for rel, v in new_scans.items() for _, idx in v if idx for i in idx.split(", ")}
    for rel, idx in sorted(new_idx - old_idx):
        changes.append(Change("index_new_only", f"index {idx} on {rel} is used on NEW only",
                              relation=rel, index=idx))
    for rel, idx in sorted(old_idx - new_idx):
        changes.append(Change("index_old_only", f"index {idx} on {rel} is used on OLD only",
                              relation=rel, index=idx))
    for rel in sorted(set(old_scans) ^ set(new_scans)):
        side = "NEW" if rel in new_scans else "OLD"
        changes.append(Change("plan_shape", f"{rel} is scanned on {side} only", relation=rel))

    old_joins, new_joins = _joins(old), _joins(new)
    for rels in sorted(set(old_joins) & set(new_joins), key=lambda r: (len(r), sorted(r))):
        if Counter(old_joins[rels]) != Counter(new_joins[rels]):
            names = " ⋈ ".join(sorted(rels))
            changes.append(Change(
                "join_method",
                f"{names}: {', '.join(old_joins[rels])} → {', '.join(new_joins[rels])}",
            ))
    o_order, n_order = _join_order(old), _join_order(new)
    if len(o_order) > 1 and set(o_order) == set(n_order) and o_order != n_order:
        changes.append(Change("join_order", f"{' → '.join(o_order)} became {' → '.join(n_order)}"))

    def aggs(p: Plan) -> Counter[str]:
        return Counter(n.label for n in p.nodes() if n.node_type in ("Aggregate", "SetOp"))

    if aggs(old) != aggs(new):
        before = ", ".join(sorted(aggs(old))) or "none"
        after = ", ".join(sorted(aggs(new))) or "none"
        changes.append(Change("aggregate_strategy", f"{before} → {after}"))

    def gathers(p: Plan) -> int:
        return sum(1 for n in p.nodes() if n.node_type in ("Gather", "Gather Merge"))

    if bool(gathers(old)) != bool(gathers(new)):
        where = "NEW only" if gathers(new) else "OLD only"
        changes.append(Change("parallelism", f"parallel plan on {where}"))
    if not changes:
        changes.append(Change("plan_shape", "the plan tree differs (node types or order)"))
    return tuple(changes)


ESTIMATE_ERROR = 10.0  # q-error that names a node as misestimated


def _worst_estimates(plan: Plan) -> dict[str, tuple[float, PlanNode]]:
    """Per relation (scans) the worst q-error and its node.

    Below a Limit a scan stops early by design: it returns fewer rows than estimated
    for the whole result, so only underestimates count there.
    """
    out: dict[str, tuple[float, PlanNode]] = {}

    def visit(node: PlanNode, truncated: bool) -> None:
        q = node.q_error
        rel = node.relation
        if q is not None and rel is not None and node.node_type != "Bitmap Index Scan":
            if truncated and (node.actual_rows or 0) < node.plan_rows:
                q = 1.0
            if rel not in out or q > out[rel][0]:
                out[rel] = (q, node)
        for child in node.children:
            visit(child, truncated or node.node_type == "Limit")

    visit(plan.root, False)
    return out


def _short_of_workers(node: PlanNode) -> str | None:
    planned, launched = node.raw.get("Workers Planned"), node.raw.get("Workers Launched")
    if isinstance(planned, int) and isinstance(launched, int) and launched < planned:
        return f"launched {launched} of {planned} planned parallel workers"
    return None


def runtime_changes(old: Plan, new: Plan, threshold: float = ESTIMATE_ERROR) -> tuple[Change, ...]:
    """What went differently at run time, whatever the plan shape.

    ``estimate_error``: a scan whose row estimate is off by ``threshold``x or more on NEW
    but not on OLD (the mark of missing or stale statistics); ``spill``: a sort or hash
    that went to disk on NEW only; ``filter_rows``: a scan that reads and throws away 10x
    more rows; ``loops``: a scan executed 10x more often (the inner side of a nested loop);
    ``workers``: a Gather that got fewer parallel workers than it planned.
    """
    changes: list[Change] = []
    old_q, new_q = _worst_estimates(old), _worst_estimates(new)
    for rel in sorted(new_q):
        q, node = new_q[rel]
        if q >= threshold and old_q.get(rel, (1.0, None))[0] < threshold:
            before = old_q[rel][0] if rel in old_q else None
            changes.append(Change(
                "estimate_error",
                f"{rel}: {node.label} estimated {node.plan_rows:,.0f} rows, got "
                f"{node.actual_rows or 0:,.0f} ({q:,.0f}x off on NEW"
                + (f", {before:,.1f}x on OLD)" if before is not None else ")"),
                relation=rel,
            ))
    old_scans = {_scan_key(n): n for n in old.nodes() if n.relation and n.scan_method}
    for node in new.nodes():
        if not (node.relation and node.scan_method):
            continue
        prior = old_scans.get(_scan_key(node))
        if prior is None:
            continue
        removed_old = float(prior.raw.get("Rows Removed by Filter", 0) or 0) * (prior.actual_loops or 1)
        removed_new = float(node.raw.get("Rows Removed by Filter", 0) or 0) * (node.actual_loops or 1)
        if removed_new >= 10_000 and removed_new >= 10 * max(removed_old, 1):
            changes.append(Change("filter_rows", f"{_scan_key(node)}: {removed_new:,.0f} rows read and "
                                  f"thrown away by a filter on NEW, {removed_old:,.0f} on OLD",
                                  relation=node.relation))
        loops_old, loops_new = prior.actual_loops or 0, node.actual_loops or 0
        if loops_new >= 1000 and loops_new >= 10 * max(loops_old, 1):
            changes.append(Change("loops", f"{_scan_key(node)}: scanned {loops_new:,.0f} times on NEW, "
                                  f"{loops_old:,.0f} on OLD (a nested loop's inner side)",
                                  relation=node.relation))
    old_short = any(_short_of_workers(n) for n in old.nodes())
    for node in new.nodes():
        short = _short_of_workers(node)
        if short and not old_short:
            changes.append(Change("workers", f"{node.label}: {short} on NEW only (max_parallel_workers "
                                  "or max_worker_processes exhausted?)"))
            break
    old_spills = {n.spill.split(" ")[0] for n in old.nodes() if n.spill}
    for node in new.nodes():
        if node.spill and node.spill.split(" ")[0] not in old_spills:
            changes.append(Change("spill", f"{node.label}: {node.spill} on NEW only", relation=node.relation))
    return tuple(changes)


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
    if not new.ok and not old.ok:
        return Call("error", f"fails on both clusters: {new.error}")
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
