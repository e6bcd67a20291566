"""The built-in cutover scenario: the postmortem, reproduced on two throwaway clusters.

OLD (the oldest PostgreSQL found, e.g. Debian's 15) runs a multi-tenant payments
app: a ``transactions`` table of about a million rows where one tenant owns half
the rows and 96 % of rows are ``settled``, useful indexes plus one that production
never uses (``transactions_status_tenant_idx``).  OLD is analyzed and has served
real traffic through the extended protocol, so ``pg_stat_statements`` is full.

NEW (the newest PostgreSQL found, e.g. the embedded 18) is restored from a
``pg_dump`` of OLD with autovacuum off; the small tables are analyzed, the big one
is **not** — as on the morning of the outage.  planguard then captures the
workload from OLD, compares, and must say NO-GO; after ``ANALYZE`` on NEW the
same comparison must say GO.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from planguard.capture import capture
from planguard.clusters import Cluster, cluster_pair
from planguard.compare import compare
from planguard.errors import ClusterError
from planguard.model import Comparison
from planguard.report import context_of, write_context, write_reports
from planguard.verify import verify
from planguard.workload import Workload

Progress = Callable[[str], None]

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE TABLE tenants (
    id int PRIMARY KEY, name text NOT NULL, plan text NOT NULL);
CREATE TABLE accounts (
    id bigserial PRIMARY KEY, tenant_id int NOT NULL REFERENCES tenants,
    email text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE transactions (
    id bigserial PRIMARY KEY, tenant_id int NOT NULL, account_id bigint NOT NULL,
    status text NOT NULL, amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO tenants
    SELECT g, 'tenant-' || g, CASE WHEN g <= 3 THEN 'enterprise' ELSE 'free' END
    FROM generate_series(1, 1000) g;
-- Skew: tenant 1 owns half of everything, tenants 2 and 3 a fifth and a tenth.
INSERT INTO accounts (tenant_id, email, status, created_at)
    SELECT CASE WHEN r < 0.5 THEN 1 WHEN r < 0.7 THEN 2 WHEN r < 0.8 THEN 3 ELSE 4 + (g % 997) END,
           'user' || g || '@example.com',
           CASE WHEN g % 50 = 0 THEN 'suspended' ELSE 'active' END,
           now() - (g || ' minutes')::interval
    FROM (SELECT g, random() AS r FROM generate_series(1, {accounts}) g) s;
-- 96 % settled; one row every two seconds, newest last.
INSERT INTO transactions (tenant_id, account_id, status, amount, created_at)
    SELECT a.tenant_id, a.id,
           CASE WHEN r < 0.96 THEN 'settled' WHEN r < 0.99 THEN 'pending' ELSE 'failed' END,
           round((random() * 500)::numeric, 2),
           now() - (({rows} - g) * 2 || ' seconds')::interval
    FROM (SELECT g, random() AS r, 1 + (hashint4(g) & 2147483647) % {accounts} AS aid
          FROM generate_series(1, {rows}) g) s
    JOIN accounts a ON a.id = s.aid;
CREATE INDEX transactions_tenant_created_idx ON transactions (tenant_id, created_at);
CREATE INDEX transactions_account_idx ON transactions (account_id);
-- Built for a one-off report, never used by the application since.
CREATE INDEX transactions_status_tenant_idx ON transactions (status, tenant_id);
CREATE UNIQUE INDEX accounts_email_idx ON accounts (email);
CREATE INDEX accounts_tenant_idx ON accounts (tenant_id);
"""

