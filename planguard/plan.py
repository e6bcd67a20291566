"""Plan model from ``EXPLAIN (FORMAT JSON)`` output (pure: no database).

``parse_plan`` turns PostgreSQL's JSON into an immutable tree of ``PlanNode``.
Every node type is accepted (unknown ones are kept as they are); numbers that
PostgreSQL 18 prints as fractions (``"Actual Rows": 965.67``) are kept as floats.

``shape_fingerprint`` hashes what the planner *chose* (node types, join types,
aggregate strategies, relations, indexes, the order of children) and nothing it
*estimated* or *measured*, so the same plan on two clusters has the same
fingerprint however its costs and timings differ.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, ClassVar

from pglast.parser import normalize

SCAN_METHODS = {
    "Seq Scan": "seq",
    "Index Scan": "index",
    "Index Only Scan": "index_only",
    "Bitmap Heap Scan": "bitmap",
    "Tid Scan": "tid",
    "Tid Range Scan": "tid_range",
    "Sample Scan": "sample",
    "Foreign Scan": "foreign",
    "Custom Scan": "custom",
}
JOIN_NODES = {"Nested Loop", "Hash Join", "Merge Join"}


class PlanFormatError(ValueError):
    """The input is not EXPLAIN (FORMAT JSON) output."""


DECODED_KEPT = 64  # plans whose nodes' EXPLAIN objects stay decoded (the most recently read)


class _Source:
    """One plan's EXPLAIN JSON (its "Plan" object) and its nodes' objects in pre-order.

    ``compact``: the JSON zlib-compressed, the nodes' objects decoded on demand and kept
    decoded for the last DECODED_KEPT plans read; else read-only views of the given objects
    (a plan parsed to be drawn once, not kept)."""

    __slots__ = ("blob", "decoded", "given")
    _recent: ClassVar[deque[_Source]] = deque()  # the decoded ones, oldest first
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, tree: Mapping[str, Any], compact: bool = True) -> None:
        text = json.dumps(tree, separators=(",", ":"), default=dict) if compact else ""  # any Mapping
        self.blob = zlib.compress(text.encode(), 1) if compact else b""
        self.given = None if compact else tree
        self.decoded: tuple[Mapping[str, Any], ...] | None = None if compact else self._flat(tree)

    @staticmethod
    def _flat(tree: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
        flat: list[Mapping[str, Any]] = []
        stack = [tree]
        while stack:
            d = stack.pop()
            flat.append(MappingProxyType(d))
            stack.extend(reversed(d.get("Plans", ()) or ()))
        return tuple(flat)

    def tree(self) -> dict[str, Any]:
        """A fresh copy of the "Plan" object, nothing shared."""
        text = json.dumps(self.given, default=dict) if self.given is not None else zlib.decompress(self.blob)
        out: dict[str, Any] = json.loads(text)
        return out

    def node(self, i: int) -> Mapping[str, Any]:
        decoded = self.decoded
        if decoded is None:
            decoded = self._flat(self.tree())
            with self._lock:
                if self.decoded is not None:  # another thread decoded it meanwhile
                    return self.decoded[i]
                self.decoded = decoded
                self._recent.append(self)
                while len(self._recent) > DECODED_KEPT:
                    self._recent.popleft().decoded = None
        return decoded[i]


# Not frozen: a frozen dataclass's __init__ sets each of its 26 fields through
# object.__setattr__, four times the cost of a plain one, and nodes are built by the million
# (every run's plan; the report's trees). Nothing assigns to a node once built (a plan never
# changes); equality and hashing are a frozen one's (``unsafe_hash``).
@dataclass(slots=True, unsafe_hash=True)
class PlanNode:
    node_type: str
    relation: str | None = None  # schema-qualified when EXPLAIN VERBOSE gave the schema
    alias: str | None = None
    index_name: str | None = None
    join_type: str | None = None
    strategy: str | None = None  # Aggregate / SetOp strategy: Plain, Sorted, Hashed, Mixed
    parent_relationship: str | None = None  # Outer, Inner, InitPlan, SubPlan, Member, ...
    subplan_name: str | None = None
    parallel_aware: bool = False
    plan_rows: float = 0.0
    total_cost: float = 0.0
    actual_rows: float | None = None
    actual_loops: float | None = None
    children: tuple[PlanNode, ...] = ()
    partial_mode: str | None = None  # Partial / Finalize (parallel aggregates)
    spill: str | None = None  # what went to disk in this node: an external sort, a multi-batch hash
    rows_removed_by_filter: float = 0.0  # per loop, as EXPLAIN prints it
    workers_planned: int | None = None
    workers_launched: int | None = None
    shared_hit: int = 0  # blocks, this node and all below it
    shared_read: int = 0
    temp_blocks: int = 0  # temp blocks read plus written
    # How far the row estimate was from the truth: max(est/act, act/est), both >= 1, per loop
    # on both sides as EXPLAIN reports them; None without ANALYZE or for a node that never ran.
    q_error: float | None = None
    scan_method: str | None = None  # seq / index / index_only / bitmap / ... for scan nodes
    # Where the node's EXPLAIN object is kept (compressed, decoded on demand) and its place in
    # the plan's pre-order; ``raw`` reads it.
    source: _Source | None = field(default=None, compare=False, repr=False)
    index: int = field(default=0, compare=False, repr=False)

    @property
    def raw(self) -> Mapping[str, Any]:
        """The node's EXPLAIN object as given, read-only ("Plans" too: its children's objects)."""
        return MappingProxyType({}) if self.source is None else self.source.node(self.index)

    def walk(self) -> Iterator[PlanNode]:
        """This node and all below it, depth first, children in plan order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            if node.children:
                stack.extend(reversed(node.children))

    @property
    def label(self) -> str:
        """Node as EXPLAIN's text format names it: "Index Scan using i on public.t x"."""
        parts = [self.node_type]
        if self.strategy and self.node_type in ("Aggregate", "SetOp"):
            parts = [{"Hashed": "HashAggregate", "Sorted": "GroupAggregate",
                      "Mixed": "MixedAggregate"}.get(self.strategy, self.node_type)]
        partial = self.partial_mode
        if partial and partial != "Simple":
            parts.insert(0, partial)  # Partial / Finalize, as EXPLAIN's text format says
        if self.join_type and self.node_type in JOIN_NODES and self.join_type != "Inner":
            parts.append(self.join_type)
        if self.parallel_aware:
            parts.insert(0, "Parallel")
        if self.index_name and self.node_type == "Bitmap Index Scan":
            parts.append(f"on {self.index_name}")
        elif self.index_name:
            parts.append(f"using {self.index_name}")
        if self.relation:
            parts.append(f"on {self.relation}")
            if self.alias and self.alias != self.relation.split(".")[-1]:
                parts.append(self.alias)
        return " ".join(parts)


