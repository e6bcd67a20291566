"""The postmortem scenario end to end: NO-GO as restored, GO after ANALYZE.

Through the real CLI (exit codes), the JSON contract, the HTML report, and the
report rendered in a real Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from planguard.calls import STATUSES
from planguard.demo import load_old, restore_new
from planguard.findings import CAUSES
from tests.conftest import Pair

pytestmark = [pytest.mark.db, pytest.mark.slow]
ARTIFACTS = Path(__file__).parent / "artifacts"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planguard.cli", *args], capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def scenario(clusters: Pair, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the scenario once, compare as restored and after ANALYZE, keep all outputs."""
    from tests.conftest import create_db, drop_db

    name = "demo_e2e"
    tmp = tmp_path_factory.mktemp("demo")
    old_dsn, new_dsn = create_db(clusters.old, name), create_db(clusters.new, name)
    try:
        load_old(clusters.old, rows=200_000, iterations=400, dbname=name)
        restore_new(clusters.old, clusters.new, tmp, dbname=name)
        wl = tmp / "workloads" / "demo.json"
        cap = cli("capture", "--dsn", old_dsn, "--top", "20", "-o", str(wl), "-q")
        assert cap.returncode == 0, cap.stderr
        before = cli("compare", old_dsn, new_dsn, "-w", str(wl), "-o", str(tmp / "before.html"),
                     "--json", str(tmp / "before.json"), "-q", "--runs", str(tmp / "runs.csv"),
                     "--save-recording", str(tmp / "before.recording.json"))
        with psycopg.connect(new_dsn, autocommit=True) as conn:
            conn.execute("ANALYZE")
        after = cli("compare", old_dsn, new_dsn, "-w", str(wl), "-o", str(tmp / "after.html"),
                    "--json", str(tmp / "after.json"), "-q")
        yield {"tmp": tmp, "before": before, "after": after,
               "before_json": json.loads((tmp / "before.json").read_text()),
               "after_json": json.loads((tmp / "after.json").read_text())}
    finally:
        drop_db(clusters.old, name)
        drop_db(clusters.new, name)


def test_as_restored_is_no_go_with_the_right_reasons(scenario: dict) -> None:
    res, report = scenario["before"], scenario["before_json"]
    assert res.returncode == 1, res.stderr
    assert res.stdout.startswith("NO-GO")
    assert report["verdict"] == "NO-GO" and report["exit_code"] == 1
    blockers = {(f["kind"], f["object"]) for f in report["findings"] if f["severity"] == "blocker"}
    assert ("never_analyzed", "public.transactions") in blockers
    assert ("never_analyzed", "public.accounts") not in blockers  # analyzed after the restore
    regressions = [f for f in report["findings"] if f["kind"] == "plan_regression"]
    assert regressions, "the tenant listing must regress"
    msg = regressions[0]["message"]
    assert "transactions_status_tenant_idx" in msg and "OLD never used (idx_scan = 0)" in msg
    assert "public.transactions has never been analyzed on NEW" in msg
    assert {c["kind"] for c in regressions[0]["causes"]} >= {"never_analyzed", "harmful_index"}
    assert ("table", "public.transactions") in [(c["subject"]["type"], c["subject"]["name"])
                                                for c in regressions[0]["causes"] if c["subject"]]
    assert "ANALYZE public.transactions;" in regressions[0]["remediation"]
    listing = next(s for s in report["statements"] if "ORDER BY created_at DESC LIMIT" in s["query"])
    assert listing["status"] == "regressed" and listing["time_ratio"] > 10
    assert listing["new"]["indexes"] == ["transactions_status_tenant_idx"]
    assert listing["old"]["indexes"] == ["transactions_tenant_created_idx"]


