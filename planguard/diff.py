"""Plan differences (pure: no database).

``diff_plans(old, new)`` aligns the two plans by relation (not by position) and
names what the planner chose differently: the scan method and index per relation,
indexes used on one side only, the join method per set of joined relations, the
join order, aggregate strategies and parallelism.

The regression call itself is ``planguard.calls.classify``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from planguard.plan import JOIN_NODES, Plan, PlanNode, shape_fingerprint


@dataclass(frozen=True)
class Change:
    """One thing the planner chose differently on NEW. ``kind`` is a stable name."""

    kind: str  # scan_method, index_changed, index_new_only, index_old_only, join_method,
    #            join_order, aggregate_strategy, parallelism, plan_shape
    detail: str
    relation: str | None = None
    index: str | None = None


def _scans(plan: Plan) -> dict[str, list[tuple[str, str | None]]]:
    """relation -> [(scan node type, index or None)], bitmap heap scans with their indexes."""
    out: dict[str, list[tuple[str, str | None]]] = {}

    def bitmap_indexes(node: PlanNode) -> list[str]:
        return sorted({n.index_name for n in node.walk() if n.index_name})

    for node in plan.flat:
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


def _joins(plan: Plan) -> dict[frozenset[str], list[str]]:
    out: dict[frozenset[str], list[str]] = {}
    below = None
    for node in plan.flat:
        if node.node_type in JOIN_NODES:
            below = plan.relations_below if below is None else below
            rels = below[id(node)]
            label = node.node_type + (f" ({node.join_type})" if node.join_type not in (None, "Inner") else "")
            out.setdefault(rels, []).append(label)
    return out


def _join_order(plan: Plan) -> list[str]:
    order: list[str] = []
    for node in plan.flat:
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
        return Counter(n.label for n in p.flat if n.node_type in ("Aggregate", "SetOp"))

    old_aggs, new_aggs = aggs(old), aggs(new)
    if old_aggs != new_aggs:
        before = ", ".join(sorted(old_aggs)) or "none"
        after = ", ".join(sorted(new_aggs)) or "none"
        changes.append(Change("aggregate_strategy", f"{before} → {after}"))

    def parallel(p: Plan) -> bool:
        return any(n.node_type in ("Gather", "Gather Merge") for n in p.flat)

    if parallel(old) != parallel(new):
        where = "NEW only" if parallel(new) else "OLD only"
        changes.append(Change("parallelism", f"parallel plan on {where}"))
    if not changes:
        changes.append(Change("plan_shape", "the plan tree differs (node types or order)"))
    return tuple(changes)


ESTIMATE_ERROR = 10.0  # q-error that names a node as misestimated


@dataclass
class _RunFacts:
    """What ``runtime_changes`` reads of one plan, gathered in one walk, in plan order."""

    worst: dict[str, tuple[float, PlanNode]]  # per relation (scans) the worst q-error and its node
    scans: list[tuple[str, PlanNode]]  # (scan key, node) of every scan of a relation
    short: list[tuple[PlanNode, str]]  # Gathers short of workers, and what they launched
    spills: list[tuple[PlanNode, str]]  # what went to disk, and where


def _run_facts(plan: Plan) -> _RunFacts:
    """Below a Limit a scan stops early by design: it returns fewer rows than estimated for
    the whole result, so only underestimates count there as misestimates."""
    facts = _RunFacts({}, [], [], [])
    worst = facts.worst
    stack = [(plan.root, False)]  # depth first, children in plan order
    while stack:
        node, truncated = stack.pop()
        rel = node.relation
        if rel is not None:
            q = node.q_error if node.node_type != "Bitmap Index Scan" else None
            if q is not None:
                if truncated and (node.actual_rows or 0) < node.plan_rows:
                    q = 1.0
                if rel not in worst or q > worst[rel][0]:
                    worst[rel] = (q, node)
            if node.scan_method:
                facts.scans.append((_scan_key(node), node))
        if node.workers_planned is not None:
            short = _short_of_workers(node)
            if short:
                facts.short.append((node, short))
        spill = node.spill
        if spill:
            facts.spills.append((node, spill))
        children = node.children
        if len(children) == 1:
            stack.append((children[0], truncated or node.node_type == "Limit"))
        elif children:
            below = truncated or node.node_type == "Limit"
            stack.extend([(c, below) for c in reversed(children)])
    return facts


def _removed_by_filter(node: PlanNode) -> float:
    return node.rows_removed_by_filter * (node.actual_loops or 1)


def _may_change(new: _RunFacts, threshold: float) -> bool:
    """NEW's plan shows something that ``runtime_changes`` would name if OLD did not show it."""
    return bool(new.short or new.spills or any(q >= threshold for q, _ in new.worst.values()) or any(
        _removed_by_filter(n) >= 10_000 or (n.actual_loops or 0) >= 1000 for _, n in new.scans))


def _short_of_workers(node: PlanNode) -> str | None:
    planned, launched = node.workers_planned, node.workers_launched
    if planned is not None and launched is not None and launched < planned:
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
    nf = _run_facts(new)
    if not _may_change(nf, threshold):
        return ()  # nothing on NEW could be a change, whatever OLD did: OLD need not be read
    of = _run_facts(old)
    old_q, new_q = of.worst, nf.worst
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
    old_scans = dict(of.scans)
    for key, node in nf.scans:
        prior = old_scans.get(key)
        if prior is None:
            continue
        removed_old, removed_new = _removed_by_filter(prior), _removed_by_filter(node)
        if removed_new >= 10_000 and removed_new >= 10 * max(removed_old, 1):
            changes.append(Change("filter_rows", f"{key}: {removed_new:,.0f} rows read and "
                                  f"thrown away by a filter on NEW, {removed_old:,.0f} on OLD",
                                  relation=node.relation))
        loops_old, loops_new = prior.actual_loops or 0, node.actual_loops or 0
        if loops_new >= 1000 and loops_new >= 10 * max(loops_old, 1):
            changes.append(Change("loops", f"{key}: scanned {loops_new:,.0f} times on NEW, "
                                  f"{loops_old:,.0f} on OLD (a nested loop's inner side)",
                                  relation=node.relation))
    if nf.short and not of.short:
        node, short = nf.short[0]
        changes.append(Change("workers", f"{node.label}: {short} on NEW only (max_parallel_workers "
                              "or max_worker_processes exhausted?)"))
    old_spills = {spill.split(" ")[0] for _, spill in of.spills}
    for node, spill in nf.spills:
        if spill.split(" ")[0] not in old_spills:
            changes.append(Change("spill", f"{node.label}: {spill} on NEW only", relation=node.relation))
    return tuple(changes)