@dataclass(frozen=True)
class Plan:
    root: PlanNode
    planning_ms: float | None = None
    execution_ms: float | None = None
    triggers: tuple[Mapping[str, Any], ...] = ()
    jit: Mapping[str, Any] | None = None

    def nodes(self) -> Iterator[PlanNode]:
        """Every node, depth first, children in plan order."""
        return iter(self.flat)

    @cached_property
    def flat(self) -> tuple[PlanNode, ...]:
        """Every node in the order of ``nodes()``, listed once per plan (a plan never changes)."""
        return tuple(self.root.walk())

    @cached_property
    def relations_below(self) -> dict[int, frozenset[str]]:
        """``id(node)`` -> the relations of the node and of all below it, for every node."""
        out: dict[int, frozenset[str]] = {}
        for node in reversed(self.flat):  # in pre-order a node's children come after it
            if not node.children:
                out[id(node)] = frozenset((node.relation,)) if node.relation else frozenset()
                continue
            rels = set().union(*(out[id(c)] for c in node.children))
            if node.relation:
                rels.add(node.relation)
            out[id(node)] = frozenset(rels)
        return out

    @cached_property
    def fingerprint(self) -> str:
        """``shape_fingerprint(self)``, computed once."""
        canon = json.dumps(_shape(self.root), separators=(",", ":"))
        return hashlib.sha1(canon.encode()).hexdigest()[:16]

    @property
    def shared_buffers(self) -> int:
        """Shared blocks hit + read by the execution (the root's totals include children)."""
        return self.root.shared_hit + self.root.shared_read

    @property
    def shared_read(self) -> int:
        """Shared blocks the execution had to read (not yet in shared buffers: a cold cache)."""
        return self.root.shared_read

    @property
    def temp_buffers(self) -> int:
        return self.root.temp_blocks

    @property
    def total_buffers(self) -> int:
        return self.shared_buffers + self.temp_buffers


