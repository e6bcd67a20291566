"""What ``--verify-fixes`` tries on NEW, and what the tries say (pure: no database).

From a comparison's JSON result, ``plan`` makes one ``Trial`` per blocker with a fix: the
actions to take inside a transaction that is rolled back (``ANALYZE``, ``SET LOCAL``, an index
hidden, dropped or built, a sequence's fixed state checked) and the statements to measure
again. ``attribution_trial`` makes the trial that tells statistics from planner changes (OLD's
statistics copied onto NEW). ``outcome`` turns the measurements into the verdict on a fix:

- ``restores_old_plan``: every statement is back on OLD's plan and no longer regressed;
- ``improves``: faster, but still regressed or on another plan;
- ``no_effect``;
- ``not_tried``, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from planguard.calls import worse
from planguard.config import Thresholds
from planguard.plantree import nodes_of, plan_pair
from planguard.timing import CLASS_NAMES, NoiseFloor

OUTCOMES = ("restores_old_plan", "improves", "no_effect", "not_tried")
ATTRIBUTIONS = ("statistics", "planner", "unknown")
IMPROVES_BY = 1.5  # "faster": the median at least this many times lower
STATS_KINDS = ("never_analyzed", "stale_stats", "estimate_error")
STATEMENT_KINDS = ("plan_regression", "generic_plan_regression", "slower_same_plan")
NO_TRIAL = {
    "incomplete_coverage": "coverage is not a fix to try: give the statements values",
    "run_stopped": "the run stopped: complete it with --resume first",
    "query_error": "the statement fails on NEW: fix the statement or the object it needs",
    "result_mismatch": "different results are about the data, not a fix to try",
    "check_incomplete": "the check could not run: nothing to try",
}


@dataclass(frozen=True)
class Action:
    """One thing done inside the trial's transaction."""

    kind: str  # analyze | set | hide_index | drop_index | hypo_index | create_index | sequence | old_stats
    target: str  # the table, setting, index, sequence; for create/hypo: the CREATE INDEX statement
    value: str | None = None  # a setting's value

    @property
    def sql(self) -> str:
        return {
            "analyze": f"ANALYZE {self.target};",
            "set": f"SET LOCAL {self.target} = {_literal(self.value or '')};",
            "hide_index": f"SELECT hypopg_hide_index('{self.target}'::regclass);",
            "drop_index": f"DROP INDEX {self.target};",
            "hypo_index": f"SELECT * FROM hypopg_create_index({_literal(self.target)});",
            "create_index": self.target,
            "sequence": f"-- an INSERT into the table behind {self.target} with an id above its maximum",
            "old_stats": f"-- OLD's statistics for {self.target}, copied (pg_restore_relation_stats, "
                         "pg_restore_attribute_stats)",
        }[self.kind]

    @property
    def needs_lock(self) -> bool:
        return self.kind in ("drop_index", "create_index")


@dataclass(frozen=True)
class Target:
    """A statement to measure again: its result entry and the parameter set that decided it."""

    fingerprint: str
    database: str | None
    query: str
    label: str
    values: tuple[str | None, ...]
    old_ms: float | None
    old_plan: str | None  # OLD's plan fingerprint (custom plan)
    before_ms: float | None  # NEW's, as compare measured it (the plan the blocker is about)
    generic: bool  # the blocker is about the plan cache's generic plan
    old_buffers: int | None = None  # OLD's shared + temp buffers per run (median)


@dataclass
class Trial:
    finding: str  # the finding's id
    actions: list[Action]
    targets: list[Target]
    not_tried: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sql(self) -> str:
        return "\n".join(a.sql for a in self.actions)


