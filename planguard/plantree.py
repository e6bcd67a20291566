"""Plans as trees for reviewers, OLD and NEW aligned node by node (pure: no database).

``plan_pair(old, new)`` turns two raw EXPLAIN plan objects (what the JSON report keeps as
``plan_json``) into what the report computes for drawing them, in the conventions of the
depesz and dalibo (pev2) plan viewers and pgMustard:

- every node in pre-order (its ``id``: its place in that order, which is also the order of
  the raw plan's nodes, depth first, ``Plans`` in order) with its parent and depth, its type
  and label (node type, relation, index, join method), its time with all loops (parallel
  processes counted once), its exclusive time and that time's share of the plan, the
  misestimate factor and its direction, and badges for what costs (rows removed by a
  filter, heap fetches, hash batches, disk sorts, temp buffers, lossy bitmap blocks, workers
  not launched);
- each node's pair on the other side, matched by relation: scans by their relation (and
  alias), joins by the set of relations below them, the other nodes by their kind and the
  relations below them; and what changed between the pair: ``scan method``, ``index``,
  ``join method``, ``join order``, ``strategy``, or ``only on this side``;
- insights: what appears on NEW and not on OLD (a spill, a misestimate of 10x or more, a
  sequential scan that discards most of what it reads, a nested loop with a huge loop count,
  a lossy bitmap), each naming its node.

What EXPLAIN itself says of a node (its type, rows estimated and actual, loops, buffers, the
keys of ``DETAIL_KEYS``) is not copied: the page reads it from the raw plan, node ``id`` for
node.  A tree is columns, a list per field with one entry per node (badges and changes: by
node id, only where there are some): 60 % less to encode, half as much compressed as an
object per node, on 47-node plans.  ``nodes_of`` makes the nodes of them, as the page does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from planguard.plan import CONDITION_KEYS, JOIN_NODES, Plan, PlanNode, parse_plan

# What the page lists in a node's detail, read from the raw plan (``report.html`` passes it on).
DETAIL_KEYS = (*CONDITION_KEYS, "Sort Key", "Presorted Key", "Group Key", "Hash Key", "Cache Key",
               "Sort Method", "Sort Space Used", "Sort Space Type", "Workers Planned", "Workers Launched",
               "Scan Direction", "Peak Memory Usage", "Hash Buckets", "Hash Batches")
MISESTIMATE_INSIGHT = 10.0  # a row estimate off by this factor or more
SEQ_DISCARD_SHARE = 0.9  # a sequential scan discarding this share of what it reads ...
SEQ_DISCARD_MIN = 1000  # ... and at least this many rows
LOOPS_INSIGHT = 1000  # the inner side of a nested loop run this many times or more


@dataclass(slots=True)
class _Node:
    id: int
    parent: int | None
    depth: int
    node: PlanNode
    truncated: bool  # below a Limit: it stops early by design
    procs: int = 1  # processes that run it at once (below a Gather: its workers and the leader)
    kids: list[int] = field(default_factory=list)  # its children's ids, in plan order
    leaves: frozenset[str] = frozenset()  # the relations of the node and of all below it

    @property
    def q_error(self) -> float | None:
        """The node's misestimate; none for returning fewer rows than estimated below a Limit."""
        n = self.node
        if self.truncated and (n.actual_rows or 0) < n.plan_rows:
            return None
        return n.q_error


def _nodes(plan: Plan) -> list[_Node]:
    out: list[_Node] = []
    stack: list[tuple[PlanNode, int | None, int, bool, int]] = [(plan.root, None, 0, False, 1)]
    while stack:  # depth first, children in plan order
        n, parent, depth, truncated, procs = stack.pop()
        me = len(out)
        out.append(_Node(me, parent, depth, n, truncated, procs))
        if parent is not None:
            out[parent].kids.append(me)
        if n.node_type in ("Gather", "Gather Merge"):
            launched = n.workers_launched if n.workers_launched is not None else n.workers_planned
            procs = (launched or 0) + 1
        stack.extend([(c, me, depth + 1, truncated or n.node_type == "Limit", procs)
                      for c in reversed(n.children)])
    for x in reversed(out):  # in pre-order a node's children come after it
        rel = x.node.relation
        if x.kids:
            x.leaves = frozenset().union(*(out[k].leaves for k in x.kids), (rel,) if rel else ())
        elif rel:
            x.leaves = frozenset((rel,))
    return out


def _num(r: Mapping[str, Any], key: str) -> float:
    v = r.get(key)
    return float(v) if isinstance(v, (int, float)) else 0.0