def _spill(d: Mapping[str, Any]) -> str | None:
    """What went to disk in the node ``d``, or None: an external sort, a multi-batch hash."""
    if ("Sort Method" not in d and "Sort Space Type" not in d and "Hash Batches" not in d
            and "HashAgg Batches" not in d and "Disk Usage" not in d):
        return None  # most nodes: none of the keys that could say so
    method = str(d.get("Sort Method", ""))
    if "external" in method or d.get("Sort Space Type") == "Disk":
        return f"sort spilled to disk ({method or 'external'})"
    if int(d.get("Hash Batches", 1) or 1) > 1:
        return f"hash spilled to disk ({d.get('Hash Batches')} batches)"
    if int(d.get("HashAgg Batches", 1) or 1) > 1 or int(d.get("Disk Usage", 0) or 0) > 0:
        return f"hash aggregate spilled to disk ({d.get('Disk Usage', '?')} kB)"
    return None


def _name(v: Any) -> Any:
    """A name that recurs across nodes and plans (node types, relations, aliases) kept once."""
    return sys.intern(v) if type(v) is str else v


def _same(v: Any) -> Any:
    return v


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _q_error(plan_rows: float, actual_rows: float | None, loops: float | None) -> float | None:
    if actual_rows is None or not loops:
        return None
    est, act = max(plan_rows, 1.0), max(actual_rows, 1.0)
    return max(est / act, act / est)


def _node(d: Mapping[str, Any], source: _Source, counter: list[int]) -> PlanNode:
    name = _name if source.given is None else _same  # interned only in plans that are kept
    if not isinstance(d, (dict, Mapping)) or "Node Type" not in d:
        raise PlanFormatError("a plan node without 'Node Type'")
    index = counter[0]
    counter[0] += 1
    relation = d.get("Relation Name")
    if relation and d.get("Schema"):
        relation = f"{d['Schema']}.{relation}"
    children = tuple(_node(c, source, counter) for c in d.get("Plans", ()) or ())
    node_type = name(str(d["Node Type"]))
    plan_rows = float(d.get("Plan Rows", 0) or 0)
    actual_rows = None if d.get("Actual Rows") is None else float(d["Actual Rows"])
    loops = None if d.get("Actual Loops") is None else float(d["Actual Loops"])
    # Positional, in the order of PlanNode's fields: keywords cost three times as much, for
    # every node of every plan read (tests/test_plan.py checks the order).
    return PlanNode(
        node_type, name(relation), name(d.get("Alias")), name(d.get("Index Name")),
        name(d.get("Join Type")), name(d.get("Strategy")), name(d.get("Parent Relationship")),
        d.get("Subplan Name"), bool(d.get("Parallel Aware", False)), plan_rows,
        float(d.get("Total Cost", 0) or 0), actual_rows, loops, children, name(d.get("Partial Mode")),
        _spill(d), float(d.get("Rows Removed by Filter", 0) or 0), _int(d.get("Workers Planned")),
        _int(d.get("Workers Launched")), int(d.get("Shared Hit Blocks", 0) or 0),
        int(d.get("Shared Read Blocks", 0) or 0),
        int(d.get("Temp Read Blocks", 0) or 0) + int(d.get("Temp Written Blocks", 0) or 0),
        _q_error(plan_rows, actual_rows, loops), SCAN_METHODS.get(node_type), source, index)


