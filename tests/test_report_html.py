"""The HTML report rendered from real recorded comparisons, looked at in a real Chromium.

The recordings of the demo's postmortem (tests/fixtures/recordings) are judged again and
rendered; the page is opened in headless Chromium (Debian's, never a downloaded one) with
no network: the tests click what a reviewer clicks (sort, filter, expand a plan, copy) and
assert on what the page then shows. A hostile report (markup and script in statement text,
identifiers, parameter values and plans) must show that text literally and run nothing.
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from planguard.config import Thresholds
from planguard.judge import comparison_of
from planguard.loader import load
from planguard.recording import Recording
from planguard.report import html as html_mod
from planguard.report import to_dict
from planguard.report.html import pretty_sql, render_html
from tests.fixtures.big_report import replicate
from tests.fixtures.record_recordings import OUT

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE_SCRIPT = "</script><script>window.pwned=1</script>"
HOSTILE_IMG = '"><img src=x onerror=window.pwned=1>'


def judged(name: str) -> dict[str, Any]:
    """A recorded comparison judged again, as the JSON contract."""
    result = comparison_of(load(OUT / f"{name}.workload.json"), Recording.load(OUT / f"{name}.recording.json"),
                           Thresholds(), repeat=5, redact=False, started_at="recorded", duration_s=0.0)
    return to_dict(result)


@pytest.fixture(scope="module")
def restored() -> dict[str, Any]:
    return judged("demo_as_restored")


@pytest.fixture(scope="module")
def analyzed() -> dict[str, Any]:
    return judged("demo_after_analyze")


# ---- the page as text -----------------------------------------------------------------------

def test_the_page_allows_only_its_own_script(restored: dict[str, Any]) -> None:
    page = render_html(restored)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    code = [body for attrs, body in scripts if "application/json" not in attrs]
    assert len(code) == 1, "one inline script, the page's own"
    digest = base64.b64encode(hashlib.sha256(code[0].encode()).digest()).decode()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp and csp.group(1) == (f"default-src 'none'; style-src 'unsafe-inline'; "
                                    f"script-src 'sha256-{digest}'; img-src data:")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the report must load nothing"
    for attrs, body in scripts:
        if "application/json" in attrs:
            assert "<" not in body, "a data block cannot close its element"
            json.loads(body)


def test_the_verdict_comes_first_with_one_line_per_blocker(restored: dict[str, Any]) -> None:
    page = render_html(restored)
    verdict = page[page.index('id="verdict"'):page.index("</section>", page.index('id="verdict"'))]
    blockers = [f for f in restored["findings"] if f["severity"] == "blocker"]
    links = re.findall(r'<li><a href="#f-([^"]+)">', verdict)
    assert links == [f["id"] for f in blockers]
    for f in restored["findings"]:
        assert f'id="f-{f["id"]}"' in page
    assert page.index('id="verdict"') < page.index('id="fix"') < page.index('id="summary"')


def test_the_summary_says_how_and_when_the_workload_was_captured(restored: dict[str, Any]) -> None:
    page = render_html(restored)
    window = re.search(r'id="stats-window">([^<]*)<', page)
    assert window and "of production traffic, since the reset at" in window.group(1)
    assert f"{restored['workload']['calls']:,} calls in pg_stat_statements" in page
    assert "calls/s over the captured statements" in page
    unknown = {**restored, "workload": {**restored["workload"], "stats_window_seconds": None,
                                        "calls_per_second": None}}
    assert "unknown (no reset time)" in render_html(unknown)


def test_sql_is_pretty_printed_or_kept_as_it_is() -> None:
    assert pretty_sql("select a from t where b = $1") == "SELECT a\nFROM t\nWHERE b = $1"
    assert pretty_sql("select from where )(") == "select from where )("


# ---- the page in a browser ------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make sysdeps installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


class Opened:
    """A report open in a fresh browser context, with what it logged and requested."""

    def __init__(self, browser: Any, path: Path, width: int = 1440) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.context = browser.new_context(viewport={"width": width, "height": 1000},
                                           permissions=["clipboard-read", "clipboard-write"])
        self.page = self.context.new_page()
        self.page.set_default_timeout(10_000)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready='1']")

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors
        assert all(u.startswith("file://") for u in self.requests), self.requests


@pytest.fixture
def open_report(browser: Any, tmp_path: Path) -> Iterator[Any]:
    opened: list[Opened] = []

    def go(context: dict[str, Any], width: int = 1440, name: str = "report") -> Any:
        path = tmp_path / f"{name}.html"
        path.write_text(render_html(context), encoding="utf-8")
        o = Opened(browser, path, width)
        opened.append(o)
        return o.page

    yield go
    for o in opened:
        o.close()


def shown_statuses(page: Any) -> list[str]:
    return page.locator("#stmt-body tr.statement").evaluate_all("rs => rs.map(r => r.dataset.status)")


def test_verdict_summary_and_charts(open_report: Any, restored: dict[str, Any]) -> None:
    page = open_report(restored)
    assert page.locator("#verdict .decision").inner_text() == "NO-GO"
    blockers = [f for f in restored["findings"] if f["severity"] == "blocker"]
    expect(page.locator("#verdict ol.blockers li")).to_have_count(len(blockers))
    page.locator("#verdict ol.blockers a").first.click()
    assert page.evaluate("location.hash") == f"#f-{blockers[0]['id']}"
    expect(page.locator(f"[id='f-{blockers[0]['id']}']")).to_be_visible()
    assert page.locator("#impact").inner_text().count("average active sessions") == 1
    # one point per parameter set timed on both sides, regressions coloured
    points = sum(1 for s in restored["statements"] for p in s["param_sets"]
                 if p["old"]["median_ms"] and p["new"]["median_ms"])
    expect(page.locator("#chart-scatter circle")).to_have_count(points)
    regressed = sum(1 for s in restored["statements"] for p in s["param_sets"] if p["status"] == "regressed"
                    and p["old"]["median_ms"] and p["new"]["median_ms"])
    assert regressed > 0
    expect(page.locator("#chart-scatter circle.pt-bad")).to_have_count(regressed)
    expect(page.locator("#chart-scatter line.diag")).to_have_count(1)
    adding = [s for s in restored["statements"] if (s["impact"] or {}).get("extra_active_sessions", 0) > 0]
    expect(page.locator("#chart-bars rect.bar")).to_have_count(min(10, len(adding)))
    page.locator("#chart-bars rect.bar").first.click()  # a bar opens its statement
    expect(page.locator("#stmt-body tr.statement")).to_have_count(1)
    expect(page.locator("#stmt-body tr.detail .sdetail")).to_be_visible()


def test_sorting_and_filtering_change_the_rows(open_report: Any, restored: dict[str, Any]) -> None:
    page = open_report(restored)
    stmts = restored["statements"]
    expect(page.locator("#stmt-body tr.statement")).to_have_count(len(stmts))
    page.locator("#stmt-table th[data-key=ratio]").click()  # biggest slowdown first
    ratios = sorted((s["time_ratio"] for s in stmts if s["time_ratio"] is not None), reverse=True)
    shown = page.locator("#stmt-body tr.statement td:nth-child(7)").all_inner_texts()
    assert shown[0] == f"{ratios[0]:,.0f}" and shown_statuses(page)[0] == "regressed"
    page.locator("#stmt-table th[data-key=ratio]").click()  # and the other way round
    assert page.locator("#stmt-table th[data-key=ratio]").get_attribute("aria-sort") == "ascending"
    assert page.locator("#stmt-body tr.statement td:nth-child(7)").first.inner_text() == f"{ratios[-1]:.2f}"
    page.locator("#stmt-table th[data-key=q]").click()
    texts = page.locator("#stmt-body code.q").all_inner_texts()
    assert texts[0].startswith("INSERT") and texts[-1].startswith("UPDATE")

    page.select_option("#f-status", "regressed")
    assert shown_statuses(page) == ["regressed"] * sum(1 for s in stmts if s["status"] == "regressed")
    page.select_option("#f-status", "")
    page.select_option("#f-table", "public.accounts")
    expected = {s["fingerprint"] for s in stmts if "public.accounts" in s["tables"]}
    shown_ids = set(page.locator("#stmt-body tr.statement").evaluate_all("rs => rs.map(r => r.id.slice(5))"))
    assert shown_ids == expected and expected
    page.select_option("#f-table", "")
    page.fill("#f-text", "ORDER BY created_at DESC")
    assert page.locator("#stmt-body tr.statement").count() == sum(
        1 for s in stmts if "order by created_at desc" in s["query"].lower())
    page.fill("#f-text", "")
    page.fill("#f-ratio", "10")
    assert shown_statuses(page) == ["regressed"]
    page.fill("#f-ratio", "")
    page.fill("#f-aas", "0.1")
    assert shown_statuses(page) == ["regressed"]
    page.fill("#f-aas", "")
    page.select_option("#f-kind", "insert")
    assert page.locator("#stmt-body code.q").all_inner_texts() == [
        s["query"] for s in stmts if s["kind"] == "insert"]
    page.fill("#f-text", "no such statement anywhere")
    expect(page.locator("#stmt-body tr.statement")).to_have_count(0)
    assert "No statement matches" in page.locator("#stmt-body").inner_text()


def _raw_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """A raw plan's nodes depth first, "Plans" in order (a plan tree node's id is its place)."""
    return [plan, *(n for c in plan.get("Plans", ()) for n in _raw_nodes(c))]


def test_a_plan_tree_expands_and_highlights_its_changed_node(open_report: Any, restored: dict[str, Any]) -> None:
    page = open_report(restored)
    row = page.locator("#stmt-body tr.statement[data-status=regressed]").first
    row.locator("button.expand").click()
    detail = page.locator("#stmt-body tr.detail .sdetail").first
    plan = detail.locator(".plan").first
    expect(plan).to_be_visible()
    assert detail.locator("pre.sql").first.inner_text().startswith("SELECT id\n")  # pretty-printed
    # the decisive set: OLD's index scan against NEW's bitmap heap scan, NEW's marked changed
    new_changed = plan.locator(".pcell.changed[data-side=new]")
    assert new_changed.count() >= 1
    assert "Bitmap Heap Scan" in " ".join(new_changed.all_inner_texts())
    old_cells = plan.locator(".pcell[data-side=old]").all_inner_texts()
    assert any("Index Scan" in t and "transactions_tenant_created_idx" in t for t in old_cells)
    # collapsing NEW's root hides its subtree on both sides (the root's pair folds with it)
    visible_before = plan.locator(".pcell[data-side=new]:visible").count()
    plan.locator(".pcell[data-side=new]").first.locator(".tw").click()
    assert plan.locator(".pcell[data-side=new]:visible").count() < visible_before
    plan.locator("button", has_text="expand all").click()
    expect(plan.locator(".pcell[data-side=new]:visible")).to_have_count(visible_before)
    # a node's conditions on a click, the raw EXPLAIN JSON on another; what EXPLAIN says of the
    # node (rows, buffers, relation, conditions) is read from the raw plan, node for node
    cell = plan.locator(".pcell[data-side=new]", has=page.locator(".lbl", has_text="Bitmap Heap Scan")).first
    cell.locator(".lbl").click()
    stmt = restored["statements"][int(row.get_attribute("data-i") or -1)]
    decisive = next(p for p in stmt["param_sets"] if p["label"] == stmt["decisive_param_set"])
    raw = _raw_nodes(decisive["new"]["plan_json"])[int(cell.get_attribute("data-node") or -1)]
    assert raw["Node Type"] == "Bitmap Heap Scan"
    meta, node_detail = cell.locator(".pmeta").inner_text(), cell.locator(".pdetail").inner_text()
    def shown(v: float) -> str:  # as the page prints rows: 19,072 -> 19k
        return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v:,.0f}"
    assert f"rows {shown(raw['Plan Rows'])} est → {shown(raw['Actual Rows'])}" in meta, meta
    assert f"shared hit {raw['Shared Hit Blocks']:,}, read {raw['Shared Read Blocks']:,}" in node_detail
    assert f"{raw['Schema']}.{raw['Relation Name']}" in node_detail and raw["Recheck Cond"] in node_detail
    plan.locator("button.rawbtn").click()
    raw = plan.locator("pre.rawjson")
    assert raw.count() == 2 and '"Node Type": "Limit"' in raw.first.inner_text()
    # the generic plan is built when it is opened
    generic = detail.locator("details.generic").first
    generic.locator("summary").click()
    expect(generic.locator(".plan, pre").first).to_be_visible()


def test_copy_buttons_copy_the_right_text(open_report: Any, restored: dict[str, Any]) -> None:
    page = open_report(restored)

    def clipboard(expected: str) -> str:
        """The clipboard once it holds ``expected`` (writing it is asynchronous), or as it is."""
        for _ in range(50):
            text: str = page.evaluate("navigator.clipboard.readText()")
            if text == expected:
                break
            page.wait_for_timeout(100)
        return text

    page.locator("#fix button.copy").first.click()
    assert clipboard(restored["fix_script"]["sql"]) == restored["fix_script"]["sql"]
    f = next(f for f in restored["findings"] if f["remediation"])
    page.locator(f"[id='f-{f['id']}'] button.copy").click()
    assert clipboard(f["remediation"]) == f["remediation"]
    page.locator("#stmt-body tr.statement[data-status=regressed] button.expand").click()
    page.locator("#stmt-body tr.detail .sdetail > .codebox button.copy").click()
    regressed = next(s for s in restored["statements"] if s["status"] == "regressed")
    assert clipboard(pretty_sql(regressed["query"])) == pretty_sql(regressed["query"])
    # without the Clipboard API: a selected textarea and execCommand
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})")
    page.evaluate("document.addEventListener('copy', e => { window.copied = document.getSelection().toString()"
                  " || document.activeElement.value.slice(document.activeElement.selectionStart,"
                  " document.activeElement.selectionEnd); })")
    page.locator("#fix button.copy").first.click()
    page.wait_for_function("t => window.copied === t", arg=restored["fix_script"]["sql"], timeout=5000)
    assert page.evaluate("window.copied") == restored["fix_script"]["sql"]


@pytest.mark.parametrize("width", [1440, 1024])
def test_screenshots(open_report: Any, restored: dict[str, Any], analyzed: dict[str, Any], width: int) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_report(analyzed, width, name="after")
    assert page.locator("#verdict .decision").inner_text() == "GO"
    page.screenshot(path=str(ARTIFACTS / f"report-html-after-{width}.png"), full_page=False)
    page = open_report(restored, width, name="before")
    page.screenshot(path=str(ARTIFACTS / f"report-html-{width}.png"), full_page=True)
    page.locator("#stmt-body tr.statement[data-status=regressed] button.expand").click()
    detail = page.locator("#stmt-body tr.detail").first
    expect(detail.locator(".plan")).to_be_visible()
    detail.screenshot(path=str(ARTIFACTS / f"report-html-plan-{width}.png"))
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "the page does not scroll sideways"


def hostile(context: dict[str, Any]) -> dict[str, Any]:
    """The report with markup and script in every place a database or a user writes text."""
    bad = HOSTILE_SCRIPT + HOSTILE_IMG
    c = copy.deepcopy(context)
    c["old"]["dsn"] = bad
    c["workload"]["database"] = bad
    s = c["statements"][0]
    s["query"] = f"SELECT '{HOSTILE_SCRIPT}' AS \"{HOSTILE_IMG}\" FROM t WHERE a = $1"
    s["tables"] = [bad]
    s["reason"] = bad
    for st in c["statements"]:
        st["changes"] = [{"kind": "index_changed", "detail": bad}]
        for p in st["param_sets"]:
            p["values"] = [bad for _ in p["values"]] or [bad]
            p["sources"] = [bad for _ in p["sources"]] or [bad]
            for side in ("old", "new"):
                p[side]["plan_text"] = bad
                pj = p[side].get("plan_json")
                if pj:
                    pj["Relation Name"] = bad
                    pj["Index Name"] = bad
                    pj["Filter"] = bad
                    pj["Node Type"] = pj["Node Type"] + HOSTILE_IMG
    for f in c["findings"]:
        f["object"] = f["message"] = f["remediation"] = f["headline"] = bad
    if c["fix_script"]:
        c["fix_script"]["sql"] = bad
        for st in c["fix_script"]["steps"]:
            st["sql"] = st["note"] = bad
    return c


def test_hostile_text_stays_inert_and_shows_literally(open_report: Any, restored: dict[str, Any]) -> None:
    page = open_report(hostile(restored))
    for k in range(page.locator("#stmt-body tr.statement").count()):  # build every detail
        page.locator("#stmt-body tr.statement button.expand").nth(k).click()
    page.locator("#stmt-body button.rawbtn").first.click()
    for d in page.locator("details.generic").all():
        d.locator("summary").click()
    page.locator("#stmt-body .pcell .lbl").first.click()
    page.wait_for_timeout(100)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 3  # the page's own: two data blocks and its code
    text = page.locator("body").inner_text()
    assert HOSTILE_SCRIPT in text and HOSTILE_IMG in text
    assert page.locator("#verdict li", has_text=HOSTILE_SCRIPT).count() >= 1
    expect(page.locator("#stmt-body code.q", has_text=HOSTILE_SCRIPT)).to_have_count(1)
    assert page.locator("#stmt-body code.val", has_text=HOSTILE_IMG).count() >= 1


def test_a_big_report_pages_and_inflates_details_lazily(open_report: Any, restored: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_mod, "COMPRESS_ABOVE", 10_000)
    big = replicate(restored, 180)
    page = open_report(big)
    assert page.locator("#pg-detail").get_attribute("data-encoding") == "gzip"
    expect(page.locator("#stmt-body tr.statement")).to_have_count(50)
    assert "page 1 of 4" in page.locator("#pager").inner_text()
    page.locator("#pager button.next").click()
    page.locator("#pager button.next").click()
    assert "page 3 of 4" in page.locator("#pager").inner_text()
    page.select_option("#f-status", "regressed")
    rows = page.locator("#stmt-body tr.statement")
    assert rows.count() == sum(1 for s in big["statements"] if s["status"] == "regressed")
    rows.last.locator("button.expand").click()  # a statement of the last chunk
    plan = page.locator("#stmt-body tr.detail .plan").first
    expect(plan.locator(".pcell.changed").first).to_be_visible()
    # its raw plans and what they say of each node are back in place
    plan.locator(".pcell[data-side=new] .lbl", has_text="Bitmap Heap Scan").first.click()
    assert "Recheck Cond" in plan.locator(".pdetail").first.inner_text()
    plan.locator("button.rawbtn").click()
    assert '"Node Type": "Limit"' in plan.locator("pre.rawjson").first.inner_text()
    generic = page.locator("#stmt-body tr.detail details.generic").first
    generic.locator("summary").click()
    expect(generic.locator(".plan, pre").first).to_be_visible()


def test_a_readiness_check_renders_without_statements(open_report: Any, restored: dict[str, Any]) -> None:
    check = {**copy.deepcopy(restored), "kind": "check", "statements": [], "workload": None, "impact": None,
             "noise": None, "load": None, "coverage": None, "fix_script": None, "tables": []}
    page = open_report(check)
    assert page.locator("#verdict .decision").inner_text() == "NO-GO"
    assert page.locator("#statements").count() == 0 and page.locator("#findings .finding").count() > 0


def test_a_plan_of_160_nodes_stays_readable(open_report: Any, restored: dict[str, Any]) -> None:
    """A real 163-node plan (an aggregate over 160 partitions, PostgreSQL 15 and 18): the tree
    opens folded to what matters, unfolds on demand, and the page does not overflow."""
    big = copy.deepcopy(restored)
    plans = {v: json.loads((OUT.parent / "plans" / f"pg{v}_many_partitions.json").read_text())["explain"][0]["Plan"]
             for v in (15, 18)}
    stmt = next(s for s in big["statements"] if s["status"] == "regressed")
    dec = next(p for p in stmt["param_sets"] if p["label"] == stmt["decisive_param_set"])
    dec["old"]["plan_json"], dec["new"]["plan_json"] = plans[15], plans[18]
    page = open_report(big, 1024, name="big-plan")
    page.locator("#stmt-body tr.statement[data-status=regressed] button.expand").click()
    plan = page.locator("#stmt-body tr.detail .sdetail .plan").first
    expect(plan).to_be_visible()
    cells = plan.locator(".pcell[data-side=new]")
    expect(cells).to_have_count(163)
    folded = plan.locator(".pcell[data-side=new]:visible").count()
    assert 1 <= folded < 40, folded  # the quiet partitions' scans start folded
    quiet = plan.locator(".pcell[data-side=new] button.quiet")
    expect(quiet).to_have_count(1)
    assert quiet.inner_text().startswith("+") and quiet.inner_text().endswith(" quiet")
    quiet.click()  # the Append's quiet children, on demand
    expect(plan.locator(".pcell[data-side=new]:visible")).to_have_count(folded + int(quiet.inner_text().split()[2]))
    quiet.click()
    expect(plan.locator(".pcell[data-side=new]:visible")).to_have_count(folded)
    plan.locator("button", has_text="expand all").click()
    expect(plan.locator(".pcell[data-side=new]:visible")).to_have_count(163)
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    ARTIFACTS.mkdir(exist_ok=True)
    plan.screenshot(path=str(ARTIFACTS / "report-html-plan-163-nodes.png"))


def _unpacked(chunk: list[Any]) -> list[dict[str, Any]]:
    """A compressed chunk's details with their plans put back, as report.js does."""
    details, trees, raws = chunk
    pairs = [x for d in details for p in d["param_sets"] for x in ([p, p["generic"]] if p["generic"] else [p])]
    assert len(pairs) == len(trees) == len(raws)
    for x, tree, (old, new) in zip(pairs, trees, raws, strict=True):
        x["plans"], x["old"]["plan_json"], x["new"]["plan_json"] = tree, old, new
    return list(details)


