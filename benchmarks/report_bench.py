"""The HTML report at scale: 5,000 statements built from the real recorded plans.

Run with ``.venv/bin/python -m benchmarks.report_bench``.  Judges the recorded postmortem
(tests/fixtures/recordings/demo_as_restored), repeats its statements to 5,000 with their
own fingerprints (the decisive sets keep their raw EXPLAIN plans, so every statement has
plan trees), renders the page, and prints its size, the render time, and what headless
Chromium measures: first contentful paint, the load event, the page's script done (table
and charts drawn), and opening the last statement's plans (its compressed chunk inflated).
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from planguard.config import Thresholds
from planguard.judge import comparison_of
from planguard.loader import load
from planguard.recording import Recording
from planguard.report import to_dict
from planguard.report.html import render_html
from tests.fixtures.big_report import replicate

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recordings"


def browser_figures(path: Path) -> dict[str, float] | None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        return None
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(path.as_uri(), wait_until="load", timeout=120_000)
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        figures: dict[str, float] = page.evaluate("""() => {
            const fcp = performance.getEntriesByName('first-contentful-paint')[0];
            const nav = performance.getEntriesByType('navigation')[0];
            return {fcp: fcp ? fcp.startTime : -1, load: nav.loadEventEnd, ready: performance.now()};
        }""")
        page.locator("#stmt-table th[data-key=status]").click()
        page.locator("#stmt-table th[data-key=status]").click()  # the last statements first
        started = time.perf_counter()
        page.locator("#stmt-body tr.statement button.expand").first.click()
        page.wait_for_selector("#stmt-body tr.detail .sdetail", timeout=60_000)
        figures["open_detail"] = (time.perf_counter() - started) * 1000
        browser.close()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--statements", type=int, default=5000)
    args = ap.parse_args()
    name = "demo_as_restored"
    result = comparison_of(load(RECORDINGS / f"{name}.workload.json"),
                           Recording.load(RECORDINGS / f"{name}.recording.json"),
                           Thresholds(), repeat=5, redact=False, started_at="recorded", duration_s=0.0)
    context = replicate(to_dict(result), args.statements)
    started = time.perf_counter()
    page = render_html(context)
    render_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(page, encoding="utf-8")
        size_mb = path.stat().st_size / 1e6
        print(f"HTML report, {args.statements:,} statements: {size_mb:.1f} MB, rendered in {render_s:.1f} s")
        figures = browser_figures(path)
    if figures is None:
        print("  chromium not installed: no browser figures")
        return
    print(f"  Chromium: first contentful paint {figures['fcp']:.0f} ms, load event {figures['load']:.0f} ms, "
          f"table and charts drawn {figures['ready']:.0f} ms, last statement's plans opened in "
          f"{figures['open_detail']:.0f} ms")


if __name__ == "__main__":
    main()