def _literal(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _target(s: Mapping[str, Any], generic: bool = False) -> Target | None:
    label = s.get("decisive_param_set")
    ps = next((p for p in s.get("param_sets", ()) if p["label"] == label), None)
    if ps is None:
        return None
    new = (ps.get("generic") or {}).get("new") if generic else ps["new"]
    old = ps["old"]
    buffers = None if old.get("shared_buffers") is None else \
        int(old["shared_buffers"]) + int(old.get("temp_buffers") or 0)
    return Target(s["fingerprint"], s.get("database"), s["query"], ps["label"], tuple(ps["values"]),
                  old.get("median_ms"), old.get("plan_fingerprint"), (new or {}).get("median_ms"), generic,
                  buffers)


def _setting_values(findings: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """OLD's value of every planner setting that differs, from the setting_diff remediations."""
    out = {}
    for f in findings:
        if f["kind"] != "setting_diff":
            continue
        m = re.search(r"ALTER SYSTEM SET (\w+) = '((?:[^']|'')*)';", f["remediation"])
        if m:
            out[m.group(1)] = m.group(2).replace("''", "'")
    return out


def _cause_actions(causes: Sequence[Mapping[str, Any]], settings: Mapping[str, str], hypopg: str | None,
                   allow_locks: bool, notes: list[str]) -> list[Action]:
    acts: list[Action] = []
    for c in causes:
        subject = (c.get("subject") or {}).get("name")
        kind = c["kind"]
        if kind in STATS_KINDS and subject:
            acts.append(Action("analyze", subject))
        elif kind == "planner_setting":
            named = [n for n in settings if n in c["detail"]]
            acts += [Action("set", n, settings[n]) for n in named]
            if not named:
                notes.append("the differing planner settings are not named in the findings")
        elif kind == "plan_cache_flip":
            acts.append(Action("set", "plan_cache_mode", "force_custom_plan"))
        elif kind in ("harmful_index", "extra_index") and subject:
            acts += _hide(subject, hypopg, allow_locks, notes)
        elif kind == "missing_index":
            create = re.search(r"CREATE (UNIQUE )?INDEX[^;]*;", c.get("fix", ""))
            if create:
                acts += _build(create.group(0), hypopg, allow_locks, notes)
    return list(dict.fromkeys(acts))


def _hide(index: str, hypopg: str | None, allow_locks: bool, notes: list[str]) -> list[Action]:
    if hypopg and _version(hypopg) >= (1, 4):
        return [Action("hide_index", index)]
    if allow_locks:
        return [Action("drop_index", index)]
    have = f"HypoPG {hypopg}" if hypopg else "not installed"
    notes.append(f"hiding {index} needs HypoPG 1.4+ on NEW ({have}); --allow-locks drops it in the "
                 "rolled-back transaction instead (ACCESS EXCLUSIVE lock on its table while the statements "
                 "are measured)")
    return []


def _build(create: str, hypopg: str | None, allow_locks: bool, notes: list[str]) -> list[Action]:
    plain = re.sub(r"\s+CONCURRENTLY\b", "", create, flags=re.IGNORECASE)
    if hypopg:
        return [Action("hypo_index", plain)]
    if allow_locks:
        return [Action("create_index", plain)]
    notes.append("a missing index is tried as a hypothetical index (HypoPG, not installed on NEW) or, "
                 "with --allow-locks, built in the rolled-back transaction (SHARE lock: writes wait while "
                 "it builds)")
    return []


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:2]) or (0,)


def setting_names(result: Mapping[str, Any]) -> list[str]:
    """The settings that differ between OLD and NEW (setting_diff findings)."""
    return sorted({(f.get("subject") or {}).get("name") or f["object"] for f in result["findings"]
                   if f["kind"] == "setting_diff"})


