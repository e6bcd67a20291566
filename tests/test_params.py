"""Bind analysis on real statements (no server): pgbench's, TPC-H-style and ORM-style.

Each case: the normalized statement as pg_stat_statements shows it, and the
expected binding of every $n as "role table.column type" (or "role type").
"""

from __future__ import annotations

import pytest

from planguard.params import ParseFailure, TableColumns, analyze, resolve

CATALOG = {
    "pgbench_accounts": TableColumns("public.pgbench_accounts",
                                     {"aid": "integer", "bid": "integer", "abalance": "integer",
                                      "filler": "character(84)"}),
    "pgbench_tellers": TableColumns("public.pgbench_tellers",
                                    {"tid": "integer", "bid": "integer", "tbalance": "integer"}),
    "pgbench_branches": TableColumns("public.pgbench_branches",
                                     {"bid": "integer", "bbalance": "integer"}),
    "pgbench_history": TableColumns("public.pgbench_history",
                                    {"tid": "integer", "bid": "integer", "aid": "integer",
                                     "delta": "integer", "mtime": "timestamp without time zone"}),
    "lineitem": TableColumns("tpch.lineitem", {"l_orderkey": "bigint", "l_shipdate": "date",
                                               "l_discount": "numeric", "l_quantity": "numeric",
                                               "l_returnflag": "char(1)"}),
    "orders": TableColumns("tpch.orders", {"o_orderkey": "bigint", "o_orderdate": "date",
                                           "o_custkey": "bigint", "o_orderpriority": "text"}),
    "customer": TableColumns("tpch.customer", {"c_custkey": "bigint", "c_mktsegment": "text",
                                               "c_nationkey": "int"}),
    "nation": TableColumns("tpch.nation", {"n_nationkey": "int", "n_name": "text", "n_regionkey": "int"}),
    "region": TableColumns("tpch.region", {"r_regionkey": "int", "r_name": "text"}),
    "supplier": TableColumns("tpch.supplier", {"s_suppkey": "bigint", "s_nationkey": "int"}),
    "users": TableColumns("public.users", {"id": "bigint", "email": "text", "org_id": "bigint",
                                           "created_at": "timestamp with time zone", "deleted_at":
                                           "timestamp with time zone"}),
    "orgs": TableColumns("public.orgs", {"id": "bigint", "slug": "text"}),
}

