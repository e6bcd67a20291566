"""The fix script (pure): statements split by PostgreSQL's scanner, a safe order, one step per
statement that clears every blocker asking for it, and nothing risky left runnable."""

from __future__ import annotations

import json

from planguard.findings import Finding, first_sentence
from planguard.fixes import concurrently, fix_script, phase_of, script_text, statements_of
from tests.fixtures.record_recordings import OUT


def _f(kind: str, severity: str, obj: str, remediation: str) -> Finding:
    return Finding(kind, severity, obj, f"{obj} is wrong.", remediation)


def test_statements_keep_their_comments_and_strings() -> None:
    text = ("-- review it, then:\nANALYZE public.t;\n-- if NEW still prefers it:\n"
            "DROP INDEX CONCURRENTLY public.i;  -- trailing\nSELECT setval('a;--b', 3);")
    st = statements_of(text)
    assert [s.sql for s in st] == ["ANALYZE public.t;", "DROP INDEX CONCURRENTLY public.i;",
                                   "SELECT setval('a;--b', 3);"]
    assert [s.lead for s in st] == ["review it, then:", "if NEW still prefers it:", ""]
    assert st[1].trailing == "trailing" and st[2].trailing == ""


def test_phases_and_concurrently() -> None:
    assert phase_of("ANALYZE public.t;") == "analyze"
    assert phase_of("ALTER TABLE t ALTER COLUMN c SET STATISTICS 1000;") == "analyze"
    assert phase_of("SELECT setval('public.s', 42);") == "sequences"
    assert phase_of("ALTER SYSTEM SET random_page_cost = '1.1';") == "settings"
    assert phase_of("ALTER TABLE public.t SET (autovacuum_enabled = 'on');") == "settings"
    assert phase_of("ALTER TABLE public.t ALTER COLUMN id TYPE bigint;") == "other"
    assert phase_of("CREATE INDEX i ON public.t USING btree (a);") == "indexes"
    assert concurrently("CREATE INDEX i ON public.t USING btree (a);") == \
        "CREATE INDEX CONCURRENTLY i ON public.t USING btree (a);"
    assert concurrently("CREATE UNIQUE INDEX i ON t (a);") == "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a);"
    assert concurrently("DROP INDEX public.i;") == "DROP INDEX CONCURRENTLY public.i;"
    assert concurrently("REINDEX INDEX public.i;") == "REINDEX INDEX CONCURRENTLY public.i;"
    assert concurrently("CREATE INDEX i ON ONLY public.parted (a);") == "CREATE INDEX i ON ONLY public.parted (a);"


def test_a_safe_order_one_step_per_statement_and_what_each_clears() -> None:
    findings = [
        _f("missing_index", "blocker", "public.t_a_idx", "CREATE INDEX t_a_idx ON public.t USING btree (a);"),
        _f("sequence_behind", "blocker", "public.t_id_seq", "SELECT setval('public.t_id_seq', 1001);"),
        _f("plan_regression", "blocker", "statement 1", "ANALYZE public.small;\nANALYZE public.big;"),
        _f("never_analyzed", "blocker", "public.big", "ANALYZE public.big;"),
        _f("never_analyzed", "blocker", "public.small", "ANALYZE public.small;"),
        _f("setting_diff", "blocker", "random_page_cost",
           "ALTER SYSTEM SET random_page_cost = '1.1';\nSELECT pg_reload_conf();"),
        _f("setting_diff", "blocker", "work_mem", "ALTER SYSTEM SET work_mem = '64MB';\nSELECT pg_reload_conf();"),
        _f("generic_plan_regression", "blocker", "statement 2",
           "-- find why:\nALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;"),
        _f("harmful_index", "warning", "public.t_b_idx",
           "ANALYZE public.big;\n-- if NEW still prefers it:\nDROP INDEX CONCURRENTLY public.t_b_idx;"),
    ]
    ids = [f"f{i}" for i in range(len(findings))]
    steps = fix_script(findings, ids, {"public.big": (1_000_000, 5e7), "public.small": (10, 100.0)})
    assert [s.phase for s in steps] == ["analyze", "analyze", "sequences", "settings", "settings", "settings",
                                        "settings", "indexes"]
    big, small = steps[0], steps[1]
    assert big.sql == "ANALYZE public.big;" and small.sql == "ANALYZE public.small;"  # largest first
    assert big.clears == ["f2", "f3"] and big.also == ["f8"]  # the warning's ANALYZE is the same step
    assert "samples 30,000 of its 1,000,000 pages" in (big.note or "")
    assert steps[-2].sql == "SELECT pg_reload_conf();" and steps[-2].clears == ["f5", "f6"]  # once, last
    role = next(s for s in steps if "<app_role>" in s.sql)
    assert not role.runnable and "edit the placeholder" in (role.note or "")
    assert steps[-1].sql == "CREATE INDEX CONCURRENTLY t_a_idx ON public.t USING btree (a);"
    # The warning's conditional DROP INDEX is no step: only blockers make steps.
    assert not [s for s in steps if "t_b_idx" in s.sql]
    text = script_text(steps)
    assert text.index("ANALYZE public.big;") < text.index("setval") < text.index("ALTER SYSTEM") \
        < text.index("CREATE INDEX CONCURRENTLY")
    assert "\n-- ALTER ROLE <app_role>" in text  # written commented out
    assert text.count("SELECT pg_reload_conf();") == 1
    assert [line.split(" (")[0] for line in text.splitlines() if line[3:4].isdigit()] == [
        "-- 1. Statistics", "-- 2. Sequences", "-- 3. Settings", "-- 4. Indexes, CONCURRENTLY"]
    # The phases a script has are numbered as they come: no gap where one has no step.
    lean = script_text([s for s in steps if s.phase != "sequences"])
    assert "-- 2. Settings" in lean and "-- 3. Indexes, CONCURRENTLY" in lean and "-- 4." not in lean


def test_a_conditional_statement_of_a_blocker_is_commented_out() -> None:
    (step,) = fix_script([_f("invalid_index", "blocker", "public.i",
                             "-- if it was not meant to be there:\nDROP INDEX public.i;")], ["f0"])
    assert not step.runnable and step.sql == "DROP INDEX CONCURRENTLY public.i;"
    assert "-- DROP INDEX CONCURRENTLY public.i;" in script_text([step])


def test_the_demo_fix_script_clears_its_blockers() -> None:
    report = json.loads((OUT / "demo_as_restored.report.json").read_text())
    fix = report["fix_script"]
    blockers = {f["id"] for f in report["findings"] if f["severity"] == "blocker"}
    analyze = fix["steps"][0]
    assert analyze["sql"] == "ANALYZE public.transactions;" and analyze["runnable"]
    assert {"never_analyzed-public.transactions",
            "plan_regression-statement-221f488a-public.transactions"} <= set(analyze["clears"])
    assert set(analyze["clears"]) <= blockers
    assert fix["sql"].startswith("-- planguard: fix before cutover")
    # The verdict's reasons are one line each, the cause before its symptom.
    assert all("\n" not in r and len(r) < 300 for r in report["reasons"])
    assert report["reasons"][0].startswith("never_analyzed: public.transactions")


def test_first_sentence_is_one_line_and_short() -> None:
    assert first_sentence("public.t (1.5 MB) is old. It matters.") == "public.t (1.5 MB) is old."
    long = "x " * 200
    assert len(first_sentence(long)) <= 202 and "\n" not in first_sentence("a\nb. C")