def _inclusive_ms(x: _Node) -> float | None:
    """Time spent in the node and below it, all loops: parallel processes' loops run at once."""
    n = x.node
    t = n.raw.get("Actual Total Time")
    if t is None or n.actual_loops is None:
        return None
    return float(t) * max(float(n.actual_loops or 0) / x.procs, min(float(n.actual_loops or 0), 1.0))


def _key(x: _Node) -> tuple[str, Any]:
    """What a node is matched by on the other side."""
    n = x.node
    if n.relation and n.scan_method:
        bare = n.relation.rsplit(".", 1)[-1]
        return ("scan", n.relation if n.alias in (None, bare) else f"{n.relation} AS {n.alias}")
    if n.node_type in JOIN_NODES:
        return ("join", x.leaves)
    if n.node_type == "Bitmap Index Scan":
        return ("bitmap index", n.index_name)
    kind = "aggregate" if n.node_type in ("Aggregate", "Group") else n.node_type
    return (kind, x.leaves)


def _pairs(old: list[_Node], new: list[_Node]) -> dict[int, int]:
    """old id -> new id, in order of appearance within each key."""
    waiting: dict[tuple[str, Any], list[int]] = {}
    for x in new:
        waiting.setdefault(_key(x), []).append(x.id)
    out: dict[int, int] = {}
    for x in old:
        queue = waiting.get(_key(x))
        if queue:
            out[x.id] = queue.pop(0)
    # A bitmap index scan whose index changed still pairs through its paired parent.
    back = {v: k for k, v in out.items()}
    for x in old:
        if x.id in out or x.node.node_type != "Bitmap Index Scan" or x.parent not in out:
            continue
        for y in (new[i] for i in new[out[x.parent]].kids):
            if y.id not in back and y.node.node_type == "Bitmap Index Scan":
                out[x.id], back[y.id] = y.id, x.id
                break
    return out


def _changed(x: _Node, y: _Node, old: list[_Node], new: list[_Node]) -> list[str]:
    a, b = x.node, y.node
    out = []
    if a.scan_method or b.scan_method:
        if a.node_type != b.node_type:
            out.append("scan method")
        if (a.index_name or None) != (b.index_name or None):
            out.append("index")
    elif a.node_type in JOIN_NODES or b.node_type in JOIN_NODES:
        if a.node_type != b.node_type:
            out.append("join method")
        if x.kids and y.kids and old[x.kids[0]].leaves != new[y.kids[0]].leaves:
            out.append("join order")
    elif a.node_type == "Bitmap Index Scan":
        if a.index_name != b.index_name:
            out.append("index")
    elif a.label != b.label:
        out.append("strategy")
    return out


# Every badge needs one of these keys with a value that is not zero nor empty.
BADGE_KEYS = ("Rows Removed by Filter", "Rows Removed by Join Filter", "Rows Removed by Index Recheck",
              "Heap Fetches", "Hash Batches", "HashAgg Batches", "Sort Space Type", "Sort Method",
              "Temp Read Blocks", "Temp Written Blocks", "Lossy Heap Blocks", "Workers Planned")


def _badges(n: PlanNode) -> list[dict[str, str]]:
    r = n.raw
    if not any(map(r.get, BADGE_KEYS)):  # most nodes
        return []
    loops = float(n.actual_loops or 1)
    out = []
    for key, what in (("Rows Removed by Filter", "filter"), ("Rows Removed by Join Filter", "join filter"),
                      ("Rows Removed by Index Recheck", "index recheck")):
        removed = _num(r, key)
        if removed > 0:
            kept = float(n.actual_rows or 0)
            share = removed / (removed + kept) if removed + kept else 0.0
            out.append({"kind": "filter_removed",
                        "text": f"{removed * loops:,.0f} rows removed by {what} ({share:.0%})"})
    if _num(r, "Heap Fetches") > 0:
        out.append({"kind": "heap_fetches", "text": f"{_num(r, 'Heap Fetches'):,.0f} heap fetches"})
    if _num(r, "Hash Batches") > 1:
        out.append({"kind": "hash_batches", "text": f"{_num(r, 'Hash Batches'):,.0f} hash batches"})
    if _num(r, "HashAgg Batches") > 1:
        out.append({"kind": "hash_batches",
                    "text": f"{_num(r, 'HashAgg Batches'):,.0f} hash aggregate batches"})
    if r.get("Sort Space Type") == "Disk" or "external" in str(r.get("Sort Method", "")):
        out.append({"kind": "disk_sort", "text": f"sort on disk ({r.get('Sort Space Used', '?')} kB)"})
    temp = _num(r, "Temp Read Blocks") + _num(r, "Temp Written Blocks")
    if temp > 0:
        out.append({"kind": "temp_buffers", "text": f"{temp:,.0f} temp buffers"})
    if _num(r, "Lossy Heap Blocks") > 0:
        out.append({"kind": "lossy", "text": f"{_num(r, 'Lossy Heap Blocks'):,.0f} lossy heap blocks"})
    planned, launched = r.get("Workers Planned"), r.get("Workers Launched")
    if isinstance(planned, int) and isinstance(launched, int) and launched < planned:
        out.append({"kind": "workers", "text": f"{launched} of {planned} workers launched"})
    return out


