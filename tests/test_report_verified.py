"""How the reports show verified fixes (issue 13): the HTML's "Verified fixes" section, the
fix script's and the verdict's outcome badges, the statements' attribution; Markdown and
JUnit.  No database: the recorded goldens get the verification fields filled in here, in the
shape ``planguard.verify`` writes (docs/json-contract.md), hostile text included.
"""

from __future__ import annotations

import copy
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from playwright.sync_api import expect

from planguard.report import render_junit, render_markdown, schema_errors
from planguard.report.html import render_html
from planguard.report.markdown import esc
from tests import test_report_html
from tests.fixtures.record_recordings import OUT
from tests.test_report_html import ARTIFACTS, HOSTILE_IMG, HOSTILE_SCRIPT

browser = test_report_html.browser  # the HTML tests' Chromium and report opener, as fixtures here
open_report = test_report_html.open_report

ANALYZE_SIDE_EFFECT = ("ANALYZE updates pg_class.reltuples/relpages of public.transactions in place "
                       "(ROLLBACK does not take it back)")
LABELS = {"restores_old_plan": "restores OLD's plan", "improves": "improves", "no_effect": "no effect",
          "not_tried": "not tried"}


def golden(name: str = "demo_as_restored") -> dict[str, Any]:
    """A recorded report, with the fields the golden leaves out (they differ per run) put back."""
    data = json.loads((OUT / f"{name}.report.json").read_text())
    return {"generated_at": "2026-12-02T02:05:00+00:00", "duration_s": 1.5, **data}


def unverified(report: dict[str, Any]) -> dict[str, Any]:
    """The report as a run without --verify-fixes writes it: every verification field null."""
    out = copy.deepcopy(report)
    out["verification"] = None
    for f in out["findings"]:
        f["verification"] = None
    for s in out["statements"]:
        s["attribution"] = None
        s["attribution_note"] = None
    for st in (out["fix_script"] or {}).get("steps", []):
        st["verified"] = None
    return out


def verified(report: dict[str, Any], *, changed: bool = False) -> dict[str, Any]:
    """The report as ``compare --verify-fixes`` writes it for the demo: ANALYZE restores OLD's
    plan, the plan-cache setting only improves the generic plan; with ``changed``, NEW's catalog
    was not the same after the run."""
    out = unverified(report)
    regressed = next(s for s in out["statements"] if s["status"] == "regressed")
    fp = regressed["fingerprint"]
    rows = [{"fingerprint": fp, "param_set": p["label"], "old_ms": p["old"]["median_ms"],
             "before_ms": p["new"]["median_ms"], "after_ms": 0.061 if k == 0 else 0.058,
             "plan_restored": True, "still_regressed": False}
            for k, p in enumerate(x for x in regressed["param_sets"] if x["status"] == "regressed")]
    worst = max(rows, key=lambda r: r["before_ms"])
    analyze = {"outcome": "restores_old_plan", "trial": "BEGIN;\nANALYZE public.transactions;\n-- re-measure\nROLLBACK;",
               "reason": "every regressed statement returns to OLD's plan shape and is no longer slower",
               "summary": f"ANALYZE public.transactions restores OLD's plan for {len(rows)} of {len(rows)} "
                          f"regressed statements; the worst goes from {worst['before_ms']} to {worst['after_ms']} ms",
               "statements": rows, "side_effects": [ANALYZE_SIDE_EFFECT], "lock": None}
    generic = {"outcome": "improves", "trial": "BEGIN;\nSET LOCAL plan_cache_mode = force_custom_plan;\nROLLBACK;",
               "reason": "faster, but still slower than OLD's generic plan",
               "summary": "SET LOCAL plan_cache_mode = force_custom_plan makes 1 of 1 statements faster "
                          "(10.3 to 0.9 ms); still regressed",
               "statements": [{"fingerprint": fp, "param_set": "typical", "old_ms": 0.06, "before_ms": 10.3,
                               "after_ms": 0.9, "plan_restored": False, "still_regressed": True}],
               "side_effects": [], "lock": None}
    harmful = {"outcome": "not_tried", "trial": "DROP INDEX public.transactions_status_tenant_idx;",
               "reason": "HypoPG is not installed on NEW and --allow-locks was not given",
               "summary": "not tried: hiding the index needs HypoPG, dropping it --allow-locks",
               "statements": [], "side_effects": [], "lock": None}
    for f in out["findings"]:
        f["verification"] = {"never_analyzed": analyze, "plan_regression": analyze, "generic_plan_regression": generic,
                             "harmful_index": harmful}.get(f["kind"])
        f["verification"] = copy.deepcopy(f["verification"])
    regressed["attribution"] = "statistics"
    regressed["attribution_note"] = ("with OLD's statistics copied (pg_restore_attribute_stats), "
                                     "NEW chooses OLD's plan")
    for st in out["fix_script"]["steps"]:
        st["verified"] = {"analyze": "restores_old_plan", "settings": "improves"}.get(st["phase"])
    out["verification"] = {
        "allow_locks": False, "hypopg": None, "trials": 3, "side_effects": [ANALYZE_SIDE_EFFECT],
        "catalog_unchanged": not changed,
        "catalog_diff": ["index public.transactions_tmp_idx exists after the run, not before",
                         "setting work_mem: 4MB before, 64MB after"] if changed else []}
    return out