CASES = [
    # pgbench's built-in TPC-B-like script
    ("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
     ["set public.pgbench_accounts.abalance integer", "compare public.pgbench_accounts.aid integer"]),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = $1",
     ["compare public.pgbench_accounts.aid integer"]),
    ("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2",
     ["set public.pgbench_tellers.tbalance integer", "compare public.pgbench_tellers.tid integer"]),
    ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
     ["insert public.pgbench_history.tid integer", "insert public.pgbench_history.bid integer",
      "insert public.pgbench_history.aid integer", "insert public.pgbench_history.delta integer"]),
    # TPC-H style
    ("SELECT l_returnflag, sum(l_quantity) FROM lineitem WHERE l_shipdate <= $1::date - $2::interval "
     "GROUP BY l_returnflag ORDER BY l_returnflag",
     # terms of a difference compared with l_shipdate: the leading one stands for its value
     ["arith tpch.lineitem.l_shipdate date", "arith tpch.lineitem.l_shipdate interval"]),
    ("SELECT sum(l_discount) FROM lineitem WHERE l_shipdate >= $1 AND l_shipdate < $2 "
     "AND l_discount BETWEEN $3 AND $4 AND l_quantity < $5",
     ["compare tpch.lineitem.l_shipdate date", "compare tpch.lineitem.l_shipdate date",
      "compare tpch.lineitem.l_discount numeric", "compare tpch.lineitem.l_discount numeric",
      "compare tpch.lineitem.l_quantity numeric"]),
    ("SELECT o_orderpriority, count(*) FROM orders o WHERE o_orderdate >= $1 AND EXISTS "
     "(SELECT 1 FROM lineitem l WHERE l.l_orderkey = o.o_orderkey AND l.l_shipdate > $2) GROUP BY 1",
     ["compare tpch.orders.o_orderdate date", "compare tpch.lineitem.l_shipdate date"]),
    ("SELECT o_orderkey FROM customer, orders WHERE c_mktsegment = $1 AND c_custkey = o_custkey "
     "AND o_orderdate < $2 LIMIT $3",
     ["compare tpch.customer.c_mktsegment text", "compare tpch.orders.o_orderdate date", "limit bigint"]),
    # TPC-H Q5: six tables, every column unqualified: only the catalog can place them
    ("SELECT n_name, sum(l_discount) FROM customer, orders, lineitem, supplier, nation, region "
     "WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND c_nationkey = s_nationkey "
     "AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey AND r_name = $1 "
     "AND o_orderdate >= $2 AND o_orderdate < $3::date + interval '1 year' GROUP BY n_name",
     ["compare tpch.region.r_name text", "compare tpch.orders.o_orderdate date",
      "arith tpch.orders.o_orderdate date"]),
    # TPC-H Q4 / Q21 style: correlated EXISTS and NOT EXISTS
    ("SELECT o_orderpriority FROM orders WHERE o_orderdate >= $1 AND NOT EXISTS "
     "(SELECT * FROM lineitem WHERE l_orderkey = o_orderkey AND l_returnflag = $2)",
     ["compare tpch.orders.o_orderdate date", "compare tpch.lineitem.l_returnflag char(1)"]),
    # ORM style
    ("SELECT users.id, users.email FROM users WHERE users.org_id IN ($1, $2, $3) "
     "AND users.deleted_at IS NULL ORDER BY users.id LIMIT $4 OFFSET $5",
     ["compare public.users.org_id bigint"] * 3 + ["limit bigint", "offset bigint"]),
    ("SELECT u.id FROM users u JOIN orgs o ON o.id = u.org_id WHERE o.slug = $1 AND u.email ILIKE $2",
     ["compare public.orgs.slug text", "compare public.users.email text"]),
    ("SELECT id FROM users WHERE id = ANY($1) AND created_at > $2",
     ["any public.users.id bigint[]", "compare public.users.created_at timestamp with time zone"]),
    ("WITH recent AS (SELECT * FROM users WHERE created_at > $1) SELECT count(*) FROM recent r "
     "JOIN orgs ON orgs.id = r.org_id WHERE slug = $2",
     ["compare public.users.created_at timestamp with time zone", "compare public.orgs.slug text"]),
    ("SELECT * FROM (SELECT org_id, count(*) c FROM users WHERE email LIKE $1 GROUP BY org_id) s "
     "WHERE s.c > $2",
     # s.c is an aggregate: no column to take a value from; OLD's server types it (bigint)
     ["compare public.users.email text", "unbound"]),
    ("UPDATE users SET email = $1 FROM orgs WHERE orgs.id = users.org_id AND orgs.slug = $2 RETURNING users.id",
     ["set public.users.email text", "compare public.orgs.slug text"]),
    ("DELETE FROM users USING orgs WHERE orgs.id = users.org_id AND orgs.slug IS DISTINCT FROM $1",
     ["compare public.orgs.slug text"]),
    ("SELECT id FROM users WHERE lower(email) = $1",
     ["compare public.users.email text"]),
    ("SELECT id FROM users WHERE email = $1::text",
     ["compare public.users.email text"]),
    # Behind a CTE or a subquery: pglast's scopes stop, sqlglot traces to the base table.
    ("WITH recent AS (SELECT * FROM users WHERE created_at > $1) SELECT count(*) FROM recent r "
     "WHERE r.email = $2",
     ["compare public.users.created_at timestamp with time zone", "compare public.users.email text"]),
    ("SELECT * FROM (SELECT id, email AS mail FROM users) s WHERE s.mail IN ($1,$2) AND s.id = ANY($3)",
     ["compare public.users.email text", "compare public.users.email text", "any public.users.id bigint[]"]),
    ("SELECT x.slug FROM (SELECT o.slug, o.id FROM orgs o UNION ALL SELECT o2.slug, o2.id FROM orgs o2) x "
     "WHERE x.id = $1",
     ["compare public.orgs.id bigint"]),
]