# The application's statements, with a generator of realistic arguments for each.
APP: list[tuple[str, int, Callable[[random.Random, int], tuple[object, ...]]]] = [
    ("SELECT id, amount, status, created_at FROM transactions "
     "WHERE tenant_id = %s AND status = %s ORDER BY created_at DESC LIMIT 50",
     30, lambda r, n: (_enterprise_tenant(r), "settled")),
    ("SELECT t.id, t.amount, t.created_at, a.email FROM transactions t "
     "JOIN accounts a ON a.id = t.account_id WHERE t.account_id = %s "
     "ORDER BY t.created_at DESC LIMIT 20",
     20, lambda r, n: (r.randint(1, n),)),
    ("SELECT count(*), sum(amount) FROM transactions WHERE tenant_id = %s AND created_at > %s",
     10, lambda r, n: (_tenant(r), datetime.now(timezone.utc) - timedelta(hours=1))),
    ("SELECT id, tenant_id, status FROM accounts WHERE email = %s",
     15, lambda r, n: (f"user{r.randint(1, n)}@example.com",)),
    ("SELECT name, plan FROM tenants WHERE id = %s", 15, lambda r, n: (_tenant(r),)),
    ("UPDATE accounts SET status = %s WHERE id = %s", 5, lambda r, n: ("active", r.randint(1, n))),
    ("INSERT INTO transactions (tenant_id, account_id, status, amount, created_at) "
     "VALUES (%s, %s, %s, %s, now())",
     5, lambda r, n: (_tenant(r), r.randint(1, n), "pending", round(r.uniform(1, 500), 2))),
    ("SELECT a.tenant_id, count(*) FROM accounts a WHERE a.status = %s GROUP BY a.tenant_id",
     2, lambda r, n: ("suspended",)),
]


def _enterprise_tenant(r: random.Random) -> int:
    """The transactions page is an enterprise feature: tenants 1 to 3, the big ones."""
    x = r.random()
    return 1 if x < 0.5 else 2 if x < 0.8 else 3


def _tenant(r: random.Random) -> int:
    x = r.random()
    return 1 if x < 0.5 else 2 if x < 0.7 else 3 if x < 0.8 else r.randint(4, 1000)


@dataclass(frozen=True)
class DemoResult:
    workload: Workload
    before: Comparison  # NEW as restored: the big table never analyzed
    after: Comparison  # after ANALYZE on NEW
    reports: dict[str, Path]
    # Each blocker's fix tried on NEW (rolled back): the blocker, the outcome, the summary.
    verified: list[str] = field(default_factory=list)