def hostile(report: dict[str, Any]) -> dict[str, Any]:
    """Markup and script in every text the verification writes."""
    bad = HOSTILE_SCRIPT + HOSTILE_IMG
    out = verified(report, changed=True)
    for f in out["findings"]:
        v = f["verification"]
        if v:
            v.update(trial=f"SELECT '{bad}';", summary=bad, reason=bad, side_effects=[bad], lock=bad)
            for row in v["statements"]:
                row["param_set"] = bad
    out["verification"]["side_effects"] = [bad]
    out["verification"]["catalog_diff"] = [bad]
    out["verification"]["hypopg"] = bad
    for s in out["statements"]:
        if s["attribution"]:
            s["attribution_note"] = bad
    return out


def blockers(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["severity"] == "blocker"]


def section(page: str, ident: str) -> str:
    start = page.index(f'id="{ident}"', page.index("<body>"))
    return page[start:page.index("</section>", start)]


# ---- the schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["demo_as_restored", "demo_after_analyze"])
def test_filled_in_goldens_validate(name: str) -> None:
    assert schema_errors(unverified(golden(name))) == []
    if name == "demo_as_restored":
        assert schema_errors(verified(golden(name))) == []
        assert schema_errors(verified(golden(name), changed=True)) == []
        assert schema_errors(hostile(golden(name))) == []


# ---- HTML as text -------------------------------------------------------------------------------


def test_the_section_comes_right_after_the_fix_script_and_lists_every_blocker() -> None:
    report = verified(golden())
    page = render_html(report)
    assert page.index('<section id="fix"') < page.index('<section id="verified"') < page.index('<section id="summary"')
    assert '<a href="#verified">Verified fixes</a>' in page
    v = section(page, "verified")
    ids = re.findall(r'<article class="vfix[^"]*" id="v-([^"]+)"', v)
    assert ids[:len(blockers(report))] == [f["id"] for f in blockers(report)]
    assert ids == [f["id"] for f in report["findings"] if f["verification"]]
    for f in report["findings"]:
        if not f["verification"]:
            continue
        art = v[v.index(f'id="v-{f["id"]}"'):]
        art = art[:art.index("</article>")]
        outcome = f["verification"]["outcome"]
        assert f'href="#f-{f["id"]}"' in art
        label = re.escape(LABELS[outcome].replace("'", "&#39;"))
        assert re.search(rf'<span class="badge vo {outcome}"[^>]*>{label}</span>', art)
        assert f["verification"]["summary"].replace("'", "&#39;") in art
        assert f'data-copy="vtrial-{f["id"]}"' in art and f'id="vtrial-{f["id"]}"' in art
        for row in f["verification"]["statements"]:
            assert f"<td>{row['param_set']}</td>" in art
        if f["kind"] == "never_analyzed":
            assert art.count("✓") == len(f["verification"]["statements"]) * 1 and "✗" not in art.split("<table")[1]
            assert ANALYZE_SIDE_EFFECT in art
        if f["kind"] == "harmful_index":
            assert "HypoPG is not installed on NEW" in art
    assert "NEW's catalog is unchanged: indexes, settings, sequences, pg_statistic" in v
    assert 'class="catalog ok"' in v and ANALYZE_SIDE_EFFECT in v.split('id="v-run"')[1]


def test_documented_in_place_changes_do_not_count_as_a_changed_catalog() -> None:
    """planguard.verify lists ANALYZE's in-place row counts in catalog_diff and still calls the
    catalog unchanged: they were said before they were done."""
    report = verified(golden())
    report["verification"]["catalog_diff"] = ["pg_class public.transactions: reltuples -1 before, 100000 after"]
    v = section(render_html(report), "verified")
    assert 'class="catalog ok"' in v and 'class="catalog changed"' not in v
    assert "apart from what the run said it could not roll back" in v
    assert "<li>pg_class public.transactions: reltuples -1 before, 100000 after</li>" in v
    md = render_markdown(report)
    assert "- NEW's catalog is unchanged: indexes, settings, sequences, pg\\_statistic, apart from" in md
    assert "changed during verification" not in md


