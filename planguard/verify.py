"""Verified fixes: try each blocker's fix on NEW, in a transaction that is rolled back, and
measure the statements it should cure (I/O; the decisions are ``planguard.trials``).

Nothing is ever tried on OLD: OLD is only read, for its statistics (attribution on NEW >= 18).
On NEW every trial is ``BEGIN``, the fix (``ANALYZE``, ``SET LOCAL``, an index hidden with
HypoPG, or, with ``--allow-locks``, dropped or built), each statement measured the way
compare measures it (each run inside a savepoint that is rolled back), then ``ROLLBACK``.
What a rollback cannot take back is said before it is done (``trials.side_effects``) and put
back where PostgreSQL allows it (``pg_class`` row counts on 18, with
``pg_restore_relation_stats``); a snapshot of NEW's catalog before and after the run shows that
nothing else changed.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from planguard.db import MARK, MarkedRawCursor, SessionLimits, connect, server_version_num, with_dbname
from planguard.explain import EXPLAIN, failure, reason
from planguard.fixes import mark_verified
from planguard.plan import Plan, parse_plan, shape_fingerprint
from planguard.safety import one_statement
from planguard.timing import NoiseFloor
from planguard.trials import (
    Action,
    Remeasured,
    Target,
    Trial,
    attribution_targets,
    catalog_diff,
    mitigations,
    noise_of_result,
    outcome,
    plan,
    setting_names,
    side_effects,
    statements_json,
    summary,
)

TRIAL_LOCK_TIMEOUT_MS = 200  # what a trial waits for a lock it needs (--allow-locks)
Progress = Callable[[str], None]
_names = itertools.count(1)  # prepared statements of the trials


class _Failed(Exception):
    pass


def _savepoint_row(conn: psycopg.Connection, statement: str | sql.Composed,
                   values: tuple[str | None, ...] | None) -> tuple[Any, ...]:
    """One row of ``statement``, run inside a savepoint that is rolled back: the trial's fix
    stays, whatever the statement wrote goes."""
    if isinstance(statement, str) and not one_statement(statement):
        raise _Failed("refused: the text is not exactly one statement")
    conn.execute("SAVEPOINT planguard_trial")
    try:
        with MarkedRawCursor(conn) as cur:
            cur.execute(statement, values or None, prepare=False)
            row = cur.fetchone()
    except psycopg.Error as exc:
        if conn.closed:
            raise failure(conn, exc) from exc
        conn.execute("ROLLBACK TO SAVEPOINT planguard_trial")
        raise _Failed(reason(exc)) from exc
    conn.execute("ROLLBACK TO SAVEPOINT planguard_trial")
    if row is None:
        raise _Failed("the statement returned no row")
    return tuple(row)


def _renamed(plan: Any, names: Mapping[str, str]) -> Any:
    """EXPLAIN JSON with HypoPG's names of hypothetical indexes replaced by the real ones."""
    if isinstance(plan, dict):
        return {k: names.get(v, v) if k == "Index Name" and isinstance(v, str) else _renamed(v, names)
                for k, v in plan.items()}
    if isinstance(plan, list):
        return [_renamed(v, names) for v in plan]
    return plan


def _measure(conn: psycopg.Connection, t: Target, repeat: int, hypothetical: Mapping[str, str] | None = None,
             ) -> Remeasured:
    """The statement measured again inside the trial: its custom plan, or, for a plan-cache
    blocker, the plan NEW's plan cache picks now (generic or custom).  ``hypothetical``: the
    names of HypoPG's indexes (which only a plain EXPLAIN sees) and the indexes they stand for."""
    try:
        if hypothetical is not None:
            text = MARK + "EXPLAIN (VERBOSE, FORMAT JSON) " + t.query
            p = parse_plan(_renamed(_savepoint_row(conn, text, t.values)[0], hypothetical))
            return Remeasured(t, None, shape_fingerprint(p), planned_only=True)
        if t.generic:
            return _measure_prepared(conn, t, repeat)
        runs = []
        for _ in range(repeat + 1):  # the first warms the cache and is not counted
            p = parse_plan(_savepoint_row(conn, MARK + EXPLAIN + t.query, t.values)[0])
            runs.append(p)
    except _Failed as exc:
        return Remeasured(t, None, None, str(exc))
    return _remeasured(t, runs[1:])