def test_big_details_are_compressed_chunk_by_chunk_and_reproducibly(restored: dict[str, Any],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Past COMPRESS_ABOVE the details are built and compressed CHUNK statements at a time
    (in forked workers, with more than one core): the chunks inflate to exactly the details of
    those statements, and the same report renders to the same bytes (no date in the gzip
    headers), built in parallel or one chunk after the other."""
    monkeypatch.setattr(html_mod, "COMPRESS_ABOVE", 10_000)
    big = replicate(restored, 120)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    page = render_html(big)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if (os.cpu_count() or 1) > 1 and threading.active_count() == 1:  # the workers built chunks 2 and 3
        assert after.ru_utime + after.ru_stime > before.ru_utime + before.ru_stime
    assert page == render_html(big)
    with monkeypatch.context() as one_core:
        one_core.setattr(html_mod.os, "cpu_count", lambda: 1)
        assert render_html(big) == page
    m = re.search(r'id="pg-detail"[^>]*>(.*?)</script>', page, re.S)
    assert m
    block = json.loads(m.group(1))
    assert block["size"] == html_mod.CHUNK
    inflated = [_unpacked(json.loads(gzip.decompress(base64.b64decode(c)))) for c in block["chunks"]]
    statements = big["statements"]
    assert len(inflated) == -(-len(statements) // html_mod.CHUNK)
    expected = [json.loads(html_mod._json([html_mod._detail(s) for s in statements[k:k + html_mod.CHUNK]]))
                for k in range(0, len(statements), html_mod.CHUNK)]
    assert inflated == expected
    monkeypatch.setattr(html_mod, "COMPRESS_ABOVE", 10**9)
    m = re.search(r'id="pg-detail" data-encoding="(\w+)"', render_html(big))
    assert m and m.group(1) == "json"