def parse_plan(explain: Any, compact: bool = True) -> Plan:
    """A Plan from EXPLAIN (FORMAT JSON) output: the JSON text, the list, or its one element.

    The plan keeps nothing of the nodes' objects it is given: what judging reads of them is
    copied into slots, the rest compressed (a node's ``raw`` is decoded from it on demand).
    ``compact=False``: a plan to read once and drop (the report drawing its trees): its nodes'
    ``raw`` are read-only views of the given objects, nothing compressed; do not change them."""
    data = explain
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise PlanFormatError(f"not JSON: {exc.msg}") from exc
    if isinstance(data, list):
        if len(data) != 1:
            raise PlanFormatError(f"expected one plan, got {len(data)}")
        data = data[0]
    if not isinstance(data, Mapping) or "Plan" not in data:
        raise PlanFormatError("no top-level 'Plan' key: is this EXPLAIN (FORMAT JSON) output?")
    tree = data["Plan"]
    if not isinstance(tree, Mapping):
        raise PlanFormatError("a plan node without 'Node Type'")
    return Plan(
        root=_node(tree, _Source(tree, compact), [0]),
        planning_ms=data.get("Planning Time"),
        execution_ms=data.get("Execution Time"),
        triggers=tuple(MappingProxyType(t) for t in data.get("Triggers", ()) or ()),
        jit=MappingProxyType(data["JIT"]) if data.get("JIT") else None,
    )


def _node_json(node: PlanNode) -> dict[str, Any]:
    """The node's EXPLAIN object with its children's, fresh (nothing shared)."""
    if node.source is not None and node.index == 0:
        return node.source.tree()
    out = {k: v for k, v in node.raw.items() if k != "Plans"}
    if node.children:
        out["Plans"] = [_node_json(c) for c in node.children]
    return out


def plan_json(plan: Plan) -> list[dict[str, Any]]:
    """The plan as EXPLAIN (FORMAT JSON) gave it: ``parse_plan(plan_json(p)) == p``."""
    top: dict[str, Any] = {"Plan": _node_json(plan.root)}
    if plan.planning_ms is not None:
        top["Planning Time"] = plan.planning_ms
    if plan.triggers:
        top["Triggers"] = [dict(t) for t in plan.triggers]
    if plan.jit is not None:
        top["JIT"] = dict(plan.jit)
    if plan.execution_ms is not None:
        top["Execution Time"] = plan.execution_ms
    return [top]


def _shape(node: PlanNode) -> tuple[Any, ...]:
    # Tuples: json.dumps writes them as lists, and they are quicker to build.
    return (node.node_type, node.parallel_aware, node.join_type, node.strategy,
            node.relation, node.index_name, node.parent_relationship,
            [_shape(c) for c in node.children] if node.children else ())


def shape_fingerprint(plan: Plan) -> str:
    """A short hash of the plan's shape, independent of costs, rows and timings."""
    return plan.fingerprint


def indexes_used(plan: Plan) -> tuple[str, ...]:
    """Names of the indexes the plan scans, sorted, without duplicates."""
    return tuple(sorted({n.index_name for n in plan.nodes() if n.index_name}))


def reads_by_relation(plan: Plan) -> dict[str, int]:
    """Shared blocks read (not hit) by each relation's scans, e.g. to find a cold table."""
    out: dict[str, int] = {}
    for n in plan.nodes():
        if n.relation and n.scan_method:
            out[n.relation] = out.get(n.relation, 0) + n.shared_read
    return {rel: blocks for rel, blocks in out.items() if blocks}


def relations(plan: Plan) -> tuple[str, ...]:
    """Relations the plan reads, sorted, without duplicates."""
    return tuple(sorted({n.relation for n in plan.nodes() if n.relation}))


def _fmt_rows(v: float | None) -> str:
    if v is None:
        return "?"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"


CONDITION_KEYS = ("Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter", "Filter",
                  "TID Cond", "One-Time Filter")


def redact_expression(expr: str) -> str:
    """Constants in an expression replaced by ``$n`` (PostgreSQL's own normalizer)."""
    try:
        return normalize(f"SELECT {expr}")[len("SELECT "):]
    except Exception:
        return "<redacted>"


# EXPLAIN keys whose strings name what the planner chose, never a value from the query.
STRUCTURAL_KEYS = frozenset({
    "Node Type", "Relation Name", "Schema", "Alias", "Index Name", "Join Type", "Strategy",
    "Partial Mode", "Parent Relationship", "Subplan Name", "Scan Direction", "Sort Method",
    "Sort Space Type", "Operation", "CTE Name", "Function Name", "Command", "Custom Plan Provider",
    "Parallel Aware", "Async Capable", "Inner Unique", "Single Copy",
})