def _initplan_user(x: _Node, nodes: list[_Node]) -> int | None:
    """The node whose time includes this InitPlan's or CTE's: the first that reads its result
    (``$3`` before PostgreSQL 18, ``(InitPlan 3)`` since; ``CTE Scan`` of the CTE)."""
    name = x.node.subplan_name or ""
    cte = re.fullmatch(r"CTE (.+)", name)
    params = re.findall(r"\$\d+", name)
    plan_no = re.match(r"InitPlan (\d+)", name)
    for y in nodes:
        if y.id == x.id:
            continue
        if cte and y.node.node_type == "CTE Scan" and y.node.raw.get("CTE Name") == cte.group(1):
            return y.id
        text = " ".join(str(y.node.raw.get(k, "")) for k in (*CONDITION_KEYS, "Output"))
        if (params and any(re.search(re.escape(p) + r"\b", text) for p in params)) or \
                (plan_no and f"(InitPlan {plan_no.group(1)})" in text):
            return y.id
    return None


def _exclusive(nodes: list[_Node], inclusive: list[float | None]) -> list[float | None]:
    """Each node's own time: its time less what ran below it.  An InitPlan or a CTE is charged
    to the node that reads it, whose time includes its evaluation."""
    excl = list(inclusive)
    for x in nodes:
        spent = inclusive[x.id]
        if x.parent is None or spent is None:
            continue
        payer = x.parent
        if x.node.parent_relationship == "InitPlan":
            payer = _initplan_user(x, nodes) or x.parent
        if excl[payer] is not None:
            excl[payer] = excl[payer] - spent  # type: ignore[operator]
    return [None if e is None else max(e, 0.0) for e in excl]


def _tree(nodes: list[_Node], pairs: Mapping[int, int], changed: Mapping[int, list[str]]) -> dict[str, Any]:
    """A tree as columns, one entry per node in pre-order (see ``nodes_of``)."""
    inclusives = [_inclusive_ms(x) for x in nodes]
    total = inclusives[0]
    exclusives = _exclusive(nodes, inclusives)
    shares: list[float | None] = []
    misestimates: list[list[Any] | None] = []
    badges: dict[int, list[dict[str, str]]] = {}
    for x, exclusive in zip(nodes, exclusives, strict=True):
        n = x.node
        shares.append(None if exclusive is None or not total else round(min(exclusive / total, 1.0), 4))
        q = x.q_error
        misestimates.append(None if q is None else
                            [round(q, 2), "under" if (n.actual_rows or 0) > n.plan_rows else "over"])
        b = _badges(n)
        if b:
            badges[x.id] = b
    return {"total_ms": _rounded(total), "parent": [x.parent for x in nodes],
            "label": [x.node.label for x in nodes], "time_total_ms": [_rounded(v) for v in inclusives],
            "exclusive_ms": [_rounded(v) for v in exclusives], "exclusive_share": shares,
            "misestimate": misestimates, "badges": badges, "changed": dict(changed),
            "pair": [pairs.get(x.id) for x in nodes]}


def _rounded(ms: float | None) -> float | None:
    """A time to 0.1 µs: EXPLAIN's own are to 1 µs; loops and subtractions add only float noise."""
    return None if ms is None else round(ms, 4)