def _remeasured(t: Target, runs: Sequence[Plan]) -> Remeasured:
    """The measured runs' median time and buffers, and the last one's plan."""
    ms = statistics.median(float(p.execution_ms or 0) for p in runs)
    return Remeasured(t, ms, shape_fingerprint(runs[-1]),
                      after_buffers=int(statistics.median(p.total_buffers for p in runs)))


def _measure_prepared(conn: psycopg.Connection, t: Target, repeat: int) -> Remeasured:
    name = sql.Identifier(f"planguard_trial_{next(_names)}")
    conn.execute(sql.SQL(MARK + "PREPARE {} AS ").format(name) + sql.SQL(t.query))
    try:
        args = sql.SQL("(") + sql.SQL(", ").join(sql.Literal(v) for v in t.values) + sql.SQL(")") \
            if t.values else sql.SQL("")
        for _ in range(6):  # as a driver that prepares would: then the plan cache has chosen
            _savepoint_row(conn, sql.SQL(MARK + "EXPLAIN (FORMAT JSON) EXECUTE {}").format(name) + args, None)
        runs = [parse_plan(_savepoint_row(conn, sql.SQL(MARK + EXPLAIN + "EXECUTE {}").format(name) + args,
                                          None)[0]) for _ in range(repeat + 1)]
    finally:
        conn.execute(sql.SQL("DEALLOCATE {}").format(name))
    return _remeasured(t, runs[1:])


def _apply(conn: psycopg.Connection, a: Action, old: psycopg.Connection | None) -> str | None:
    """Take one action inside the trial's transaction; what it cost, when that matters."""
    if a.kind == "analyze":
        conn.execute(sql.SQL("ANALYZE ") + sql.SQL(a.target))
    elif a.kind == "set":
        conn.execute("SELECT set_config(%s, %s, true)", (a.target, a.value))
    elif a.kind == "hide_index":
        conn.execute("SELECT hypopg_hide_index(%s::regclass)", (a.target,))
    elif a.kind in ("drop_index", "create_index"):
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{TRIAL_LOCK_TIMEOUT_MS}ms",))
        started = time.monotonic()
        stmt = f"DROP INDEX {a.target}" if a.kind == "drop_index" else a.target
        if not one_statement(stmt):
            raise _Failed("refused: the index statement is not exactly one statement")
        conn.execute(sql.SQL(stmt))
        took = time.monotonic() - started
        return (f"{'dropping' if a.kind == 'drop_index' else 'building'} it took {took:.2f} s; the lock was "
                "held until the rollback")
    elif a.kind == "old_stats":
        if old is None:
            raise _Failed("OLD's statistics need OLD's DSN")
        _copy_stats(old, conn, a.target)
    return None


def _hypothetical(conn: psycopg.Connection, a: Action) -> dict[str, str]:
    """A HypoPG hypothetical index (it lives in the session: reset after the trial); its
    generated name -> the name of the index it stands for."""
    row = conn.execute("SELECT indexname FROM hypopg_create_index(%s)", (a.target,)).fetchone()
    real = re.match(r"CREATE (?:UNIQUE )?INDEX (?:IF NOT EXISTS )?(\S+)", a.target, re.IGNORECASE)
    return {row[0]: real.group(1).split(".")[-1]} if row and real else {}


