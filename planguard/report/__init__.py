"""Reports of a comparison: JSON for machines (the contract in docs/json-contract.md),
a self-contained HTML page for reviewers.  Both render from one context object."""

from __future__ import annotations

from pathlib import Path

from planguard.compare import Comparison
from planguard.report.html import render_html
from planguard.report.json import dump_json, to_dict

__all__ = ["dump_json", "render_html", "to_dict", "write_reports"]


def write_reports(comparison: Comparison, html: Path | None, json: Path | None) -> dict[str, Path]:
    """Write the requested reports (creating folders); returns {"html": path, "json": path}."""
    written: dict[str, Path] = {}
    context = to_dict(comparison)
    if json is not None:
        json.parent.mkdir(parents=True, exist_ok=True)
        json.write_text(dump_json(context))
        written["json"] = json
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(context))
        written["html"] = html
    return written