def plan(result: Mapping[str, Any], *, hypopg: str | None = None, allow_locks: bool = False,
         old_settings: Mapping[str, str] | None = None) -> list[Trial]:
    """One trial per blocker, from a comparison's JSON result.  ``old_settings``: OLD's
    effective values of the differing settings, read on OLD (else taken from the remediations,
    which a RESET does not carry)."""
    findings = result["findings"]
    by_id = {s["fingerprint"][:8]: s for s in result["statements"]}
    settings = {**_setting_values(findings), **(old_settings or {})}
    trials: list[Trial] = []
    for f in findings:
        if f["severity"] != "blocker":
            continue
        notes: list[str] = []
        subject = f.get("subject") or {}
        targets: list[Target] = []
        actions: list[Action] = []
        if subject.get("type") == "statement":
            s = by_id.get(subject.get("name", ""))
            if s is not None and f["kind"] in STATEMENT_KINDS:
                t = _target(s, generic=f["kind"] == "generic_plan_regression")
                targets = [t] if t else []
                # Statistics missing on NEW for a table the statement reads come first: a plan
                # cache's choice or an index's appeal is judged on fresh statistics.
                stale = [Action("analyze", g["subject"]["name"]) for g in findings
                         if g["kind"] in ("never_analyzed", "stale_stats") and g["severity"] == "blocker"
                         and (g.get("subject") or {}).get("name") in s.get("tables", ())]
                actions = list(dict.fromkeys(
                    stale + _cause_actions(f.get("causes", ()), settings, hypopg, allow_locks, notes)))
        elif f["kind"] in ("never_analyzed", "stale_stats"):
            actions = [Action("analyze", subject.get("name") or f["object"])]
            targets = _citing(result, subject, f["object"])
        elif f["kind"] == "sequence_behind":
            actions = [Action("sequence", subject.get("name") or f["object"])]
        elif f["kind"] in ("missing_index", "extra_index", "harmful_index"):
            fake = [{"kind": f["kind"], "subject": subject, "fix": f["remediation"]}]
            actions = _cause_actions(fake, settings, hypopg, allow_locks, notes)
            targets = _citing(result, subject, f["object"])
        elif f["kind"] == "setting_diff" and subject.get("name") in settings:
            actions = [Action("set", subject["name"], settings[subject["name"]])]
            targets = _citing(result, subject, f["object"])
        if s_reason := NO_TRIAL.get(f["kind"]):
            trials.append(Trial(f["id"], [], [], s_reason))
            continue
        why = None
        if any(v == "<redacted>" for t in targets for v in t.values):
            why = "the result is redacted: its parameter values are not in it"
        elif not actions:
            why = "; ".join(notes) or f"no fix planguard can try for {f['kind']}"
        elif not targets and actions[0].kind != "sequence":
            why = "no regressed statement of the workload depends on it: nothing to measure"
        if why is not None:
            actions, targets = [], []
        trials.append(Trial(f["id"], actions, targets, why, notes))
    return trials


def _citing(result: Mapping[str, Any], subject: Mapping[str, Any], obj: str) -> list[Target]:
    """The regressed statements whose findings name this subject among their causes."""
    name = subject.get("name") or obj
    out: list[Target] = []
    seen = set()
    by_id = {s["fingerprint"][:8]: s for s in result["statements"]}
    for f in result["findings"]:
        if f["kind"] not in STATEMENT_KINDS:
            continue
        if not any((c.get("subject") or {}).get("name") == name for c in f.get("causes", ())):
            continue
        s = by_id.get((f.get("subject") or {}).get("name", ""))
        generic = f["kind"] == "generic_plan_regression"
        if s is not None and (s["fingerprint"], generic) not in seen:
            seen.add((s["fingerprint"], generic))
            if t := _target(s, generic):
                out.append(t)
    return out


def attribution_targets(result: Mapping[str, Any]) -> list[Target]:
    """Every regressed statement (custom plan): the ones whose cause is asked for."""
    return [t for s in result["statements"] if s["status"] == "regressed" and (t := _target(s))]


# -- what the measurements say ------------------------------------------------------------


@dataclass(frozen=True)
class Remeasured:
    target: Target
    after_ms: float | None
    after_plan: str | None
    error: str | None = None
    planned_only: bool = False  # a hypothetical index: planned, never executed (no time)
    after_buffers: int | None = None  # shared + temp buffers per run (median)

    @property
    def restored(self) -> bool:
        return self.after_plan is not None and self.after_plan == self.target.old_plan


def noise_of_result(result: Mapping[str, Any]) -> NoiseFloor | None:
    """The comparison's noise floor, as its JSON result records it."""
    n = result.get("noise")
    if not n:
        return None
    by_name = {c["class"]: c for c in n["classes"]}
    return NoiseFloor(tuple(by_name.get(name, {}).get("factor") for name in CLASS_NAMES),
                      tuple(int(by_name.get(name, {}).get("ratios") or 0) for name in CLASS_NAMES),
                      float(n["quantile"]))