def test_a_changed_catalog_is_said_loudly() -> None:
    report = verified(golden(), changed=True)
    v = section(render_html(report), "verified")
    assert 'class="catalog changed"' in v and "is unchanged" not in v
    for line in report["verification"]["catalog_diff"]:
        assert f"<li>{line}</li>" in v


def test_a_fix_not_tried_without_sql_and_a_blocker_without_a_trial() -> None:
    report = verified(golden())
    harmful = next(f for f in report["findings"] if f["kind"] == "harmful_index")
    harmful["verification"]["trial"] = ""  # planguard.verify: nothing to try
    generic = next(f for f in report["findings"] if f["kind"] == "generic_plan_regression")
    generic["verification"] = None
    page = render_html(report)
    v = section(page, "verified")
    art = v[v.index(f'id="v-{harmful["id"]}"'):]
    art = art[:art.index("</article>")]
    assert "vtrial-" not in art and "HypoPG is not installed on NEW" in art
    art = v[v.index(f'id="v-{generic["id"]}"'):]
    assert '<span class="badge vo none">not verified</span>' in art[:art.index("</article>")]
    assert "No trial was recorded for this blocker." in art
    verdict = section(page, "verdict")
    assert f'href="#v-{generic["id"]}" class="badge vo small none">not verified</a>' in verdict
    assert "— fix not verified" in render_markdown(report)


def test_badges_in_the_verdict_and_the_fix_script() -> None:
    report = verified(golden())
    page = render_html(report)
    verdict = section(page, "verdict")
    lines = re.findall(r'<li><a href="#f-([^"]+)">.*?</a>(.*?)</li>', verdict, re.S)
    assert [i for i, _ in lines] == [f["id"] for f in blockers(report)]
    for (_, rest), f in zip(lines, blockers(report), strict=True):
        outcome = f["verification"]["outcome"]
        assert f'class="badge vo small {outcome}"' in rest and f'href="#v-{f["id"]}"' in rest
    fix = section(page, "fix")
    steps = re.findall(r'<span class="phase (\w+)">\w+</span>\s*<span class="verified (\w+)"[^>]*>([^<]+)</span>', fix)
    assert steps == [("analyze", "restores_old_plan", "verified: restores OLD&#39;s plan"),
                     ("settings", "improves", "verified: improves")]
    report["fix_script"]["steps"][1]["verified"] = None
    fix = section(render_html(report), "fix")
    assert '<span class="verified none"' in fix and "not verified" in fix


def test_without_verification_nothing_is_shown() -> None:
    page = render_html(unverified(golden()))
    assert 'id="verified"' not in page and "#verified" not in page
    assert 'class="verified' not in page and "badge vo" not in page
    page = render_html(golden())  # a result written before the fields existed
    assert 'id="verified"' not in page


def test_attribution_goes_to_the_table_and_the_detail() -> None:
    report = verified(golden())
    page = render_html(report)
    data = json.loads(re.search(r'<script type="application/json" id="pg-data">(.*?)</script>', page, re.S).group(1))
    detail = json.loads(re.search(r'<script type="application/json" id="pg-detail"[^>]*>(.*?)</script>',
                                  page, re.S).group(1))
    rows = [dict(zip(data["rows"]["keys"], v, strict=True)) for v in data["rows"]["values"]]
    for i, s in enumerate(report["statements"]):
        assert rows[i]["attr"] == s["attribution"]
        assert rows[i]["attr_note"] == s["attribution_note"]
        assert detail[i]["attribution"] == s["attribution"]
        assert detail[i]["attribution_note"] == s["attribution_note"]


def test_hostile_verification_text_is_escaped() -> None:
    page = render_html(hostile(golden()))
    v = section(page, "verified")
    assert HOSTILE_SCRIPT not in page.split('<script type="application/json"')[0]
    assert "<img" not in page
    assert "&lt;/script&gt;&lt;script&gt;window.pwned=1&lt;/script&gt;" in v
    assert "&#34;&gt;&lt;img src=x onerror=window.pwned=1&gt;" in v


# ---- HTML in a browser --------------------------------------------------------------------------