def test_after_analyze_is_go(scenario: dict) -> None:
    res, report = scenario["after"], scenario["after_json"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert report["verdict"] == "GO"
    assert report["summary"]["regressed"] == 0 and report["summary"]["error"] == 0
    assert not [f for f in report["findings"] if f["severity"] == "blocker"]


def test_json_contract(scenario: dict) -> None:
    report = scenario["before_json"]
    assert report["format_version"] == 1
    assert set(report) >= {"verdict", "reasons", "old", "new", "statements", "findings", "noise", "load",
                           "coverage"}
    assert re.match(r"\d+", report["old"]["server_version"])
    assert set(report["summary"]) == set(STATUSES)
    assert report["coverage"]["share"] == 1.0 and report["coverage"]["statements"] == len(report["statements"])
    assert report["load"]["old"]["executions"] > 0 and report["load"]["new"]["server_ms"] > 0
    assert [c["class"] for c in report["noise"]["classes"]] == ["< 1 ms", "1-10 ms", "10-100 ms", ">= 100 ms"]
    for s in report["statements"]:
        assert set(s) >= {"fingerprint", "query", "calls", "status", "old", "new", "changes"}
        assert s["status"] in STATUSES
        for side in ("old", "new"):
            assert set(s[side]) >= {"median_ms", "shared_buffers", "plan_fingerprint", "indexes", "error",
                                    "times_ms", "warmup"}
        for c in s["changes"]:
            assert set(c) == {"kind", "detail"}
        for p in s["param_sets"]:
            assert len(p["sources"]) == len(p["values"]) and all(p["sources"])
            assert set(p["guessed"]) <= set(range(1, len(p["values"]) + 1))
            if p["old"]["runs"] > 1 and p["new"]["runs"] > 1:
                assert p["timing"]["paired"] and p["timing"]["runs"] == min(p["old"]["runs"], p["new"]["runs"])
    tables = {t["name"]: t for t in report["tables"]}  # NEW's statistics of the tables it touches
    assert tables["public.transactions"]["columns_with_stats"] == 0
    assert tables["public.accounts"]["columns_with_stats"] > 0
    for f in report["findings"]:
        assert set(f) == {"id", "kind", "severity", "object", "message", "headline", "extra_active_sessions",
                          "remediation", "subject", "causes", "verification"}
        assert f["verification"] is None  # the demo does not --verify-fixes
        assert f["subject"] is None or set(f["subject"]) == {"type", "name", "scope", "database"}
        for c in f["causes"]:
            assert set(c) == {"kind", "detail", "fix", "subject"} and c["kind"] in CAUSES
        assert re.fullmatch(r"[a-z_]+", f["kind"]) and f["severity"] in {"blocker", "warning", "info"}


def test_the_runs_table_and_the_recording_keep_the_evidence(scenario: dict) -> None:
    """--runs: every measured run, pairs sharing their number; --save-recording: judged again
    without a server, the same verdict and findings."""
    import pandas as pd

    from planguard.config import Thresholds
    from planguard.judge import comparison_of
    from planguard.loader import load
    from planguard.recording import Recording

    tmp, report = scenario["tmp"], scenario["before_json"]
    runs = pd.read_csv(tmp / "runs.csv")
    assert set(runs["side"]) == {"old", "new"} and {"custom", "generic"} <= set(runs["mode"])
    counted = sum(s[side]["runs"] for st in report["statements"] for s in st["param_sets"] for side in ("old", "new"))
    assert len(runs[runs["mode"] == "custom"]) == counted
    pairs = runs.pivot_table(index=["statement", "param_set", "mode", "run"], columns="side",
                             values="execution_ms", aggfunc="count")
    assert (pairs["old"] == pairs["new"]).all(), "every run has its pair on the other side"
    again = comparison_of(load(tmp / "workloads" / "demo.json"), Recording.load(tmp / "before.recording.json"),
                          Thresholds(), repeat=5, redact=False, started_at="", duration_s=0.0)
    assert again.verdict.decision == report["verdict"]
    assert sorted((f.kind, f.object) for f in again.findings) == sorted(
        (f["kind"], f["object"]) for f in report["findings"])


def test_html_is_self_contained_and_escaped(scenario: dict) -> None:
    html = (scenario["tmp"] / "before.html").read_text()
    assert "NO-GO" in html and "never_analyzed" in html and "ANALYZE public.transactions;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the report must load nothing"
    assert "Content-Security-Policy" in html and html.count("<script>") == 1  # only its own code, by hash
    assert html.count("</script>") == 3  # two data blocks and the code: no text closed one early
    assert "&lt;" in html or "\\u003c" in html  # SQL with comparison operators is escaped


@pytest.mark.browser
def test_report_in_a_real_browser(scenario: dict) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium is not installed (make sysdeps installs it as root)")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for name in ("before", "after"):
            page.goto((scenario["tmp"] / f"{name}.html").as_uri())
            banner = page.locator("#verdict .decision")
            assert banner.inner_text() == ("NO-GO" if name == "before" else "GO")
            expect(banner).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=False)
        page.goto((scenario["tmp"] / "before.html").as_uri())
        page.wait_for_selector("body[data-ready='1']")
        page.locator("#stmt-body tr.statement[data-status=regressed] button.expand").first.click()
        regressed = page.locator("#stmt-body tr.detail[data-status=regressed]").first
        expect(regressed.locator(".plan").first).to_be_visible()  # the plan trees open
        assert regressed.locator(".plan .pcell.changed").count() > 0
        regressed.locator("details.generic > summary").first.click()
        generic = regressed.locator("details.generic .plan, details.generic pre").first
        expect(generic).to_be_visible()  # and the generic plans
        page.screenshot(path=str(ARTIFACTS / "report-before-details.png"), full_page=True)
        browser.close()
    assert all(u.startswith("file://") for u in requests), requests
    assert errors == [], errors


def test_demo_command_builds_its_own_clusters(tmp_path: Path) -> None:
    res = cli("demo", "--rows", "100000", "--workdir", str(tmp_path), "--repeat", "3", "-q")
    assert res.returncode == 0, res.stderr
    assert "As restored" in res.stdout and "NO-GO" in res.stdout
    assert "After ANALYZE on NEW:\nGO" in res.stdout
    # The fix is proved on NEW before it is applied (rolled back), and the report says so.
    assert ("fix tried on NEW (rolled back): never_analyzed public.transactions: restores_old_plan: "
            "ANALYZE public.transactions restores") in res.stdout
    tried = [line for line in res.stdout.splitlines() if "fix tried on NEW" in line]
    assert len(tried) == len(set(tried)) >= 2  # one line a blocker, each naming it
    report = json.loads((tmp_path / "reports/demo.json").read_text())
    assert report["verification"]["catalog_unchanged"]
    never = next(f for f in report["findings"] if f["kind"] == "never_analyzed")
    assert never["verification"]["outcome"] == "restores_old_plan"
    for f in ("reports/demo.html", "reports/demo.json", "reports/demo-after-analyze.html",
              "workloads/demo.json"):
        assert (tmp_path / f).is_file(), f