def still_regressed(m: Remeasured, thresholds: Mapping[str, Any], noise: NoiseFloor | None = None) -> bool:
    """Would the judge still call the statement regressed, measured again inside the trial?

    As ``planguard.calls.classify`` does, against OLD's median: slower beyond ``time_ratio``,
    the comparison's noise floor (the trial's runs are taken apart from OLD's, on a machine that
    may be busier now) and ``min_time_delta_ms``, *and* other work: another plan, or OLD's plan
    with ``buffers_ratio`` times and ``min_buffers_delta`` more buffers.  OLD's plan back with
    OLD's work and a slower clock is what the judge calls ``slower_same_plan``, not the
    regression the fix is for.  A planned-only trial (a hypothetical index) is judged by its plan."""
    if m.planned_only:
        return False
    old_ms, after_ms = m.target.old_ms, m.after_ms
    if old_ms is None or after_ms is None:
        return after_ms is None
    bar = max(float(thresholds["time_ratio"]), noise.factor(old_ms) if noise else 1.0)
    if not worse(after_ms, old_ms, bar, float(thresholds["min_time_delta_ms"])):
        return False
    if not m.restored or m.target.old_buffers is None or m.after_buffers is None:
        return True
    return worse(m.after_buffers, m.target.old_buffers,
                 float(thresholds.get("buffers_ratio", Thresholds.buffers_ratio)),
                 float(thresholds.get("min_buffers_delta", Thresholds.min_buffers_delta)))


def outcome(measured: Sequence[Remeasured], thresholds: Mapping[str, Any], noise: NoiseFloor | None = None,
            ) -> str:
    """The verdict on a fix from its statements measured again."""
    if not measured or all(m.error for m in measured):
        return "no_effect"
    restored = [m.restored and not still_regressed(m, thresholds, noise) for m in measured]
    if all(restored):
        return "restores_old_plan"
    faster = [m.after_ms is not None and m.target.before_ms is not None
              and m.after_ms * IMPROVES_BY <= m.target.before_ms for m in measured]
    return "improves" if any(faster) or any(m.restored for m in measured) else "no_effect"


def statements_json(measured: Sequence[Remeasured], thresholds: Mapping[str, Any],
                    noise: NoiseFloor | None = None) -> list[dict[str, Any]]:
    return [{"fingerprint": m.target.fingerprint, "param_set": m.target.label,
             "old_ms": m.target.old_ms, "before_ms": m.target.before_ms,
             "after_ms": None if m.after_ms is None else round(m.after_ms, 3),
             "plan_restored": m.restored,
             "still_regressed": still_regressed(m, thresholds, noise)}
            for m in measured]


def summary(trial: Trial, result: str, measured: Sequence[Remeasured]) -> str:
    """One line: "ANALYZE public.t restores OLD's plan for 2 of 2 regressed statements; the worst
    goes from 15.8 to 0.06 ms"."""
    if result == "not_tried":
        return f"not tried: {trial.not_tried}"
    what = " + ".join(a.sql.rstrip(";") for a in trial.actions)
    if trial.actions and trial.actions[0].kind == "sequence":
        return f"{what}: {trial.notes[-1] if trial.notes else 'checked'}"
    ok = sum(1 for m in measured if m.restored)
    worst = max(measured, key=lambda m: m.target.before_ms or 0.0, default=None)
    span = ""
    if worst is not None and worst.target.before_ms is not None and worst.after_ms is not None:
        span = f"; the worst goes from {_ms(worst.target.before_ms)} to {_ms(worst.after_ms)} ms"
    verb = {"restores_old_plan": "restores OLD's plan for", "improves": "improves, OLD's plan back for",
            "no_effect": "has no effect: OLD's plan back for"}[result]
    n = len(measured)
    hypothetical = any(m.planned_only for m in measured)
    planned = " (planned only: a hypothetical index is never executed)" if hypothetical else ""
    return f"{what} {verb} {ok} of {n} regressed statement{'s' if n != 1 else ''}{span}{planned}"