def _copy_stats(old: psycopg.Connection, new: psycopg.Connection, table: str) -> None:
    """OLD's statistics of ``table`` onto NEW inside the transaction (PostgreSQL 18:
    ``pg_restore_relation_stats`` / ``pg_restore_attribute_stats``, what ``pg_dump
    --statistics-only`` emits)."""
    row = old.execute("SELECT n.nspname, c.relname, c.relpages, c.reltuples, c.relallvisible FROM pg_class c "
                      "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::regclass",
                      (table,)).fetchone()
    if row is None:
        raise _Failed(f"{table} is not on OLD")
    schema, rel, pages, tuples, visible = row
    new.execute("SELECT pg_restore_relation_stats('schemaname', %s::text, 'relname', %s::text, "
                "'relpages', %s::integer, 'reltuples', %s::real, 'relallvisible', %s::integer)",
                (schema, rel, pages, tuples, visible))
    casts = {"null_frac": "real", "avg_width": "integer", "n_distinct": "real", "most_common_vals": "text",
             "most_common_freqs": "real[]", "histogram_bounds": "text", "correlation": "real",
             "most_common_elems": "text", "most_common_elem_freqs": "real[]",
             "elem_count_histogram": "real[]"}
    cols = tuple(casts)
    text = {"most_common_vals", "histogram_bounds", "most_common_elems"}
    stats = old.execute(sql.SQL("SELECT attname, inherited, {} FROM pg_stats WHERE schemaname = %s AND "
                                "tablename = %s").format(sql.SQL(", ").join(
                                    sql.SQL(f"{c}::text" if c in text else c) for c in cols)),
                        (schema, rel)).fetchall()
    for attname, inherited, *values in stats:
        head = sql.SQL("'schemaname', {}::text, 'relname', {}::text, 'attname', {}::text, "
                       "'inherited', {}::boolean")
        args: list[sql.Composable] = [head.format(sql.Literal(schema), sql.Literal(rel), sql.Literal(attname),
                                                  sql.Literal(inherited))]
        for c, v in zip(cols, values, strict=True):
            if v is not None:
                args.append(sql.SQL("{}, {}::" + casts[c]).format(sql.Literal(c), sql.Literal(v)))
        new.execute(sql.SQL("SELECT pg_restore_attribute_stats({})").format(sql.SQL(", ").join(args)))


def _check_sequence(conn: psycopg.Connection, seq: str) -> str:
    """``setval`` is not transactional: check the fixed state instead.  An INSERT into the
    sequence's table with an id above the table's maximum, in a savepoint rolled back."""
    row = conn.execute("SELECT d.refobjid::regclass::text, a.attname FROM pg_depend d JOIN pg_attribute a "
                       "ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid WHERE d.objid = %s::regclass "
                       "AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')", (seq,)).fetchone()
    if row is None:
        return f"{seq} is owned by no column: nothing to insert into"
    table, col = row
    last = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(sql.SQL(seq))).fetchone()
    top = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(col), sql.SQL(table)),
                       ).fetchone()
    maximum = top[0] if top else None
    if maximum is None:
        return f"{table} is empty on NEW: nothing collides"
    insert = sql.SQL("INSERT INTO {t} OVERRIDING SYSTEM VALUE SELECT (jsonb_populate_record(NULL::{t}, "
                     "to_jsonb(x) || jsonb_build_object({c}, {m}::bigint + 1))).* FROM {t} x LIMIT 1 "
                     "RETURNING 1").format(t=sql.SQL(table), c=sql.Literal(col), m=sql.Literal(maximum))
    try:
        _savepoint_row(conn, insert, None)
    except _Failed as exc:
        return (f"an INSERT into {table} with {col} = {maximum} + 1 fails even so ({exc}): look at the other "
                "unique constraints")
    nxt = (last[0] + 1 if last and last[1] else last[0]) if last else "?"
    return (f"{seq} would hand out {nxt}, at or below {table}.{col}'s maximum {maximum}: an INSERT collides; "
            f"with {col} = {maximum} + 1 the INSERT succeeds (rolled back), so after the setval it will. "
            "setval cannot be rolled back, so it is not tried: apply it before the cutover")


