"""Findings: what a check or a comparison found, about what, how bad, and what fixes it (pure).

Every kind of finding is declared once here (``kind``): its stable code (the JSON's
``kind``), its default severity, the type of object it is about, why it matters and how it
is fixed.  Every module that emits a finding names its kind by the constant below; the
kinds table of docs/json-contract.md is generated from this registry
(``python -m planguard.findings``) and a test keeps the two the same.

A finding's ``subject`` is typed (a table, an index, a setting in a scope, a statement...);
a regression's ``causes`` are typed too (``Cause``: a kind from ``CAUSES`` and a subject),
and its message is rendered from them, never parsed back out of prose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SEVERITIES = ("blocker", "warning", "info")
SUBJECTS = ("table", "statistics", "index", "sequence", "setting", "statement", "database", "extension",
            "collation", "check", "cluster", "workload")


@dataclass(frozen=True)
class Kind:
    """A kind of finding, as the registry declares it."""

    code: str
    severity: str  # the default; ``severities`` says when it takes another
    subject: str  # one of SUBJECTS: what such a finding is about
    severities: str  # the severities it takes and when, as the docs say it
    why: str
    fix: str


KINDS: dict[str, Kind] = {}


def kind(code: str, severity: str, subject: str, *, severities: str, why: str, fix: str) -> str:
    """Declare a kind of finding; its code, for ``Finding(CODE, ...)``."""
    assert code not in KINDS and severity in SEVERITIES and subject in SUBJECTS, code
    KINDS[code] = Kind(code, severity, subject, severities, why, fix)
    return code


NEVER_ANALYZED = kind(
    'never_analyzed', 'blocker', 'table',
    severities='blocker; warning',
    why='blocker: a table (partitioned parents included) holds data but has no planner statistics on NEW. '
        'warning: it was analyzed, but columns, expression-index columns or inheritance statistics have none'
        ' (what `vacuumdb --missing-stats-only` looks for)',
    fix='`ANALYZE schema.table;` biggest first; on PostgreSQL 18 also `vacuumdb --analyze-in-stages '
        '--missing-stats-only`')
STALE_STATS = kind(
    'stale_stats', 'warning', 'table',
    severities='warning',
    why="rows modified since the last ANALYZE exceed `stale_mod_fraction` of the table, or NEW's row "
        "estimate is `row_estimate_ratio` times off OLD's",
    fix='`ANALYZE schema.table;`')
STATS_COVERAGE = kind(
    'stats_coverage', 'warning', 'table',
    severities='warning',
    why="object = table: a column's distinct values (`ndistinct_ratio`) or NULL fraction (`null_frac_delta`)"
        " diverge from OLD's, or its statistics target differs; object = statistics object: extended "
        'statistics missing on NEW or not built there',
    fix='`ALTER TABLE ... SET STATISTICS n;`, `CREATE STATISTICS ...;`, `ANALYZE schema.table;`')
MISSING_INDEX = kind(
    'missing_index', 'blocker', 'index',
    severities='blocker (unique, primary key, exclusion, or used on OLD); warning',
    why='an index of OLD has no index of the same definition on NEW (compared without names)',
    fix="OLD's definition as `CREATE INDEX CONCURRENTLY ...;` or `ALTER TABLE ... ADD CONSTRAINT ...;`")
EXTRA_INDEX = kind(
    'extra_index', 'warning', 'index',
    severities='warning',
    why='a valid index on NEW has no index of the same definition on OLD',
    fix='review, then `DROP INDEX CONCURRENTLY schema.index;`')
INVALID_INDEX = kind(
    'invalid_index', 'blocker', 'index',
    severities='blocker; warning (a valid twin exists: a `_ccnew` leftover)',
    why='`indisvalid`/`indisready` false on NEW, partitioned indexes included',
    fix="`REINDEX INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, or create and `ATTACH` the partitions' "
        'indexes')
UNUSED_INDEX = kind(
    'unused_index', 'info', 'index',
    severities='info',
    why='not scanned on OLD since its statistics were reset (primary key, unique, exclusion and replica-'
        'identity indexes excluded)',
    fix='review, then `DROP INDEX CONCURRENTLY schema.index;`')
DUPLICATE_INDEX = kind(
    'duplicate_index', 'warning', 'index',
    severities='warning',
    why="on NEW, an exact duplicate of another index, or a btree index whose keys lead another's (read from "
        '`pg_index`, not from the definition text)',
    fix='`DROP INDEX CONCURRENTLY schema.index;`')
HARMFUL_INDEX = kind(
    'harmful_index', 'warning', 'index',
    severities='warning',
    why="NEW's plans for the workload use an index OLD never scanned (or does not have)",
    fix='`ANALYZE` the table; if NEW still prefers it, drop it')
SEQUENCE_BEHIND = kind(
    'sequence_behind', 'blocker', 'sequence',
    severities='blocker',
    why="a sequence's next value on NEW is not past `max(column)` on NEW or past what OLD handed out "
        '(duplicate keys on the next INSERT)',
    fix="`SELECT setval('schema.seq', (SELECT max(col) FROM schema.tbl));`")
SEQUENCE_CAPACITY = kind(
    'sequence_capacity', 'warning', 'sequence',
    severities='warning; info',
    why="`sequence_capacity_fraction` of the sequence's (or its column type's) range is used; info: wider "
        'than its column only',
    fix='`ALTER TABLE ... ALTER COLUMN ... TYPE bigint;`, `ALTER SEQUENCE ... AS bigint;`')
SETTING_DIFF = kind(
    'setting_diff', 'warning', 'setting',
    severities='warning; info',
    why='a planner or autovacuum setting differs (cluster, `ALTER DATABASE/ROLE ... SET`, table or column '
        'storage parameters); built-in defaults that differ between versions are not reported',
    fix='`ALTER SYSTEM SET ...`, `ALTER DATABASE/ROLE ... SET/RESET ...`, `ALTER TABLE ... SET/RESET (...)`')
EXTENSION_DIFF = kind(
    'extension_diff', 'blocker', 'extension',
    severities='blocker (missing on NEW); warning (older on NEW); info',
    why='installed extensions differ',
    fix='`CREATE EXTENSION ...;`, `ALTER EXTENSION ... UPDATE TO ...;`')
COLLATION_VERSION = kind(
    'collation_version', 'blocker', 'collation',
    severities='blocker (indexes depend on it); warning; info (actual versions differ between OLD and NEW)',
    why="on NEW, a database's or collation's recorded version differs from the library's actual one",
    fix='amcheck `bt_index_check`, `REINDEX`, `ALTER DATABASE/COLLATION ... REFRESH ... VERSION`')
CHECK_SKIPPED = kind(
    'check_skipped', 'info', 'check',
    severities='info; warning (a sequence column too big to read without an index)',
    why='a check could not run for lack of a privilege (the message names it) or because it would scan a big'
        ' table',
    fix='the `GRANT` named, e.g. `GRANT pg_read_all_data TO role;`')
PLAN_REGRESSION = kind(
    'plan_regression', 'blocker', 'statement',
    severities='blocker; warning (below `impact_block_aas` at production rates)',
    why='a statement is slower on NEW beyond the thresholds and does other work (another plan, or more '
        'buffers); the message names the plan change and its likely cause',
    fix='from the cause: `ANALYZE`, review of an index OLD never used, ...')
SLOWER_SAME_PLAN = kind(
    'slower_same_plan', 'warning', 'statement',
    severities='warning; blocker (≥ `same_plan_block_ratio` and `same_plan_block_ms`, confirmed by a second '
               'independent round of pairs, and heavy enough at production rates)',
    why='slower on NEW with the same plan and the same buffers: not the planner; the message carries the '
        'evidence and what to check (CPU, JIT, functions, executor, settings such as `work_mem`)',
    fix='from the cause: `SET jit = off` to test, align settings, compare functions and CPU')
COLD_CACHE = kind(
    'cold_cache', 'info', 'cluster',
    severities='info',
    why="NEW's first executions read far more from outside shared buffers than OLD's (a fresh restore); the "
        'timings were taken after a warm-up',
    fix="`CREATE EXTENSION pg_prewarm; SELECT pg_prewarm('schema.table');`")
ACTIVITY_COUNTED = kind(
    'activity_counted', 'info', 'cluster',
    severities='info',
    why="planguard's own executions counted in the cluster's activity statistics (`pg_stat_user_indexes."
        "idx_scan`, `pg_stat_user_tables`): its role may not `SET track_counts = off`; a later check or "
        'compare can see an index planguard scanned as used',
    fix='`GRANT SET ON PARAMETER track_counts TO role;` (PostgreSQL 15+, as a superuser)')
QUERY_ERROR = kind(
    'query_error', 'blocker', 'statement',
    severities='blocker (NEW only), warning (both), info (OLD only)',
    why='a statement fails',
    fix='fix the object, privilege or parameter values')
PLAN_CHANGED = kind(
    'plan_changed', 'info', 'statement',
    severities='info; warning (it reads `buffers_ratio` times and `min_buffers_delta` more buffers)',
    why='a different plan on NEW that is not slower; the buffers are its evidence',
    fix='none needed')
STATEMENT_SKIPPED = kind(
    'statement_skipped', 'info', 'statement',
    severities='info (warning when its plans differ)',
    why='not executed: no executable parameter set could be built, a write under `--writes explain` or '
        '`skip` (or on a replica), or above `--max-query-ms`; its plans were compared without execution '
        '(with its values when it has some), except under `--writes skip`',
    fix='add `param_sets` in the workload file; `--writes rollback`; raise `--max-query-ms`')
GENERIC_PLAN_REGRESSION = kind(
    'generic_plan_regression', 'blocker', 'statement',
    severities="blocker (NEW's plan cache would use a changed, worse generic plan), else warning",
    why="a prepared statement's generic plan is slower on NEW than on OLD",
    fix='`ANALYZE`; `ALTER ROLE … SET plan_cache_mode = force_custom_plan;`')
GENERIC_PLAN_SLOWER = kind(
    'generic_plan_slower', 'warning', 'statement',
    severities='warning',
    why='on NEW, the generic plan the plan cache would switch to is much slower than the custom plan for '
        'some values',
    fix='`ALTER ROLE … SET plan_cache_mode = force_custom_plan;`')
UNSTABLE_TIMING = kind(
    'unstable_timing', 'warning', 'statement',
    severities='warning',
    why='the paired runs crossed the thresholds but did not agree (not every pair beyond the bar, sign test '
        '≥ `alpha`), or stayed within the measured noise floor, even after more pairs',
    fix='run again on quiet clusters, or with a higher `--repeat`')
RESULT_MISMATCH = kind(
    'result_mismatch', 'blocker', 'statement',
    severities='blocker',
    why='with `--check-results`: NEW returns a different number of rows, or other rows',
    fix='check that both hold the same data, then collations, extensions, functions')
RESULT_ORDER = kind(
    'result_order', 'warning', 'statement',
    severities='warning',
    why='with `--check-results`: the same rows in another order; the ORDER BY leaves ties',
    fix='add a unique column to the ORDER BY')
INCOMPLETE_COVERAGE = kind(
    'incomplete_coverage', 'blocker', 'workload',
    severities='blocker',
    why='the statements judged (run on both sides, or failing on NEW only) carry less than `min_coverage` of'
        " OLD's captured time (of the statements, for a hand-written workload); the message lists the others"
        ' and why',
    fix='give them values: `capture --from-log`, or `param_sets` in the workload file; or lower '
        '`min_coverage` knowingly')
EMPTY_RESULT = kind(
    'empty_result', 'info', 'statement',
    severities='info',
    why='a parameter set finds no row on OLD although pg_stat_statements says the statement returns rows: '
        "its timings may not stand for production's calls",
    fix='real values: `--from-log`, or `param_sets`')
NOT_MEASURED = kind(
    'not_measured', 'warning', 'statement',
    severities='warning',
    why='a parameter set could not be measured for a reason of the moment, not of the statement: a lock '
        'another session held past `lock_timeout`, or the run stopped while it ran; it counts against '
        'coverage',
    fix='release the lock (`pg_blocking_pids`), then `compare ... --resume RESULT.json`')
RUN_STOPPED = kind(
    'run_stopped', 'blocker', 'workload',
    severities='blocker (a signal or a fault: the result is partial); warning (a budget ran out: the '
               'partial result is judged, coverage decides)',
    why='the comparison ended before the end of its workload: interrupted, a cluster lost, or '
        '`--max-total` / `--max-old-server-time` spent; what was measured is kept',
    fix='`planguard compare OLD NEW -w WORKLOAD --resume RESULT.json` completes only what is missing')
SAME_CLUSTER = kind(
    'same_cluster', 'warning', 'cluster',
    severities='warning',
    why='OLD and NEW are the same cluster (allowed with `--allow-same-cluster`): the comparison proves '
        'nothing about a cutover, only about planguard and the noise',
    fix='point NEW at the new cluster')
CHECK_INCOMPLETE = kind(
    'check_incomplete', 'blocker', 'check',
    severities='blocker',
    why='a check could not run (e.g. gave up on a lock); a GO is not given on a check that did not run. '
        'Readiness checks name the family and side: `indexes on NEW`',
    fix='run again, or raise `--lock-timeout`')


@dataclass(frozen=True)
class Subject:
    """What a finding or a cause is about.

    ``type`` is one of SUBJECTS; ``name`` is schema-qualified for relations and sequences (as
    PostgreSQL quotes it), the setting's name for settings, the statement's short id for
    statements; ``scope`` says where a setting is set (``cluster``, ``database db``, ``role r``,
    ``role r in database db``, ``table t``); ``database`` the database, when it matters.
    """

    type: str
    name: str
    scope: str | None = None
    database: str | None = None

    def __post_init__(self) -> None:
        if self.type not in SUBJECTS:
            raise ValueError(f"subject type must be one of {SUBJECTS}, got {self.type!r}")


# What a regression is found to come from: the kinds of Cause.
CAUSES = {
    "never_analyzed": "a table the plan reads has no statistics on NEW",
    "stale_stats": "a table the plan reads has stale statistics on NEW",
    "estimate_error": "a scan's row estimate is 10x or more off on NEW only",
    "missing_index": "an index OLD's plan uses is missing on NEW",
    "extra_index": "NEW's plan uses an index that exists on NEW only",
    "harmful_index": "NEW's plan uses an index OLD never scanned",
    "planner_setting": "planner settings differ between OLD and NEW",
    "executor_setting": "settings that change how a plan runs differ",
    "workers": "NEW ran short of parallel workers",
    "spill": "the same plan spills to disk on NEW only",
    "jit": "JIT compiles the statement on NEW only",
    "bloat": "the same plan reads more buffers on NEW (bloat, another physical order)",
    "planner_change": "no catalog explanation: the planner differs between the versions",
    "unexplained": "another plan with no catalog explanation found",
    "not_the_planner": "the same plan and buffers: CPU, functions or the executor",
    "plan_cache_flip": "NEW's plan cache switches to a worse generic plan, OLD's does not",
}


@dataclass(frozen=True)
class Cause:
    """One likely cause of a regression: its kind (CAUSES), what it is about, the sentence
    that says it, and the SQL (or the step) that addresses it."""

    kind: str
    detail: str
    fix: str
    subject: Subject | None = None

    def __post_init__(self) -> None:
        if self.kind not in CAUSES:
            raise ValueError(f"cause kind must be one of {sorted(CAUSES)}, got {self.kind!r}")


@dataclass(frozen=True)
class Finding:
    kind: str  # a code declared with ``kind`` above
    severity: str  # blocker | warning | info
    object: str  # what it is about, as text: "public.transactions", "statement <id> (<table>)"
    message: str  # why it matters
    remediation: str  # SQL or an action the reviewer can copy
    subject: Subject | None = None
    causes: tuple[Cause, ...] = ()
    # One line for the verdict: what, where, how bad, the root cause (the message's first
    # sentence when not given).
    headline: str = ""
    # The average active sessions it adds at production call rates: a statement's own; a
    # cause's, the sum over the statements it explains (None: not known or not a load).
    extra_active_sessions: float | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.kind not in KINDS:
            raise ValueError(f"finding kind {self.kind!r} is not declared in planguard.findings")
        if not self.headline:
            object.__setattr__(self, "headline", first_sentence(self.message))


HEADLINE_MAX = 200


def first_sentence(text: str, limit: int = HEADLINE_MAX) -> str:
    """The first sentence of ``text`` on one line, cut at a clause boundary near ``limit``."""
    one = " ".join(text.split())
    head = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", one, maxsplit=1)[0]
    if len(head) <= limit:
        return head
    cut = max(head.rfind(sep, 0, limit) for sep in (": ", "; ", ", ", " ("))
    return (head[:cut] if cut > limit // 2 else head[:limit].rsplit(" ", 1)[0]).rstrip(" ,;:(") + " …"


def finding_ids(findings: Sequence[Finding]) -> list[str]:
    """A stable anchor per finding, unique in the list: its kind and object as a slug."""
    seen: dict[str, int] = {}
    out = []
    for f in findings:
        base = re.sub(r"[^a-z0-9._-]+", "-", f"{f.kind}-{f.object}".lower()).strip("-")[:80]
        n = seen[base] = seen.get(base, 0) + 1
        out.append(base if n == 1 else f"{base}-{n}")
    return out


def sql_literal(value: str) -> str:
    """``value`` as a standard SQL string literal (``standard_conforming_strings = on``)."""
    return "'" + value.replace("'", "''") + "'"


def quoted_ident(name: str) -> str:
    """``name`` as an always-quoted identifier (safe for any name, keyword or not)."""
    return '"' + name.replace('"', '""') + '"'


def human_size(n: float) -> str:
    """1536 -> '1.5 kB'; bytes below 1 kB stay exact."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def listing(items: list[str] | tuple[str, ...], limit: int = 8) -> str:
    """'a, b, c' or 'a, b, ... and 12 more' for messages."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def markdown_table() -> str:
    """The kinds table of docs/json-contract.md, from the registry."""
    lines = ["| kind | severity | meaning | remediation |", "| --- | --- | --- | --- |"]
    lines += [f"| `{k.code}` | {k.severities} | {k.why} | {k.fix} |" for k in KINDS.values()]
    return "\n".join(lines) + "\n"


def causes_table() -> str:
    """The cause kinds table of docs/json-contract.md, from ``CAUSES``."""
    lines = ["| cause | meaning |", "| --- | --- |"]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in CAUSES.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table() + "\n" + causes_table(), end="")
