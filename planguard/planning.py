"""A workload statement's plan without executing it (I/O): plain EXPLAIN of its first parameter
set, or its generic plan when it has none.  Capture records OLD's this way, compare plans the
statements it does not execute, and the watch compares NEW's with OLD's."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg

from planguard.explain import needs_rollback, plan_only, plan_with
from planguard.params import analyze, render
from planguard.plan import Plan
from planguard.sampling import type_default
from planguard.workload import Statement


def statement_plan(conn: psycopg.Connection, stmt: Statement, server_version_num: int) -> Plan:
    """A workload statement's plan, never executed: with its first parameter set's values when it
    has one, else the generic plan.  Raises QueryFailed."""
    if stmt.param_sets:
        text, binds = render(stmt.query, stmt.bindings, stmt.param_sets[0].values)
        return plan_with(conn, text, binds, needs_rollback(text))
    # No values: a parameter the grammar takes only as a literal still gets one.
    n = analyze(stmt.query).max_param
    defaults = [type_default(b.param_type or b.type, datetime.now(timezone.utc)) or "1"
                if b.inline else None for b in stmt.bindings] or [None] * n
    text, binds = render(stmt.query, stmt.bindings, defaults)
    return plan_only(conn, text, len(binds), server_version_num)