@pytest.mark.browser
def test_the_section_shows_and_copies_its_trial_sql(open_report: Any) -> None:
    report = verified(golden())
    page = open_report(report, 1440, name="verified")
    section_ = page.locator("#verified")
    expect(section_).to_be_visible()
    first = blockers(report)[0]
    art = page.locator(f"[id='v-{first['id']}']")
    expect(art.locator(".badge.vo")).to_have_text("restores OLD's plan")
    expect(art.locator("table.vstmts tbody tr")).to_have_count(len(first["verification"]["statements"]))
    expect(art.locator("pre.sql .tok-kw").first).to_have_text("BEGIN")  # highlighted like the fix script
    art.locator("button.copy").click()
    expect(art.locator("button.copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == first["verification"]["trial"]
    # the statement's attribution in the table, its note as the tooltip and in the detail
    regressed = next(s for s in report["statements"] if s["attribution"])
    row = page.locator(f"[id='stmt-{regressed['fingerprint']}']")
    attr = row.locator(".badge.attr")
    expect(attr).to_have_text("statistics")
    assert attr.get_attribute("title") == regressed["attribution_note"]
    row.locator("button.expand").click()
    expect(page.locator("#stmt-body tr.detail .sdetail .attribution")).to_contain_text(regressed["attribution_note"])
    # a statement of the section's table opens in the statements table
    art.locator("button.showstmt").first.click()
    expect(page.locator("#stmt-body tr.statement")).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#verified").screenshot(path=str(ARTIFACTS / "report-html-verified-1440.png"))
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0


@pytest.mark.browser
def test_hostile_verification_text_stays_inert_in_the_browser(open_report: Any) -> None:
    page = open_report(hostile(golden()), 1440, name="verified-hostile")
    row = page.locator("#stmt-body tr.statement[data-status=regressed]")
    expect(row.locator(".badge.attr")).to_have_attribute("title", HOSTILE_SCRIPT + HOSTILE_IMG)
    row.locator("button.expand").click()
    expect(page.locator("#stmt-body tr.detail .attribution")).to_contain_text(HOSTILE_SCRIPT)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    text = page.locator("#verified").inner_text()
    assert HOSTILE_SCRIPT in text and HOSTILE_IMG in text


# ---- Markdown -----------------------------------------------------------------------------------


def test_markdown_says_each_blockers_outcome_and_the_catalog_check() -> None:
    report = verified(golden())
    md = render_markdown(report)
    lines = md.splitlines()
    for f in blockers(report):
        line = next(x for x in lines if x.startswith(f"- **{esc(f['kind'])}**"))
        assert line.endswith(" — fix verified: " + {"restores_old_plan": "restores OLD's plan",
                                                     "improves": "improves"}[f["verification"]["outcome"]])
    assert "### Verified fixes" in md
    assert md.index("### Blockers") < md.index("### Verified fixes") < md.index("### Fix before cutover")
    verified_part = md[md.index("### Verified fixes"):md.index("### Fix before cutover")]
    for f in report["findings"]:
        if f["verification"]:
            assert esc(f["verification"]["summary"]) in verified_part
    assert "- NEW's catalog is unchanged: indexes, settings, sequences, pg\\_statistic" in verified_part
    assert esc(ANALYZE_SIDE_EFFECT) in verified_part
    changed = render_markdown(verified(golden(), changed=True))
    assert "**NEW's catalog changed during verification**" in changed
    assert esc("setting work_mem: 4MB before, 64MB after") in changed
    assert "Verified fixes" not in render_markdown(unverified(golden()))
    assert "fix verified" not in render_markdown(golden())


def test_markdown_keeps_hostile_verification_text_inert() -> None:
    md = render_markdown(hostile(golden()))
    part = md[md.index("### Verified fixes"):md.index("### Fix before cutover")]
    assert "<script" not in part and "<img" not in part and "&lt;script&gt;" in part


# ---- JUnit --------------------------------------------------------------------------------------


def test_junit_carries_the_outcome_of_each_blocking_finding() -> None:
    report = verified(golden())
    root = ET.fromstring(render_junit(report))
    suite = next(s for s in root if s.get("name") == "planguard.findings")
    for f in blockers(report):
        case = next(c for c in suite if c.get("classname") == f"planguard.findings.{f['kind']}")
        props = case.find("properties")
        assert props is not None and next(iter(case)) is props
        outcome = f["verification"]["outcome"]
        assert [(p.get("name"), p.get("value")) for p in props] == [("verification", outcome)]
        assert case.find("failure") is not None
        out = case.find("system-out")
        assert out is not None and f["verification"]["summary"] in (out.text or "")
    warning = next(c for c in suite if c.get("classname") == "planguard.findings.setting_diff")
    assert warning.find("properties") is None
    plain = ET.fromstring(render_junit(unverified(golden())))
    assert not plain.findall(".//testcase/properties")


def test_junit_with_hostile_verification_text_parses() -> None:
    report = hostile(golden())
    report["findings"][0]["verification"]["summary"] = "\x00\x1b]]></system-out>" + HOSTILE_SCRIPT
    root = ET.fromstring(render_junit(report))
    assert any("]]></system-out>" in (o.text or "") for o in root.iter("system-out"))