def raw_json(plan: Plan, redact: bool = False) -> dict[str, Any]:
    """The root plan object as PostgreSQL printed it; ``redact``: every expression (conditions,
    keys, outputs) with its constants replaced by ``$n``."""
    def clean(key: str, value: Any) -> Any:
        if key in STRUCTURAL_KEYS:
            return value
        if isinstance(value, str):
            return redact_expression(value)
        if isinstance(value, list):
            return [redact_expression(v) if isinstance(v, str) else v for v in value]
        return value

    def walk(node: PlanNode) -> dict[str, Any]:
        out = {k: clean(k, v) for k, v in node.raw.items() if k != "Plans"}
        if node.children:
            out["Plans"] = [walk(c) for c in node.children]
        return out

    if not redact:
        return _node_json(plan.root)  # decoded afresh: plain lists and dicts, nothing shared
    return json.loads(json.dumps(walk(plan.root)))


def render_text(plan: Plan, redact: bool = False) -> str:
    """Plan as indented text in the spirit of EXPLAIN (ANALYZE, BUFFERS) text output.

    ``redact``: constants in conditions and filters are replaced by ``$n``, so no
    parameter value appears in the text.
    """
    lines: list[str] = []

    def emit(node: PlanNode, depth: int) -> None:
        r = node.raw
        pad = "  " * depth
        head = pad + ("-> " if depth else "") + node.label
        est = f"(cost={r.get('Startup Cost', 0):.2f}..{node.total_cost:.2f} rows={_fmt_rows(node.plan_rows)})"
        act = ""
        if node.actual_rows is not None:
            if r.get("Actual Total Time") is not None:
                act = (f" (actual time={r.get('Actual Startup Time', 0):.3f}..{r['Actual Total Time']:.3f}"
                       f" rows={_fmt_rows(node.actual_rows)} loops={_fmt_rows(node.actual_loops)})")
            else:
                act = f" (actual rows={_fmt_rows(node.actual_rows)} loops={_fmt_rows(node.actual_loops)})"
        if node.subplan_name:
            lines.append(f"{pad}{node.subplan_name}")
        lines.append(f"{head}  {est}{act}")
        detail_pad = pad + ("   " if depth else "") + "  "
        for key in (*CONDITION_KEYS, "Sort Key", "Group Key"):
            if r.get(key):
                val = r[key] if isinstance(r[key], str) else ", ".join(map(str, r[key]))
                if redact:
                    val = redact_expression(val)
                lines.append(f"{detail_pad}{key}: {val}")
        if r.get("Rows Removed by Filter"):
            lines.append(f"{detail_pad}Rows Removed by Filter: {_fmt_rows(r['Rows Removed by Filter'])}")
        if r.get("Subplans Removed"):
            lines.append(f"{detail_pad}Subplans Removed: {r['Subplans Removed']}")
        if r.get("Sort Method"):
            lines.append(f"{detail_pad}Sort Method: {r['Sort Method']}  "
                         f"{r.get('Sort Space Type', '')}: {r.get('Sort Space Used', '?')}kB")
        bufs = [f"{k.split()[1].lower()}={r[k]}" for k in ("Shared Hit Blocks", "Shared Read Blocks",
                "Shared Dirtied Blocks", "Shared Written Blocks") if r.get(k)]
        temp = [f"{k.split()[1].lower()}={r[k]}" for k in ("Temp Read Blocks", "Temp Written Blocks")
                if r.get(k)]
        if bufs or temp:
            text = "Buffers:" + (" shared " + " ".join(bufs) if bufs else "")
            text += (", temp " if bufs and temp else " temp " if temp else "") + " ".join(temp)
            lines.append(f"{detail_pad}{text}")
        for child in node.children:
            emit(child, depth + 1)

    emit(plan.root, 0)
    if plan.planning_ms is not None:
        lines.append(f"Planning Time: {plan.planning_ms:.3f} ms")
    for t in plan.triggers:
        lines.append(f"Trigger {t.get('Trigger Name')}: time={t.get('Time', 0):.3f} calls={t.get('Calls')}")
    if plan.jit:
        timing = plan.jit.get("Timing", {})
        total = timing.get("Total") if isinstance(timing, Mapping) else None
        lines.append(f"JIT: {plan.jit.get('Functions', '?')} functions"
                     + (f", {total:.3f} ms" if isinstance(total, (int, float)) else ""))
    if plan.execution_ms is not None:
        lines.append(f"Execution Time: {plan.execution_ms:.3f} ms")
    return "\n".join(lines)
