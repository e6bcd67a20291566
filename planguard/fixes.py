"""The fix script: every blocker's remediation as one script, in a safe order (pure).

The order is the one a DBA follows on NEW before the switch:

1. ``analyze``: statistics (targets and extended statistics first, then ``ANALYZE``, largest
   table first, each with an estimate of what it reads);
2. ``sequences``: ``setval``;
3. ``settings``: ``ALTER SYSTEM`` / ``ALTER DATABASE`` / ``ALTER ROLE`` / table options, one
   ``pg_reload_conf()`` at the end;
4. ``indexes``: created, dropped and rebuilt ``CONCURRENTLY`` (never blocking writes);
5. ``other``: the rest (extensions, collations, constraints).

The same statement asked for by several findings is one step that says which blockers it
clears (``clears``) and which other findings it also answers (``also``).  A statement that a
remediation makes conditional (``-- if NEW still prefers it:``) or that holds a placeholder
(``<app_role>``) is written commented out, with its condition: a script that is run as it is
must never drop an index on a guess.  Only blockers' remediations make steps.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pglast.parser import scan

from planguard.findings import Finding, human_size

PHASES = ("analyze", "sequences", "settings", "indexes", "other")
PHASE_TITLES = {  # numbered in the script as they come: 1, 2, ... of the phases it has
    "analyze": "Statistics (ANALYZE takes a SHARE UPDATE EXCLUSIVE lock: reads and writes go on)",
    "sequences": "Sequences",
    "settings": "Settings",
    "indexes": "Indexes, CONCURRENTLY (no lock that blocks writes; not inside a transaction)",
    "other": "Other",
}
# ANALYZE reads a sample of 300 x default_statistics_target rows, from as many pages at most.
SAMPLE_ROWS_PER_TARGET = 300
DEFAULT_STATISTICS_TARGET = 100
PAGE_READ_MS = 0.1  # a random 8 kB read from SSD, uncached: a rough, pessimistic figure
CONDITIONAL = re.compile(r"\b(if|review|otherwise|only|or,|unless|keep it|after)\b", re.IGNORECASE)
PLACEHOLDER = re.compile(r"<[a-z_]+>")


@dataclass
class Step:
    phase: str
    sql: str  # one statement ending in ';' (commented out when not runnable as it is)
    note: str | None = None
    clears: list[str] = field(default_factory=list)  # finding ids of the blockers it answers
    also: list[str] = field(default_factory=list)  # other findings it answers
    runnable: bool = True
    rank: tuple[int, float] = (0, 0.0)  # order within its phase
    verified: str | None = None  # the outcome of trying it on NEW (--verify-fixes), None: not tried


@dataclass(frozen=True)
class Statement:
    """One statement of a remediation, with the comments that lead it and follow it."""

    sql: str
    lead: str  # comment lines before it (its condition, if any)
    trailing: str  # the comment on its own line


def statements_of(remediation: str) -> list[Statement]:
    """The statements of a remediation text, by PostgreSQL's own scanner: ``;`` inside a
    string or a comment does not split, and each comment stays with its statement."""
    out: list[Statement] = []
    lead: list[str] = []
    start: int | None = None
    last_end = -1
    for tok in scan(remediation):
        text = remediation[tok.start:tok.end + 1]
        if tok.name in ("SQL_COMMENT", "C_COMMENT"):
            inline = out and start is None and "\n" not in remediation[last_end + 1:tok.start]
            if inline and not out[-1].trailing:
                out[-1] = Statement(out[-1].sql, out[-1].lead, text.lstrip("- ").strip())
            else:
                lead.append(text.lstrip("- ").strip())
            continue
        if start is None:
            start = tok.start
        if text == ";":
            out.append(Statement(remediation[start:tok.end + 1].strip(), " ".join(lead), ""))
            lead, start = [], None
        last_end = tok.end
    if start is not None:
        out.append(Statement(remediation[start:].strip().rstrip(";") + ";", " ".join(lead), ""))
    return out


def _words(sql: str) -> list[str]:
    return sql.upper().replace("(", " ( ").split()


def phase_of(sql: str) -> str:
    w = _words(sql)
    if not w:
        return "other"
    head = " ".join(w[:3])
    if w[0] in ("ANALYZE", "VACUUM") or "SET STATISTICS" in " ".join(w) \
            or head.startswith("CREATE STATISTICS"):
        return "analyze"
    if "SETVAL" in sql.upper().replace(" ", "")[:40] or head.startswith("ALTER SEQUENCE"):
        return "sequences"
    if (w[0] == "ALTER" and w[1] in ("SYSTEM", "DATABASE", "ROLE", "USER")) \
            or "PG_RELOAD_CONF" in sql.upper():
        return "settings"
    if w[0] == "ALTER" and w[1] == "TABLE" and ("SET" in w or "RESET" in w) and "(" in w \
            and "CONSTRAINT" not in w and "TYPE" not in w:
        return "settings"
    if head.startswith(("CREATE INDEX", "CREATE UNIQUE INDEX", "DROP INDEX", "REINDEX")) \
            or (w[0] == "ALTER" and w[1] == "INDEX"):
        return "indexes"
    return "other"


def concurrently(sql: str) -> str:
    """Index DDL that does not block writes, where PostgreSQL allows it."""
    w = _words(sql)
    if "CONCURRENTLY" in w or " ON ONLY " in f" {' '.join(w)} ":
        return sql
    for pattern in (r"^(CREATE\s+(?:UNIQUE\s+)?INDEX)\s+", r"^(DROP\s+INDEX)\s+",
                    r"^(REINDEX\s+(?:INDEX|TABLE))\s+"):
        if re.match(pattern, sql, re.IGNORECASE):
            return re.sub(pattern, r"\1 CONCURRENTLY ", sql, count=1, flags=re.IGNORECASE)
    return sql


def _analyze_rank(sql: str, tables: Mapping[str, tuple[int, float]]) -> tuple[tuple[int, float], str | None]:
    """Set-up statements first, then ANALYZE of the largest table first, with what it reads."""
    w = _words(sql)
    if w[0] not in ("ANALYZE", "VACUUM"):
        return (0, 0.0), None
    name = sql.rstrip(";").split()[-1]
    pages, _rows = tables.get(name, tables.get(name.replace('"', ""), (0, 0.0)))
    if not pages:
        return (1, 0.0), None
    sample = min(pages, SAMPLE_ROWS_PER_TARGET * DEFAULT_STATISTICS_TARGET)
    secs = max(sample * PAGE_READ_MS / 1000, 0.1)
    return (1, -pages), (f"{name}: {human_size(pages * 8192)}; ANALYZE samples {sample:,} of its "
                         f"{pages:,} pages: about {secs:,.1f} s or less")


def fix_script(findings: Sequence[Finding], ids: Sequence[str],
               tables: Mapping[str, tuple[int, float]] | None = None) -> list[Step]:
    """The steps answering the blockers among ``findings`` (ids: their anchors), in order.

    ``tables``: NEW's tables, name -> (pages, rows), for the order of ANALYZE and its estimate."""
    tables = tables or {}
    steps: dict[str, Step] = {}
    for f, fid in zip(findings, ids, strict=True):
        for st in statements_of(f.remediation):
            sql = concurrently(st.sql)
            key = " ".join(sql.split()).rstrip(";").lower()
            step = steps.get(key)
            if step is None:
                if f.severity != "blocker":
                    continue  # only a blocker's remediation makes a step; others are listed on it
                conditional = bool(st.lead and CONDITIONAL.search(st.lead))
                placeholder = bool(PLACEHOLDER.search(sql))
                note = "; ".join(x.rstrip(":") for x in (st.lead, st.trailing) if x) or None
                if placeholder:
                    note = "edit the placeholder, then run it" + (f": {note}" if note else "")
                phase = phase_of(sql)
                rank, estimate = _analyze_rank(sql, tables) if phase == "analyze" else ((0, 0.0), None)
                if "PG_RELOAD_CONF" in sql.upper():
                    rank = (9, 0.0)  # once, after every setting
                if estimate:
                    note = f"{estimate}; {note}" if note else estimate
                step = steps[key] = Step(phase, sql, note, runnable=not (conditional or placeholder),
                                         rank=rank)
            target = step.clears if f.severity == "blocker" else step.also
            if fid not in target:
                target.append(fid)
    order = {p: i for i, p in enumerate(PHASES)}
    return sorted(steps.values(), key=lambda s: (order[s.phase], s.rank))