def nodes_of(tree: Mapping[str, Any], raw: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """A tree's nodes as objects, as the page (``report.js``: ``withRaw``) makes them of its
    columns: ``id`` (the place in pre-order, which is the raw plan's node order depth first),
    ``parent``, ``depth``, ``type`` (the raw plan's ``Node Type``, given ``raw``), ``label``,
    ``time_total_ms`` (all loops), ``exclusive_ms``, ``exclusive_share``, ``misestimate``
    (``{"factor", "dir"}``), ``badges``, ``changed`` and ``pair`` (the paired node's id)."""
    flat: list[Mapping[str, Any]] = []
    stack = [raw] if raw else []
    while stack:
        d = stack.pop()
        flat.append(d)
        stack.extend(reversed(d.get("Plans") or ()))
    out: list[dict[str, Any]] = []
    for i, parent in enumerate(tree["parent"]):
        m = tree["misestimate"][i]
        out.append({"id": i, "parent": parent, "depth": 0 if parent is None else out[parent]["depth"] + 1,
                    "type": flat[i].get("Node Type") if i < len(flat) else None, "label": tree["label"][i],
                    "time_total_ms": tree["time_total_ms"][i], "exclusive_ms": tree["exclusive_ms"][i],
                    "exclusive_share": tree["exclusive_share"][i],
                    "misestimate": None if m is None else {"factor": m[0], "dir": m[1]},
                    "badges": tree["badges"].get(i) or tree["badges"].get(str(i)) or [],
                    "changed": tree["changed"].get(i) or tree["changed"].get(str(i)) or [],
                    "pair": tree["pair"][i]})
    return out


def _insights_of(x: _Node, kids: list[_Node]) -> Iterator[tuple[str, str]]:
    n = x.node
    if n.spill:
        yield "spill", f"{n.label}: {n.spill}"
    q = x.q_error
    # A misestimate is named where it starts: not again on every node above it.
    if q is not None and q >= MISESTIMATE_INSIGHT and not any(
            (k.q_error or 0) >= MISESTIMATE_INSIGHT for k in kids):
        way = "under" if (n.actual_rows or 0) > n.plan_rows else "over"
        yield "misestimate", (f"{n.label}: estimated {n.plan_rows:,.0f} rows, got {n.actual_rows or 0:,.0f} "
                              f"per loop ({q:,.0f}× {way})")
    if n.node_type == "Seq Scan" and n.actual_rows is not None:
        loops = float(n.actual_loops or 1)
        removed = n.rows_removed_by_filter * loops
        read = removed + float(n.actual_rows) * loops
        if removed >= SEQ_DISCARD_MIN and read and removed / read >= SEQ_DISCARD_SHARE:
            yield "seq_scan_discards", (f"{n.label} discards {removed / read:.0%} of the rows it reads "
                                        f"({removed:,.0f} of {read:,.0f})")
    inner = kids[1].node if len(kids) > 1 else None
    if n.node_type == "Nested Loop" and inner is not None and (inner.actual_loops or 0) >= LOOPS_INSIGHT:
        yield "nested_loop_loops", (f"{n.label}: its inner side ({inner.label}) runs "
                                    f"{inner.actual_loops:,.0f} times")
    if _num(n.raw, "Lossy Heap Blocks") > 0:
        yield "lossy_bitmap", (f"{n.label}: {_num(n.raw, 'Lossy Heap Blocks'):,.0f} lossy heap blocks "
                               "(work_mem too small for an exact bitmap): every row of them is rechecked")


def _insights(old: list[_Node] | None, new: list[_Node], back: Mapping[int, int]) -> list[dict[str, Any]]:
    """What NEW's plan shows and OLD's does not, at the paired node (or anywhere, unpaired)."""
    def kids(nodes: list[_Node], i: int) -> list[_Node]:
        return [nodes[k] for k in nodes[i].kids]

    old_kinds: dict[int, set[str]] = {}
    anywhere: set[str] = set()
    for x in old or []:
        kinds = {k for k, _ in _insights_of(x, kids(old or [], x.id))}
        old_kinds[x.id] = kinds
        anywhere |= kinds
    out = []
    for x in new:
        for kind, text in _insights_of(x, kids(new, x.id)):
            pair = back.get(x.id)
            seen = old_kinds.get(pair, set()) if pair is not None else anywhere
            if kind in seen:
                continue
            out.append({"kind": kind, "side": "new", "node": x.id, "text": text})
    return out


def plan_pair(old_plan: Mapping[str, Any] | None, new_plan: Mapping[str, Any] | None) -> dict[str, Any]:
    """Both plans as trees, aligned, with NEW's insights (``plan_json`` objects, either may be None)."""
    old = _nodes(parse_plan({"Plan": old_plan}, compact=False)) if old_plan else None
    new = _nodes(parse_plan({"Plan": new_plan}, compact=False)) if new_plan else None
    pairs = _pairs(old, new) if old and new else {}
    back = {v: k for k, v in pairs.items()}
    changed_old: dict[int, list[str]] = {}
    changed_new: dict[int, list[str]] = {}
    if old and new:
        for a, b in pairs.items():
            what = _changed(old[a], new[b], old, new)
            if what:
                changed_old[a] = changed_new[b] = what
        for x in old:
            if x.id not in pairs:
                changed_old[x.id] = ["only on this side"]
        for x in new:
            if x.id not in back:
                changed_new[x.id] = ["only on this side"]
    return {
        "old": _tree(old, pairs, changed_old) if old else None,
        "new": _tree(new, back, changed_new) if new else None,
        "insights": _insights(old, new, back) if new else [],
    }
