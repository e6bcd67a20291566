"""Machine outputs: the JSON Schema, JUnit XML, Markdown, --format, --fail-on and
``planguard report``.  Rendering is tested on the recorded goldens (real comparisons judged
again without a server); the CLI end to end on real clusters."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from junitparser import JUnitXml

from planguard import cli
from planguard.calls import STATUSES
from planguard.config import Thresholds
from planguard.findings import CAUSES, KINDS, SEVERITIES, SUBJECTS
from planguard.judge import comparison_of
from planguard.loader import load
from planguard.recording import Recording
from planguard.report import (
    FORMATS,
    dump_json,
    gate,
    render,
    render_junit,
    render_markdown,
    schema,
    schema_errors,
    to_dict,
)
from planguard.report.markdown import MAX_CHARS, esc
from tests.conftest import Pair
from tests.fixtures.record_recordings import OUT
from tests.test_cli import assert_one_line_error, run

GOLDENS = sorted(p.name.removesuffix(".report.json") for p in OUT.glob("*.report.json"))
EXAMPLE = Path(__file__).parent.parent / "workloads" / "example.sql"


def golden(name: str) -> dict[str, Any]:
    """A recorded report with the fields the golden leaves out (they differ per run) put back."""
    data = json.loads((OUT / f"{name}.report.json").read_text())
    return {"generated_at": "2026-12-02T02:05:00+00:00", "duration_s": 1.5, **data}


def judged(name: str) -> dict[str, Any]:
    """The recording judged again, as ``to_dict`` gives it, through JSON (as a file holds it)."""
    result = comparison_of(load(OUT / f"{name}.workload.json"), Recording.load(OUT / f"{name}.recording.json"),
                           Thresholds(), repeat=5, redact=False, started_at="recorded", duration_s=0.0)
    loaded: dict[str, Any] = json.loads(dump_json(to_dict(result)))
    return loaded


# -- the schema ------------------------------------------------------------------------------


def test_the_schema_is_draft_2020_12_and_its_enums_are_the_registries() -> None:
    s = schema()
    Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = s["$defs"]
    assert defs["status"]["enum"] == list(STATUSES)
    assert defs["severity"]["enum"] == list(SEVERITIES)
    assert defs["finding_kind"]["enum"] == list(KINDS)
    assert defs["cause_kind"]["enum"] == list(CAUSES)
    assert defs["subject_type"]["enum"] == list(SUBJECTS)
    assert s["properties"]["kind"]["enum"] == ["compare", "check"]
    assert s["properties"]["verdict"]["enum"] == ["GO", "NO-GO"]
    assert set(s["properties"]["thresholds"]["properties"]) == {f.name for f in fields(Thresholds)}


def _objects(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        if "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            found += _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _objects(value, f"{path}/{i}")
    return found


def test_every_object_the_schema_describes_is_closed() -> None:
    """additionalProperties false everywhere: a key to_dict emits that the schema does not
    describe fails validation (the raw EXPLAIN plan object, plan_json, is the one open value)."""
    objects = [(p, o) for p, o in _objects(schema()) if not p.startswith("#/allOf/")]  # if/then: checks
    assert len(objects) > 30
    open_ = [p for p, o in objects if o.get("additionalProperties") is not False]
    assert not open_, open_


@pytest.mark.parametrize("name", GOLDENS)
def test_recorded_reports_validate(name: str) -> None:
    assert schema_errors(golden(name)) == []
    assert schema_errors(judged(name)) == []


@pytest.mark.parametrize("name", GOLDENS)
def test_finding_ids_are_unique_and_the_fix_script_names_them(name: str) -> None:
    report = judged(name)
    ids = [f["id"] for f in report["findings"]]
    assert len(ids) == len(set(ids)) and all(ids)
    script = report.get("fix_script")
    if script is not None:
        named = {i for step in script["steps"] for i in step["clears"] + step["also"]}
        assert named <= set(ids)
        blockers = {f["id"] for f in report["findings"] if f["severity"] == "blocker"}
        assert {i for step in script["steps"] for i in step["clears"]} <= blockers


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()
MUTATIONS = [
    ("verdict", _DELETE, "'verdict' is a required property"),
    ("findings.0.severity", _DELETE, "'severity' is a required property"),
    ("findings.0.severity", "critical", "is not one of"),
    ("findings.0.kind", "never_analysed", "is not one of"),
    ("findings.0.causes", None, "is not of type 'array'"),
    ("statements.0.status", "slow", "is not one of"),
    ("statements.0.param_sets.0.old.median_ms", "fast", "is not of type"),
    ("statements.0.param_sets.0.old.runs", _DELETE, "'runs' is a required property"),
    ("statements.0.querytext", "SELECT 1", "'querytext' was unexpected"),
    ("findings.0.hint", "x", "'hint' was unexpected"),
    ("summary.regresed", 0, "'regresed' was unexpected"),
    ("kind", "diff", "is not one of"),
    ("format_version", 2, "1 was expected"),
    ("exit_code", 0, "1 was expected"),  # NO-GO exits 1
    ("coverage.share", "all", "is not of type"),
    ("fix_script", _DELETE, "'fix_script' is a required property"),
    ("fix_script.steps.0.phase", "vacuum", "is not one of"),
    ("findings.0.id", _DELETE, "'id' is a required property"),
    ("findings.0.headline", _DELETE, "'headline' is a required property"),
    ("statements.2.param_sets.0.new.plan_json", _DELETE, "'plan_json' is a required property"),
]


@pytest.mark.parametrize(("path", "value", "why"), MUTATIONS, ids=[m[0] + ":" + str(m[1])[:12] for m in MUTATIONS])
def test_a_mutated_document_is_rejected(path: str, value: Any, why: str) -> None:
    doc = golden("demo_as_restored")
    assert doc["verdict"] == "NO-GO"
    _set(doc, path, value)
    errors = schema_errors(doc)
    assert errors and any(why in e for e in errors), errors


VERIFIED_MUTATIONS = [
    ("verification.trials", "3", "is not of type 'integer'"),
    ("verification.catalog_diff", None, "is not of type 'array'"),
    ("verification.hypopg", 1.4, "is not of type"),
    ("verification.catalog_unchanged", _DELETE, "'catalog_unchanged' is a required property"),
    ("verification.extra", 1, "'extra' was unexpected"),
    ("findings.0.verification.outcome", "fixed", "is not one of"),
    ("findings.0.verification.summary", _DELETE, "'summary' is a required property"),
    ("findings.0.verification.lock", [], "is not of type"),
    ("findings.0.verification.statements.0.plan_restored", "yes", "is not of type 'boolean'"),
    ("findings.0.verification.statements.0.after_ms", "fast", "is not of type"),
    ("findings.0.verification.statements.0.still_regressed", _DELETE, "'still_regressed' is a required property"),
    ("findings.0.verification.statements.0.plan", "x", "'plan' was unexpected"),
    ("statements.2.attribution", "stats", "is not one of"),
    ("statements.2.attribution_note", 1, "is not of type"),
    ("fix_script.steps.0.verified", "verified", "is not one of"),
    ("verification", _DELETE, "'verification' is a required property"),
    ("findings.3.verification", _DELETE, "'verification' is a required property"),
    ("statements.0.attribution", _DELETE, "'attribution' is a required property"),
    ("statements.0.attribution_note", _DELETE, "'attribution_note' is a required property"),
    ("fix_script.steps.1.verified", _DELETE, "'verified' is a required property"),
]


def test_the_schema_describes_verified_fixes() -> None:
    """The goldens with every verification field filled in (tests/test_report_verified.py), or
    null as a run without --verify-fixes writes them, validate; the enums are the outcomes and
    attributions planguard writes."""
    from tests.test_report_verified import hostile, unverified, verified

    defs = schema()["$defs"]
    assert defs["verification_outcome"]["enum"] == ["restores_old_plan", "improves", "no_effect", "not_tried"]
    assert defs["attribution"]["enum"] == ["statistics", "planner", "unknown"]
    for name in GOLDENS:
        assert schema_errors(unverified(golden(name))) == [], name
    doc = verified(golden("demo_as_restored"))
    assert doc["statements"][2]["attribution"] == "statistics" and doc["findings"][0]["verification"]
    assert schema_errors(doc) == []
    assert schema_errors(verified(golden("demo_as_restored"), changed=True)) == []
    assert schema_errors(hostile(golden("demo_as_restored"))) == []
    for outcome in defs["verification_outcome"]["enum"]:
        doc["findings"][0]["verification"]["outcome"] = outcome
        doc["fix_script"]["steps"][0]["verified"] = outcome
        assert schema_errors(doc) == []


@pytest.mark.parametrize(("path", "value", "why"), VERIFIED_MUTATIONS,
                         ids=[m[0] + ":" + str(m[1])[:12] for m in VERIFIED_MUTATIONS])
def test_a_mutated_verification_is_rejected(path: str, value: Any, why: str) -> None:
    from tests.test_report_verified import verified

    doc = verified(golden("demo_as_restored"))
    _set(doc, path, value)
    errors = schema_errors(doc)
    assert errors and any(why in e for e in errors), errors


def test_a_renamed_key_is_rejected() -> None:
    doc = golden("demo_as_restored")
    doc["findings"][0]["remedy"] = doc["findings"][0].pop("remediation")
    errors = schema_errors(doc)
    assert any("'remediation' is a required property" in e for e in errors), errors
    assert any("'remedy' was unexpected" in e for e in errors), errors


# -- the gate --------------------------------------------------------------------------------


def test_gate_exit_codes_and_fail_on_warning() -> None:
    no_go, go = golden("demo_as_restored"), golden("demo_after_analyze")
    assert [f["severity"] for f in go["findings"]].count("warning") >= 1
    assert gate(no_go).exit_code == 1 and gate(no_go).why is None
    assert gate(no_go, "warning").exit_code == 1 and gate(no_go, "warning").why is None
    assert gate(go) == gate(go, "blocker") and gate(go).exit_code == 0
    strict = gate(go, "warning")
    assert strict.exit_code == 1 and strict.why is not None and strict.why.startswith("exit 1: --fail-on warning")
    quiet = copy.deepcopy(go)
    quiet["findings"] = [f for f in quiet["findings"] if f["severity"] != "warning"]
    assert gate(quiet, "warning").exit_code == 0
    with pytest.raises(ValueError):
        render(go, "pdf")


def test_the_cli_knows_the_report_formats() -> None:
    assert cli.FORMATS == FORMATS


# -- JUnit -----------------------------------------------------------------------------------


def expected_junit(report: dict[str, Any], fail_on: str) -> dict[str, int]:
    failing = {"blocker"} | ({"warning"} if fail_on == "warning" else set())
    listed = [f for f in report["findings"] if f["severity"] in ("blocker", "warning")]
    about = {f["subject"]["name"] for f in report["findings"] if f["severity"] in failing
             and f["subject"] and f["subject"]["type"] == "statement"}
    statements = report["statements"]
    failed = [s for s in statements if s["fingerprint"][:8] in about]
    skipped = [s for s in statements if s["status"] == "skipped" and s not in failed]
    return {"tests": len(statements) + len(listed),
            "failures": len(failed) + sum(1 for f in listed if f["severity"] in failing),
            "skipped": len(skipped), "errors": 0}


def check_junit(xml: str, report: dict[str, Any], fail_on: str = "blocker") -> JUnitXml:
    """Parses as JUnit; its totals, its suites' and its cases' agree with each other and with
    the result."""
    parsed = JUnitXml.fromstring(xml)
    cases = [case for suite in parsed for case in suite]
    counted = {"tests": len(cases), "failures": sum(1 for c in cases if c.is_failure),
               "skipped": sum(1 for c in cases if c.is_skipped), "errors": 0}
    assert counted == expected_junit(report, fail_on)
    assert {"tests": parsed.tests, "failures": parsed.failures, "skipped": parsed.skipped,
            "errors": parsed.errors} == counted
    suites = {suite.name: suite for suite in parsed}
    assert set(suites) == {"planguard.statements", "planguard.findings"}
    assert suites["planguard.statements"].tests == len(report["statements"])
    for case in suites["planguard.statements"]:
        assert case.classname == "planguard.statements" and case.system_out
    for case in suites["planguard.findings"]:
        assert case.classname.startswith("planguard.findings.")
        assert case.classname.removeprefix("planguard.findings.") in KINDS
    return parsed


@pytest.mark.parametrize("name", GOLDENS)
@pytest.mark.parametrize("fail_on", ["blocker", "warning"])
def test_junit_parses_and_counts_match_the_result(name: str, fail_on: str) -> None:
    report = golden(name)
    check_junit(render_junit(report, fail_on), report, fail_on)


def test_junit_names_cases_and_fails_the_statement_behind_a_blocker() -> None:
    report = golden("demo_as_restored")
    parsed = JUnitXml.fromstring(render_junit(report))
    cases = {(c.classname, c.name): c for suite in parsed for c in suite}
    regressed = next(s for s in report["statements"] if s["status"] == "regressed")
    name = next(n for (cls, n) in cases if cls == "planguard.statements" and n.startswith(regressed["fingerprint"][:8]))
    assert f" {report['workload']['database']} {regressed['query'][:30]}" in name
    failure = cases[("planguard.statements", name)].result[0]
    assert failure.type == "plan_regression" and "ANALYZE public.transactions;" in failure.text
    blocker = cases[("planguard.findings.never_analyzed", "public.transactions")].result[0]
    finding = next(f for f in report["findings"] if f["kind"] == "never_analyzed")
    assert blocker.message == finding["headline"] and finding["remediation"] in blocker.text
    warning = cases[("planguard.findings.setting_diff", "autovacuum")]
    assert warning.is_passed and "autovacuum" in warning.system_out


def test_junit_survives_hostile_text() -> None:
    report = golden("demo_as_restored")
    report["statements"][0]["query"] = "SELECT '\x00\x1b]]></system-out><x/>' FROM \"<t>\" -- \ud800"
    report["findings"][0]["object"] = "public.\"</testcase>\x07\""
    parsed = check_junit(render_junit(report), report)
    names = [c.name for suite in parsed for c in suite]
    assert any("]]></system-out><x/>" in n for n in names)


# -- Markdown --------------------------------------------------------------------------------


def test_markdown_has_the_verdict_blockers_fix_script_worst_statements_and_versions() -> None:
    report = golden("demo_as_restored")
    md = render_markdown(report)
    assert md.startswith("## ❌ planguard comparison: **NO-GO**")
    for f in report["findings"]:
        if f["severity"] == "blocker":
            assert f"**{esc(f['kind'])}**" in md
    assert "```sql\n" in md and "ANALYZE public.transactions;" in md
    if report.get("fix_script"):
        assert report["fix_script"]["sql"].rstrip() in md
    assert "| statement | status | OLD ms | NEW ms | NEW/OLD | added active sessions |" in md
    assert re.search(r"\| `221f488a` \(postgres\) `SELECT .*\| regressed \|.*\| \+0\.456 \|", md)
    assert "15.18" in md and "18.6" in md and esc(report["coverage"]["text"]) in md
    go = render_markdown(golden("demo_after_analyze"), why=gate(golden("demo_after_analyze"), "warning").why)
    assert go.startswith("## ✅ planguard comparison: **GO**") and "exit 1: --fail-on warning" in go
    assert "### Fix before cutover" not in go


HOSTILE = "</script><script>window.pwned=1</script> | `x` ``y`` [a](javascript:alert(1)) *b* \"><img src=x onerror=alert(1)>"


_CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)")  # CommonMark code spans


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_markdown_keeps_hostile_text_inert() -> None:
    report = golden("demo_as_restored")
    regressed = next(s for s in report["statements"] if s["status"] == "regressed")
    regressed["query"] = f"SELECT 1 FROM t WHERE x = '{HOSTILE}'"
    report["findings"][0]["object"] = f"public.\"{HOSTILE}\""
    report["findings"][0]["headline"] = f"public.\"{HOSTILE}\" has never been analyzed"
    report["findings"][1]["headline"] = HOSTILE
    if report.get("fix_script"):
        report["fix_script"]["sql"] = "-- ```\n-- ````\nSELECT 1;"
    md = render_markdown(report)
    outside = _CODE_SPAN.sub("CODE", re.sub(r"(?ms)^(`{3,})sql\n.*?^\1$", "FENCE", md))
    for raw in ("<script", "<img", "*b*"):  # inert text, or inside code (shown as is)
        assert raw not in outside, outside
    for markup in (r"(?<!\\)\]\(", r"(?<!\\)`", r"(?<!\\)\["):  # links, code: only escaped
        assert not re.search(markup, outside), markup
    assert "&lt;script&gt;" in outside
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert rows and all(_unescaped_pipes(row) == 7 for row in rows), rows
    if report.get("fix_script"):
        assert "`````sql\n-- ```\n-- ````\nSELECT 1;\n`````" in md  # a fence no line inside closes


def test_markdown_stays_small_on_a_huge_result() -> None:
    report = golden("demo_as_restored")
    regressed = next(s for s in report["statements"] if s["status"] == "regressed")
    blocker = report["findings"][0]
    report["statements"] = [{**regressed, "fingerprint": f"{i:016x}", "query": regressed["query"] + " x" * 500}
                            for i in range(5000)]
    report["findings"] = [{**blocker, "id": f"b{i}", "object": f"public.t{i}"} for i in range(3000)]
    if report.get("fix_script"):
        report["fix_script"]["sql"] = "\n".join(f"ANALYZE public.t{i};" for i in range(20_000))
    md = render_markdown(report)
    assert len(md) <= MAX_CHARS
    assert "… and 2980 more" in md and "… and 4990 more" in md
    assert "```sql\n" in md and md.count("```") % 2 == 0


# -- planguard report (no database) ----------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name in GOLDENS:
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(dump_json(golden(name)))
    return paths


def test_report_renders_every_format_and_exits_as_the_result_says(saved: dict[str, Path], tmp_path: Path) -> None:
    no_go, go = saved["demo_as_restored"], saved["demo_after_analyze"]
    res = run("report", str(no_go), "--format", "md")
    assert res.returncode == 1 and res.stdout.startswith("## ❌ planguard comparison: **NO-GO**"), res.stderr
    assert res.stdout == render_markdown(golden("demo_as_restored"))
    res = run("report", str(no_go), "--format", "json")
    assert res.returncode == 1 and json.loads(res.stdout) == golden("demo_as_restored")
    res = run("report", str(no_go), "--format", "html", "-o", str(tmp_path / "r.html"))
    assert res.returncode == 1 and "NO-GO" in (tmp_path / "r.html").read_text()
    assert str(tmp_path / "r.html") in res.stdout
    res = run("report", str(no_go), "--format", "junit", "-o", str(tmp_path / "r.xml"))
    assert res.returncode == 1
    check_junit((tmp_path / "r.xml").read_text(), golden("demo_as_restored"))

    res = run("report", str(go), "--format", "junit")
    assert res.returncode == 0 and res.stderr == ""
    check_junit(res.stdout, golden("demo_after_analyze"))
    res = run("report", str(go), "--format", "junit", "--fail-on", "warning")
    assert res.returncode == 1 and res.stderr.startswith("exit 1: --fail-on warning")  # stdout is the XML
    check_junit(res.stdout, golden("demo_after_analyze"), "warning")
    res = run("report", str(go), "--format", "md", "--fail-on", "warning", "-o", str(tmp_path / "go.md"))
    assert res.returncode == 1 and "exit 1: --fail-on warning and 1 warning (setting_diff)" in res.stdout


def test_report_bad_input_is_one_line(saved: dict[str, Path], tmp_path: Path) -> None:
    assert_one_line_error(run("report", str(tmp_path / "none.json")), "cannot read result")
    assert_one_line_error(run("report", str(tmp_path)), "cannot read result")
    (tmp_path / "text.json").write_text("GO\n")
    assert_one_line_error(run("report", str(tmp_path / "text.json")), "is not JSON")
    assert_one_line_error(run("report", str(OUT / "demo_as_restored.workload.json")),
                          "is not a planguard result (a workload or a recording?)")
    assert_one_line_error(run("report", str(OUT / "demo_as_restored.recording.json")),
                          "is not a planguard result")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert_one_line_error(run("report", str(tmp_path / "list.json")), "is not a planguard result")
    doc = golden("demo_as_restored")
    (tmp_path / "v2.json").write_text(json.dumps({**doc, "format_version": 2}))
    assert_one_line_error(run("report", str(tmp_path / "v2.json")),
                          "is a result of format_version 2; this planguard reads format_version 1")
    del doc["findings"][0]["severity"]
    (tmp_path / "cut.json").write_text(json.dumps(doc))
    assert_one_line_error(run("report", str(tmp_path / "cut.json")),
                          "is not a valid planguard result: $.findings[0]: 'severity' is a required property")
    assert_one_line_error(run("report", str(saved["demo_as_restored"]), "--format", "pdf"),
                          "Invalid value for '--format'")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_line_error(run("report", str(saved["demo_as_restored"]), "-o", str(blocker / "x.md")),
                          f"cannot write {blocker / 'x.md'}")


def test_format_list_and_output_paths_are_checked_before_anything_runs(tmp_path: Path) -> None:
    wl = tmp_path / "w.sql"
    wl.write_text("SELECT 1;\n")
    unreachable = "host=127.0.0.1 port=1"
    assert_one_line_error(run("compare", unreachable, unreachable, "-w", str(wl), "--format", "json,pdf"),
                          "formats are a comma list of json, html, md, junit")
    assert_one_line_error(run("check", unreachable, unreachable, "--format", ","), "formats are a comma list")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for flag in ("--md", "--junit"):
        res = run("compare", unreachable, unreachable, "-w", str(wl), flag, str(blocker / "r.out"))
        assert_one_line_error(res, f"cannot write {blocker / 'r.out'}")  # not "cannot connect"
        res = run("check", unreachable, unreachable, flag, str(blocker / "r.out"))
        assert_one_line_error(res, f"cannot write {blocker / 'r.out'}")
    res = run("compare", unreachable, unreachable, "-w", str(wl), "--format", "md", cwd=blocker.parent)
    assert_one_line_error(res, "cannot connect")  # the default reports/w.md is writable
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").iterdir())


# -- end to end, on real clusters ------------------------------------------------------------


@pytest.mark.db
def test_compare_and_check_write_every_format_and_report_renders_the_same(
        clusters: Pair, dbname: str, olddb: str, newdb: str, tmp_path: Path) -> None:
    from planguard.demo import load_old, restore_new

    load_old(clusters.old, rows=20_000, iterations=10, dbname=dbname)
    restore_new(clusters.old, clusters.new, tmp_path, dbname=dbname)  # NEW not analyzed: NO-GO
    out = tmp_path / "out"
    c = {fmt: out / f"c.{fmt}" for fmt in FORMATS}
    res = run("compare", olddb, newdb, "-w", str(EXAMPLE), "--format", "json,html,md,junit", "--repeat", "2",
              "-q", "--json", str(c["json"]), "-o", str(c["html"]), "--md", str(c["md"]), "--junit", str(c["junit"]))
    assert res.returncode == 1, res.stdout + res.stderr
    for fmt, path in c.items():
        assert path.is_file() and str(path) in res.stdout, fmt
    report = json.loads(c["json"].read_text())
    assert report["kind"] == "compare" and report["verdict"] == "NO-GO"
    assert schema_errors(report) == []
    ids = [f["id"] for f in report["findings"]]
    assert len(set(ids)) == len(ids)
    assert any(s["status"] == "skipped" for s in report["statements"])  # example.sql leaves one without values
    parsed = check_junit(c["junit"].read_text(), report)
    assert parsed.skipped >= 1 and parsed.failures >= 2
    md = c["md"].read_text()
    assert md.startswith("## ❌ planguard comparison: **NO-GO**") and "never\\_analyzed" in md
    for fmt in FORMATS:  # the saved result renders again into exactly what compare wrote
        again = run("report", str(c["json"]), "--format", fmt)
        assert again.returncode == 1, again.stderr
        assert again.stdout == c[fmt].read_text(), fmt

    k = {fmt: out / f"k.{fmt}" for fmt in FORMATS}
    res = run("check", olddb, newdb, "--format", "json,md,junit", "--fail-on", "warning",
              "--json", str(k["json"]), "--md", str(k["md"]), "--junit", str(k["junit"]))
    assert res.returncode == 1, res.stdout + res.stderr
    assert not k["html"].exists() and not (tmp_path / "reports").exists()
    check = json.loads(k["json"].read_text())
    assert check["kind"] == "check" and check["statements"] == [] and schema_errors(check) == []
    check_junit(k["junit"].read_text(), check, "warning")
    assert render_markdown(check).startswith("## ❌ planguard readiness check: **NO-GO**")
    again = run("report", str(k["json"]), "--format", "md")
    assert again.returncode == 1 and again.stdout == k["md"].read_text()
    # Only what --format asks for, at the default paths.
    res = run("check", olddb, newdb, "--format", "md", cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["check.md"]

    with __import__("psycopg").connect(newdb, autocommit=True) as conn:
        conn.execute("ANALYZE")
    res = run("compare", olddb, newdb, "-w", str(EXAMPLE), "--repeat", "2", "-q", "--min-coverage", "0.5",
              "--json", str(out / "go.json"), "--format", "json", "--fail-on", "warning")
    go = json.loads((out / "go.json").read_text())
    assert schema_errors(go) == [] and go["verdict"] == "GO", go["reasons"]
    warned = any(f["severity"] == "warning" for f in go["findings"])
    assert res.returncode == (1 if warned else 0), res.stdout + res.stderr
    assert ("exit 1: --fail-on warning" in res.stdout) == warned
    assert not (out / "go.html").exists()