def script_text(steps: Sequence[Step]) -> str:
    """The whole script, commented, in order: what a reviewer copies and runs with psql on NEW."""
    if not steps:
        return ""
    lines = ["-- planguard: fix before cutover, on NEW, in this order (psql -v ON_ERROR_STOP=1 -f ...).",
             "-- Steps written commented out need a decision or an edit first."]
    phase = None
    number = 0
    for s in steps:
        if s.phase != phase:
            phase = s.phase
            number += 1
            lines += ["", f"-- {number}. {PHASE_TITLES[phase]}"]
        if s.note:
            lines.append(f"-- {s.note}")
        if s.clears:
            lines.append(f"-- clears: {', '.join(s.clears)}")
        if s.verified:
            lines.append(f"-- verified on NEW (rolled back): {s.verified.replace('_', ' ')}")
        lines.append(s.sql if s.runnable else "-- " + s.sql.replace("\n", "\n-- "))
    return "\n".join(lines) + "\n"


# Verified steps first within their phase, the best outcome first.
VERIFIED_RANK = {"restores_old_plan": 0, "improves": 1, "no_effect": 2}


def mark_verified(fix: Mapping[str, Any], findings: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON fix script with each step's ``verified`` outcome: the best outcome of the
    blockers it clears whose tried fix included it; verified steps first within each phase."""
    by_id = {f["id"]: f for f in findings}

    def key(sql: str) -> str:
        return " ".join(sql.split()).rstrip(";").lower()

    steps = []
    for st in fix["steps"]:
        outcomes = []
        for fid in st["clears"]:
            v = (by_id.get(fid) or {}).get("verification")
            tried = {key(x) for x in v["trial"].splitlines()} if v else set()
            if v and v["outcome"] in VERIFIED_RANK and key(st["sql"]) in tried:
                outcomes.append(v["outcome"])
        best = min(outcomes, key=VERIFIED_RANK.__getitem__, default=None)
        steps.append(Step(st["phase"], st["sql"], st["note"], list(st["clears"]), list(st["also"]),
                          st["runnable"], verified=best))
    order = {p: i for i, p in enumerate(PHASES)}
    ordered = sorted(enumerate(steps), key=lambda x: (order[x[1].phase],
                                                      VERIFIED_RANK.get(x[1].verified or "", 9), x[0]))
    return steps_json([s for _, s in ordered])


def steps_json(steps: Sequence[Step]) -> dict[str, Any]:
    """The fix script as the JSON contract has it."""
    return {"steps": [{"phase": s.phase, "sql": s.sql, "note": s.note, "runnable": s.runnable,
                       "clears": s.clears, "also": s.also, "verified": s.verified} for s in steps],
            "sql": script_text(steps)}