def _ms(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}"


def side_effects(actions: Sequence[Action], server_version_num: int) -> list[str]:
    """What a trial leaves behind although its transaction is rolled back: said before it runs."""
    out = []
    for a in actions:
        if a.kind == "analyze":
            back = ("put back afterwards with pg_restore_relation_stats" if server_version_num >= 180000
                    else "they stay: PostgreSQL < 18 cannot put them back")
            out.append(f"ANALYZE {a.target} in a rolled-back transaction still updates pg_class.reltuples, "
                       f"relpages and relallvisible of {a.target} in place ({back}), sets "
                       f"pg_stat_user_tables.last_analyze and resets n_mod_since_analyze: autovacuum then "
                       f"waits for new changes before it analyzes {a.target}, so run the fix for real before "
                       "the cutover")
        elif a.kind == "drop_index":
            out.append(f"DROP INDEX {a.target} holds an ACCESS EXCLUSIVE lock on its table until the "
                       "rollback (the statements' measurement): reads and writes of the table wait")
        elif a.kind == "create_index":
            out.append(f"{a.target.rstrip(';')} holds a SHARE lock on its table while it builds and "
                       "until the rollback: writes of the table wait")
    return list(dict.fromkeys(out))


# -- NEW's catalog before and after -------------------------------------------------------


Snapshot = Mapping[str, Mapping[str, str]]


def catalog_diff(before: Snapshot, after: Snapshot) -> list[str]:
    """What differs between two catalog snapshots (section -> key -> value)."""
    out = []
    for section in sorted(set(before) | set(after)):
        b, a = before.get(section, {}), after.get(section, {})
        for key in sorted(set(b) | set(a)):
            if b.get(key) != a.get(key):
                out.append(f"{section} {key}: {b.get(key, 'absent')} → {a.get(key, 'absent')}")
    return out


# -- mitigations for a planner change ------------------------------------------------------

# The planner setting that forbids a node NEW chose where OLD chose another.
FORBID = {
    "Seq Scan": ("enable_seqscan", "off"), "Index Scan": ("enable_indexscan", "off"),
    "Index Only Scan": ("enable_indexonlyscan", "off"), "Bitmap Heap Scan": ("enable_bitmapscan", "off"),
    "Hash Join": ("enable_hashjoin", "off"), "Merge Join": ("enable_mergejoin", "off"),
    "Nested Loop": ("enable_nestloop", "off"), "Memoize": ("enable_memoize", "off"),
    "Incremental Sort": ("enable_incremental_sort", "off"), "Material": ("enable_material", "off"),
    "Gather": ("max_parallel_workers_per_gather", "0"),
    "Gather Merge": ("max_parallel_workers_per_gather", "0"),
}
MAX_MITIGATIONS = 4


def mitigations(statement: Mapping[str, Any]) -> list[list[Action]]:
    """Settings that do not touch the data and may bring OLD's plan back for a planner change:
    each one that forbids a node NEW chose in OLD's place (``enable_* = off``, no parallel
    workers), one at a time, then all of them together (``SET LOCAL``: the trial's alone)."""
    label = statement.get("decisive_param_set")
    ps = next((p for p in statement.get("param_sets", ()) if p["label"] == label), None)
    if ps is None or not ps["old"].get("plan_json") or not ps["new"].get("plan_json"):
        return []
    pair = plan_pair(ps["old"]["plan_json"], ps["new"]["plan_json"])
    chosen: list[tuple[str, str]] = []
    for n in nodes_of(pair["new"], ps["new"]["plan_json"]) if pair["new"] else []:
        if set(n["changed"]) & {"scan method", "join method", "only on this side"} and n["type"] in FORBID:
            chosen.append(FORBID[n["type"]])
    chosen = list(dict.fromkeys(chosen))[:MAX_MITIGATIONS]
    out = [[Action("set", name, value)] for name, value in chosen]
    if len(chosen) > 1:
        out.append([Action("set", name, value) for name, value in chosen])
    return out