def _describe(b) -> str:  # type: ignore[no-untyped-def]
    if b.table:
        return f"{b.role} {b.table}.{b.column} {b.type}"
    return f"{b.role} {b.type}" if b.type else b.role


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_bindings(query: str, expected: list[str]) -> None:
    bindings, problems = resolve(analyze(query), CATALOG, query)
    assert [_describe(b) for b in bindings] == expected
    assert bool(problems) == any(e == "unbound" for e in expected)


# Parameters that are not compared with a column, each with the context that chooses its value
# (TPC-H's and reports' shapes, as pg_stat_statements normalizes their literals).
ROLES = [
    ("SELECT count(*) FROM lineitem WHERE l_quantity <= $1 + $2",  # TPC-H Q19
     ["arith l_quantity <= term 0 +", "arith l_quantity <= term 1 +"]),
    ("SELECT sum(l_discount * ($1 - l_discount)) FROM lineitem",  # TPC-H Q1: 1 - l_discount
     ["arith l_discount term 0 -"]),
    ("SELECT $1 * sum(l_quantity) / sum(l_discount) FROM lineitem",  # TPC-H Q14: 100.00 * ...
     ["arith l_quantity term 0 *"]),  # typed by its operand
    ("SELECT coalesce(sum(l_quantity), $1) FROM lineitem WHERE l_orderkey = $2",
     ["case l_quantity coalesce 1", "compare l_orderkey ="]),
    ("SELECT sum(CASE WHEN n_name = $1 THEN n_regionkey ELSE $2 END) FROM nation",  # TPC-H Q8
     ["compare n_name =", "case case 1"]),
    ("SELECT CASE o_orderpriority WHEN $1 THEN $2 ELSE $3 END FROM orders",
     ["compare o_orderpriority =", "case case 0", "case case 1"]),
    ("SELECT date_trunc($1, created_at), count(*) FROM users GROUP BY 1",
     ["func created_at date_trunc 0"]),
    ("SELECT extract($1 FROM o_orderdate) FROM orders",  # TPC-H Q7: extract(year FROM ...)
     ["func o_orderdate extract 0 inline"]),
    ("SELECT substring(email FROM $1 FOR $2) FROM users",  # TPC-H Q22: substring(c_phone FROM 1 FOR 2)
     ["func email substring 1", "func email substring 2"]),
    ("SELECT to_char(created_at, $1) FROM users", ["func created_at to_char 1"]),
    ("SELECT count(*) FROM orders WHERE o_orderdate >= date $1 AND o_orderdate < date $2 + interval $3",
     ["compare o_orderdate >= inline", "arith o_orderdate < term 0 + inline",
      "arith o_orderdate < term 1 + inline"]),
    ("SELECT id FROM users WHERE email LIKE $1 AND org_id IN ($2, $3)",
     ["compare email like", "compare org_id in", "compare org_id in"]),
    ("SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > $1",  # TPC-H Q18
     ["compare l_quantity > sum"]),
]


def _context(b) -> str:  # type: ignore[no-untyped-def]
    parts = [b.role, b.column, b.op, None if b.term is None else f"term {b.term}", b.arith, b.func,
             None if b.arg is None else str(b.arg), "inline" if b.inline else None]
    return " ".join(p for p in parts if p)


@pytest.mark.parametrize(("query", "expected"), ROLES, ids=[c[0][:48] for c in ROLES])
def test_roles_beyond_comparisons(query: str, expected: list[str]) -> None:
    bindings, problems = resolve(analyze(query), CATALOG, query)
    assert [_context(b) for b in bindings] == expected
    assert not problems


def test_json_operators() -> None:
    cat = {"events": TableColumns("public.events", {"id": "bigint", "payload": "jsonb"})}
    q = "SELECT id FROM events WHERE payload ->> $1 = $2 AND payload ? $3 AND payload @> $4"
    bindings, _ = resolve(analyze(q), cat, q)
    assert [(b.role, b.column, b.key) for b in bindings] == [
        ("json_key", "payload", None), ("json_value", "payload", 1), ("json_key", "payload", None),
        ("compare", "payload", None)]