@contextmanager
def _transaction(conn: psycopg.Connection, hypopg: bool = False) -> Iterator[None]:
    """A trial: everything rolled back; HypoPG's hypothetical and hidden indexes (kept by the
    session, not the transaction) reset too."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("ROLLBACK")
            if hypopg:
                conn.execute("SELECT hypopg_reset()")
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT hypopg_unhide_all_indexes()")  # HypoPG 1.4+


# -- NEW's catalog ------------------------------------------------------------------------------

SNAPSHOT = {
    "index": "SELECT schemaname || '.' || indexname, indexdef FROM pg_indexes "
             "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    "setting": "SELECT name, setting FROM pg_settings WHERE source NOT IN ('default', 'session', 'client', "
               "'override') UNION ALL SELECT coalesce(d.datname, '*') || '/' || coalesce(r.rolname, '*'), "
               "array_to_string(s.setconfig, ',') FROM pg_db_role_setting s LEFT JOIN pg_database d "
               "ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole",
    "sequence": "SELECT schemaname || '.' || sequencename, coalesce(last_value::text, 'unused') "
                "FROM pg_sequences",
    "pg_statistic rows": "SELECT starelid::regclass::text, count(*)::text FROM pg_statistic s "
                         "JOIN pg_class c ON c.oid = s.starelid WHERE c.relnamespace NOT IN "
                         "('pg_catalog'::regnamespace, 'information_schema'::regnamespace) GROUP BY 1",
    "pg_class": "SELECT c.oid::regclass::text, c.relpages || ' pages, ' || c.reltuples || ' rows, ' || "
                "c.relallvisible || ' all-visible' FROM pg_class c WHERE c.relkind IN ('r', 'p', 'm') AND "
                "c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) "
                "AND c.relpersistence = 'p'",
}


def snapshot(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    return {section: {str(k): str(v) for k, v in conn.execute(q).fetchall()}
            for section, q in SNAPSHOT.items()}


def _counts(conn: psycopg.Connection, tables: set[str]) -> dict[str, tuple[int, float, int]]:
    """relpages, reltuples and relallvisible of ``tables``: what ANALYZE writes in place."""
    out = {}
    for t in sorted(tables):
        row = conn.execute("SELECT relpages, reltuples, relallvisible FROM pg_class WHERE oid = %s::regclass",
                           (t,)).fetchone()
        if row is not None:
            out[t] = (int(row[0]), float(row[1]), int(row[2]))
    return out


def _restore_counts(conn: psycopg.Connection, before: Mapping[str, tuple[int, float, int]]) -> None:
    """Put back the row counts ANALYZE wrote in place (PostgreSQL 18+: pg_restore_relation_stats)."""
    now = _counts(conn, set(before))
    for t, (pages, tuples, visible) in before.items():
        if now.get(t) == (pages, tuples, visible):
            continue
        conn.execute("SELECT pg_restore_relation_stats('schemaname', n.nspname::text, "
                     "'relname', c.relname::text, 'relpages', %s::integer, 'reltuples', %s::real, "
                     "'relallvisible', %s::integer) FROM pg_class c JOIN pg_namespace n "
                     "ON n.oid = c.relnamespace WHERE c.oid = %s::regclass", (pages, tuples, visible, t))


def _old_settings(old: psycopg.Connection | None, names: list[str]) -> dict[str, str]:
    """OLD's effective values of ``names`` in the workload's database (read only)."""
    if old is None or not names:
        return {}
    rows = old.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (names,)).fetchall()
    return {str(n): str(v) for n, v in rows}


# -- the run ------------------------------------------------------------------------------------


def verify(result: Mapping[str, Any], new_dsn: str, old_dsn: str | None = None, *, allow_locks: bool = False,
           repeat: int = 5, limits: SessionLimits | None = None, progress: Progress | None = None,
           ) -> dict[str, Any]:
    """The result with every blocker's fix tried on NEW (``findings[].verification``), every
    regressed statement attributed (``statements[].attribution``), the fix script's steps
    marked, and the run's own record (``verification``)."""
    say = progress or (lambda _m: None)
    out = copy.deepcopy(dict(result))
    thresholds = out["thresholds"]
    noise = noise_of_result(out)
    database = out["new"].get("database") or (out.get("workload") or {}).get("database")
    new_db = with_dbname(new_dsn, database, label="NEW")
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(connect(new_db, label="NEW", limits=limits))
        # OLD is only read: the differing settings' values, and its statistics on NEW >= 18.
        old = stack.enter_context(connect(with_dbname(old_dsn, database, label="OLD"), label="OLD",
                                          limits=limits)) if old_dsn else None
        version = server_version_num(conn)
        hyp = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'hypopg'").fetchone()
        hypopg = hyp[0] if hyp else None
        old_settings = _old_settings(old, setting_names(out))
        trials = plan(out, hypopg=hypopg, allow_locks=allow_locks, old_settings=old_settings)
        regressed = attribution_targets(out)
        attribute = [Action("old_stats" if version >= 180000 and old is not None else "analyze", t)
                     for t in sorted({t for s in out["statements"] for t in s["tables"]
                                      if any(r.fingerprint == s["fingerprint"] for r in regressed)})]
        effects = side_effects([a for tr in trials for a in tr.actions]
                               + [a for a in attribute if a.kind == "analyze"], version)
        for e in effects:
            say(f"before it is done: {e}")
        before = snapshot(conn)
        analyzed = {a.target for tr in trials for a in tr.actions if a.kind == "analyze"} | \
            {a.target for a in attribute if a.kind in ("analyze", "old_stats")}
        counts = _counts(conn, analyzed)
        try:
            by_id = {f["id"]: f for f in out["findings"]}
            for tr in trials:
                by_id[tr.finding]["verification"] = _run(conn, tr, old, repeat, thresholds, noise, version,
                                                         say)
            _attribute(conn, out, regressed, attribute, old, repeat, version)
        finally:
            if version >= 180000:
                _restore_counts(conn, counts)
        after = snapshot(conn)
    diff = catalog_diff(before, after)
    bare = {t.split(".")[-1] for t in analyzed} | analyzed
    documented = [d for d in diff if d.startswith("pg_class ") and d.split(" ")[1].rstrip(":") in bare]
    if version >= 180000 and old_dsn:
        _offer_copy(out)
    out["verification"] = {"allow_locks": allow_locks, "hypopg": hypopg, "trials": len(trials),
                           "side_effects": effects, "catalog_unchanged": not (set(diff) - set(documented)),
                           "catalog_diff": diff}
    if out.get("fix_script"):
        out["fix_script"] = mark_verified(out["fix_script"], out["findings"])
    return out


