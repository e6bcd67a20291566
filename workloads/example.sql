-- planguard: database=postgres
--
-- A hand-written workload for the demo's schema (see planguard/demo.py).  Use it with
--   planguard compare OLD NEW --workload workloads/example.sql
-- One statement per entry; comment lines right before a statement name it and give
-- parameter sets as SQL literals.  A statement with $n and no params line is compared
-- by its generic plans only, without running it.

-- name: recent transactions of a tenant
-- params typical: 2, 'settled', 50
-- params heavy hitter: 1, 'settled', 50
-- params rare: 517, 'failed', 50
SELECT id, amount, status, created_at FROM transactions
WHERE tenant_id = $1 AND status = $2 ORDER BY created_at DESC LIMIT $3;

-- name: dashboard totals for the last day
-- params typical: 1, '2026-11-21 00:00:00+00'
SELECT count(*), sum(amount) FROM transactions WHERE tenant_id = $1 AND created_at > $2;

-- name: suspend an account (always rolled back by planguard)
-- params typical: 'suspended', 42
UPDATE accounts SET status = $1 WHERE id = $2;

-- name: accounts per tenant, no parameters
SELECT tenant_id, count(*) FROM accounts GROUP BY tenant_id ORDER BY 2 DESC LIMIT 10;

-- name: search by e-mail prefix (no values given: generic plans compared only)
SELECT id FROM accounts WHERE email LIKE $1;