def load_old(old: Cluster, rows: int, iterations: int, seed: int = 7, dbname: str = "postgres") -> None:
    """Schema, skewed data, ANALYZE, then application traffic through the extended protocol."""
    accounts = max(1000, rows // 10)
    with psycopg.connect(old.dsn(dbname), autocommit=True) as conn:
        conn.execute(SCHEMA.format(rows=rows, accounts=accounts))
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SELECT pg_stat_reset()")
    run_traffic(old, iterations, accounts, seed, dbname)


def run_traffic(cluster: Cluster, iterations: int, accounts: int, seed: int = 7,
                dbname: str = "postgres") -> None:
    """The application's statements with realistic arguments, through the extended protocol."""
    rng = random.Random(seed)
    weights = [w for _, w, _ in APP]
    # prepare_threshold=None: bind parameters (extended protocol), custom plans, like most ORMs.
    with psycopg.connect(cluster.dsn(dbname), autocommit=True, prepare_threshold=None) as conn:
        for _ in range(iterations):
            query, _, args = rng.choices(APP, weights)[0]
            conn.execute(query, args(rng, accounts))


def restore_new(old: Cluster, new: Cluster, workdir: Path, analyze_small: bool = True,
                dbname: str = "postgres", statistics: bool = False) -> None:
    """pg_dump OLD, pg_restore into NEW; statistics are not carried, autovacuum is off.

    ``statistics``: carry OLD's planner statistics too (``pg_dump --statistics``, PostgreSQL
    18's pg_dump, which reads them from older servers as well), for a NEW with the same data
    *and* statistics as OLD.
    """
    dump = workdir / f"{dbname}.dump"
    stats = ["--statistics"] if statistics else []
    for args in (
        [new.install.tool("pg_dump"), "-Fc", *stats, "-f", str(dump), "-d", old.dsn(dbname)],
        [new.install.tool("pg_restore"), "--no-owner", "-d", new.dsn(dbname), str(dump)],
    ):
        res = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
        if res.returncode != 0:
            raise ClusterError(f"{Path(args[0]).name} failed: {res.stderr.strip()[-300:]}")
    dump.unlink(missing_ok=True)
    if analyze_small:
        with psycopg.connect(new.dsn(dbname), autocommit=True) as conn:
            conn.execute("ANALYZE tenants")
            conn.execute("ANALYZE accounts")


def run(workdir: Path, *, rows: int = 1_000_000, iterations: int = 600, repeat: int = 5,
        progress: Progress | None = None) -> DemoResult:
    """The whole demo: clusters, scenario, capture, compare, fix, compare again, reports."""
    say = progress or (lambda _m: None)
    (workdir / "reports").mkdir(parents=True, exist_ok=True)
    (workdir / "workloads").mkdir(parents=True, exist_ok=True)
    with cluster_pair(new_settings={"autovacuum": "off"}) as (old, new):
        say(f"OLD: {old.install} on port {old.port}; NEW: {new.install} on port {new.port}")
        say(f"loading {rows:,} transactions on OLD and running {iterations} application statements")
        load_old(old, rows, iterations)
        say("restoring NEW from pg_dump (statistics are not carried; only small tables analyzed)")
        restore_new(old, new, workdir)
        say("capturing the workload from OLD's pg_stat_statements")
        workload = capture(old.dsn(), top=20)
        wl_path = workdir / "workloads" / "demo.json"
        workload.save(wl_path)
        say(f"comparing {len(workload.statements)} statements on OLD and NEW")
        before = compare(old.dsn(), new.dsn(), workload, repeat=repeat)
        say("trying each blocker's fix on NEW, in transactions that are rolled back (--verify-fixes)")
        context = verify(context_of(before), new.dsn(), old.dsn(), repeat=repeat, progress=say)
        verified = [f"{f['kind']} {f['object']}: {v['outcome']}: {v['summary']}"
                    for f in context["findings"] if f["severity"] == "blocker" and (v := f["verification"])]
        paths = write_context(context, {"html": workdir / "reports" / "demo.html",
                                        "json": workdir / "reports" / "demo.json"})
        say("running ANALYZE on NEW (the fix) and comparing again")
        with psycopg.connect(new.dsn(), autocommit=True) as conn:
            conn.execute("ANALYZE")
        after = compare(old.dsn(), new.dsn(), workload, repeat=repeat)
        paths.update({f"after_{k}": v for k, v in write_reports(
            after, workdir / "reports" / "demo-after-analyze.html",
            workdir / "reports" / "demo-after-analyze.json").items()})
    paths["workload"] = wl_path
    return DemoResult(workload, before, after, paths, verified)


def serve(dsn: str, stop: threading.Event, *, rate: float = 50.0, accounts: int = 100_000,
          connections: int = 4, seed: int = 11) -> None:
    """The application's traffic against one cluster until ``stop``: ``rate`` statements per second
    in all, the APP mix, over ``connections`` sessions (each paced at its share of the rate, so a
    slow statement holds its session the way it holds an application's pool slot)."""
    def one(i: int) -> None:
        rng = random.Random(seed + i)
        weights = [w for _, w, _ in APP]
        gap = connections / rate
        next_at = time.monotonic()
        while not stop.is_set():
            try:  # like an application's pool: a session lost (a restart) is opened again
                with psycopg.connect(dsn, autocommit=True, prepare_threshold=None,
                                     application_name="demo-app", connect_timeout=5) as conn:
                    while not stop.is_set():
                        query, _, args = rng.choices(APP, weights)[0]
                        with contextlib.suppress(psycopg.errors.QueryCanceled):
                            conn.execute(query, args(rng, accounts))
                        next_at = max(next_at + gap, time.monotonic() - 1.0)
                        stop.wait(max(next_at - time.monotonic(), 0))
            except psycopg.OperationalError:
                stop.wait(0.5)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