def _run(conn: psycopg.Connection, tr: Trial, old: psycopg.Connection | None, repeat: int,
         thresholds: Mapping[str, Any], noise: NoiseFloor | None, version: int, say: Progress,
         ) -> dict[str, Any]:
    if tr.not_tried is not None:
        return {"outcome": "not_tried", "trial": "", "reason": tr.not_tried,
                "summary": f"not tried: {tr.not_tried}", "statements": [], "side_effects": [], "lock": None}
    say(f"trying on NEW (rolled back): {tr.sql.splitlines()[0]}")
    lock = None
    measured: list[Remeasured] = []
    try:
        with _transaction(conn, hypopg=any(a.kind in ("hypo_index", "hide_index") for a in tr.actions)):
            if tr.actions[0].kind == "sequence":
                note = _check_sequence(conn, tr.actions[0].target)
                return {"outcome": "not_tried", "trial": tr.sql, "reason": note, "summary": note,
                        "statements": [], "side_effects": [], "lock": None}
            names: dict[str, str] = {}
            for a in tr.actions:
                if a.kind == "hypo_index":
                    names.update(_hypothetical(conn, a))
                else:
                    lock = _apply(conn, a, old) or lock
            hypothetical = names if any(a.kind == "hypo_index" for a in tr.actions) else None
            measured = [_measure(conn, t, repeat, hypothetical) for t in tr.targets]
    except (_Failed, psycopg.Error) as exc:
        why = str(exc) if isinstance(exc, _Failed) else reason(exc)
        return {"outcome": "not_tried", "trial": tr.sql, "reason": f"the trial failed: {why}",
                "summary": f"not tried: the trial failed: {why}", "statements": [], "side_effects": [],
                "lock": lock}
    result = outcome(measured, thresholds, noise)
    errors = [f"{m.target.fingerprint[:8]}: {m.error}" for m in measured if m.error]
    return {"outcome": result, "trial": tr.sql,
            "reason": "; ".join(errors + tr.notes) or None,
            "summary": summary(tr, result, measured),
            "statements": statements_json(measured, thresholds, noise),
            "side_effects": side_effects(tr.actions, version), "lock": lock}