def test_render_writes_literal_only_parameters_in_and_casts_the_rest() -> None:
    """``date $1`` and ``extract($2 FROM x)`` take no parameter in PostgreSQL's grammar (only
    libpg_query reads them): written in as literals; the rest renumbered and cast."""
    from dataclasses import replace

    from planguard.params import render

    q = ("SELECT extract($1 FROM o_orderdate), count(*) FROM orders WHERE o_orderdate >= date $2 "
         "AND o_custkey = $3 AND o_orderpriority LIKE $4 GROUP BY 1")
    bindings, _ = resolve(analyze(q), CATALOG, q)
    typed = tuple(b if b.inline else replace(b, param_type={3: "bigint", 4: "text"}[b.number])
                  for b in bindings)
    text, values = render(q, typed, ["year", "1995-01-01", "7", "it's%"])
    assert text == ("SELECT extract('year' FROM o_orderdate), count(*) FROM orders WHERE o_orderdate >= "
                    "date '1995-01-01' AND o_custkey = $1::bigint AND o_orderpriority LIKE $2::text GROUP BY 1")
    assert values == ("7", "it's%")
    # Statements bound by hand (a .sql workload) are sent as they are.
    assert render("SELECT $1", (), ["x"]) == ("SELECT $1", ("x",))


def test_comparison_operators_are_recorded_from_the_column_side() -> None:
    q = ("SELECT 1 FROM users WHERE created_at >= $1 AND $2 > created_at AND id BETWEEN $3 AND $4 "
         "AND email LIKE $5 AND org_id IN ($6) AND id = ANY($7) AND id IS DISTINCT FROM $8")
    bindings, _ = resolve(analyze(q), CATALOG, q)
    assert [b.op for b in bindings] == [">=", "<", "between_low", "between_high", "like", "in", "in", "distinct"]


def test_statement_kinds_and_tables() -> None:
    shape = analyze("SELECT 1 FROM users u JOIN orgs o ON o.id = u.org_id FOR UPDATE OF u")
    assert shape.kind == "select" and shape.tables == ("users", "orgs") and shape.locks_rows
    assert analyze("INSERT INTO users (id) VALUES ($1)").is_dml
    assert analyze("VACUUM users").kind == "utility"
    assert analyze("WITH x AS (SELECT 1) SELECT * FROM x").tables == ()
    assert not analyze("SELECT 1 FROM users").writes
    cte = analyze("WITH gone AS (DELETE FROM users WHERE id = $1 RETURNING id) SELECT count(*) FROM gone")
    assert cte.kind == "select" and cte.writes, "a data-modifying CTE must not run READ ONLY"


def test_fingerprint_ignores_literals_and_whitespace() -> None:
    a = analyze("SELECT id FROM users WHERE id = $1").fingerprint
    b = analyze("select id\n  from users where id = $7").fingerprint
    assert a == b
    assert a != analyze("SELECT email FROM users WHERE id = $1").fingerprint


def test_fingerprint_keeps_shards_and_tenant_schemas_apart() -> None:
    """libpg_query folds trailing digits of relation names; planguard must not merge them."""
    import pglast

    a, b = "SELECT x FROM events_202401 WHERE a = $1", "SELECT x FROM events_202402 WHERE a = $1"
    assert pglast.fingerprint(a) == pglast.fingerprint(b)  # the library's choice...
    assert analyze(a).fingerprint != analyze(b).fingerprint  # ...not ours
    s1, s2 = "SELECT x FROM tenant_0001.orders WHERE a = $1", "SELECT x FROM tenant_0002.orders WHERE a = $1"
    assert analyze(s1).fingerprint != analyze(s2).fingerprint
    assert analyze("select x from events_202401 where a = 5").fingerprint == analyze(a).fingerprint


def test_positional_insert_uses_catalog_column_order() -> None:
    bindings, _ = resolve(analyze("INSERT INTO orgs VALUES ($1, $2)"), CATALOG)
    assert [_describe(b) for b in bindings] == ["insert public.orgs.id bigint", "insert public.orgs.slug text"]


def test_unqualified_column_is_resolved_by_the_catalog() -> None:
    bindings, _ = resolve(analyze("SELECT 1 FROM users JOIN orgs ON orgs.id = users.org_id WHERE slug = $1"),
                          CATALOG)
    assert bindings[0].table == "public.orgs"


@pytest.mark.parametrize("bad", ["SELEC 1", "SELECT 1; SELECT 2"])
def test_parse_failures(bad: str) -> None:
    with pytest.raises(ParseFailure):
        analyze(bad)
