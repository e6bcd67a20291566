"""A page in a real Chromium (Playwright), for the script-less HTML pages (watch, rehearse).

``opened(path)`` skips the test when Chromium is not installed (``make sysdeps`` installs it as
root), and on leaving asserts that the page logged no error and requested nothing but files.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("chromium is not installed (make sysdeps installs it as root)")
    return path


@contextlib.contextmanager
def opened(path: Path, width: int = 1300, height: int = 900) -> Iterator[Any]:
    """``path`` open in a fresh Chromium page; a screenshot of it is left next to it on success."""
    exe = chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            yield page
            page.screenshot(path=str(path.with_suffix(".png")), full_page=True)
        finally:
            browser.close()
    assert errors == [], errors
    assert all(u.startswith("file://") for u in requests), requests