def _offer_copy(out: dict[str, Any]) -> None:
    """On PostgreSQL 18 a statistics fix can also be OLD's statistics copied, much faster than
    ANALYZE on a huge table: said where the attribution showed that they bring OLD's plan back."""
    by_id = {s["fingerprint"][:8]: s for s in out["statements"]}
    for f in out["findings"]:
        v = f.get("verification")
        if f["kind"] not in ("never_analyzed", "stale_stats") or not v or v["outcome"] == "not_tried":
            continue
        table = (f.get("subject") or {}).get("name") or f["object"]
        cited = [by_id.get(st["fingerprint"][:8]) for st in v["statements"]]
        ok = sum(1 for s in cited if s and s.get("attribution") == "statistics")
        if ok:
            v["reason"] = "; ".join(x for x in (v["reason"], (
                f"OLD's statistics copied instead of ANALYZE (much faster on a huge table) bring OLD's plan "
                f"back too for {ok} of {len(cited)}: pg_dump --statistics-only --table={table} OLD | psql NEW"
            )) if x)


def _attribute(conn: psycopg.Connection, out: dict[str, Any], targets: list[Target], actions: list[Action],
               old: psycopg.Connection | None, repeat: int, version: int) -> None:
    """Statistics or planner: does NEW choose OLD's plan when it has OLD's statistics?"""
    for s in out["statements"]:
        s.setdefault("attribution", None)
        s.setdefault("attribution_note", None)
    if not targets:
        return
    how = ("with OLD's statistics copied (pg_restore_relation_stats, pg_restore_attribute_stats)"
           if actions and actions[0].kind == "old_stats" else
           "after ANALYZE on NEW (an approximation of OLD's statistics: PostgreSQL < 18 cannot copy them)")
    by_fp = {s["fingerprint"]: s for s in out["statements"]}
    try:
        with _transaction(conn):
            for a in actions:
                _apply(conn, a, old)
            measured = [_measure(conn, t, repeat) for t in targets]
    except (_Failed, psycopg.Error) as exc:
        why = str(exc) if isinstance(exc, _Failed) else reason(exc)
        for t in targets:
            by_fp[t.fingerprint]["attribution"] = "unknown"
            by_fp[t.fingerprint]["attribution_note"] = f"OLD's statistics could not be tried: {why}"
        return
    for m in measured:
        s = by_fp[m.target.fingerprint]
        if m.error or m.after_plan is None:
            s["attribution"], s["attribution_note"] = "unknown", f"{how}, it fails: {m.error}"
        elif m.after_plan == m.target.old_plan:
            s["attribution"] = "statistics"
            s["attribution_note"] = f"{how}, NEW chooses OLD's plan ({_ms(m.after_ms)} ms): statistics"
        else:
            s["attribution"] = "planner"
            s["attribution_note"] = (f"{how}, NEW still chooses another plan than OLD's "
                                     f"({_ms(m.after_ms)} ms): a planner change between the versions, or "
                                     "settings; " + _mitigate(conn, s, m.target, repeat))


def _mitigate(conn: psycopg.Connection, s: Mapping[str, Any], t: Target, repeat: int) -> str:
    """Try the settings that may bring OLD's plan back without touching the data, each in its
    own rolled-back transaction; what worked."""
    tried = []
    for actions in mitigations(s):
        what = " + ".join(a.sql.rstrip(";") for a in actions)
        tried.append(what)
        try:
            with _transaction(conn):
                for a in actions:
                    _apply(conn, a, None)
                m = _measure(conn, t, repeat)
        except (_Failed, psycopg.Error):
            continue
        if m.restored:
            return (f"mitigation verified: {what} brings OLD's plan back ({_ms(t.before_ms)} → "
                    f"{_ms(m.after_ms)} ms); set it for the application's role, or hint the statement")
    if not tried:
        return "no planner setting to try (no changed scan or join method)"
    return f"tried without OLD's plan back: {'; '.join(tried)}"


def _ms(v: float | None) -> str:
    return "?" if v is None else (f"{v:,.2f}" if v < 10 else f"{v:,.1f}")
