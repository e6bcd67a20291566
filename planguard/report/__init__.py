"""Reports of a comparison: JSON for machines (the contract in docs/json-contract.md),
a self-contained HTML page for reviewers.  Both render from one context object."""

from __future__ import annotations

from pathlib import Path

from planguard.errors import PlanguardError
from planguard.model import CheckResult, Comparison
from planguard.report.html import render_html
from planguard.report.json import check_to_dict, dump_json, to_dict

__all__ = ["check_to_dict", "check_writable", "dump_json", "render_html", "to_dict", "write_reports"]


def check_writable(paths: list[Path]) -> None:
    """Fail now, before minutes of measurements, if an output cannot be written."""
    for path in paths:
        try:
            if path.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            existed = path.exists()
            with path.open("a"):
                pass
            if not existed:
                path.unlink()
        except OSError as exc:
            raise PlanguardError(f"cannot write {path}: {exc.strerror or exc}; choose another path "
                                 "(-o, --json, --save-recording)") from exc


def write_reports(result: Comparison | CheckResult, html: Path | None, json: Path | None) -> dict[str, Path]:
    """Write the requested reports of a comparison or a check (creating folders); returns
    {"html": path, "json": path}."""
    written: dict[str, Path] = {}
    context = check_to_dict(result) if isinstance(result, CheckResult) else to_dict(result)
    if json is not None:
        json.parent.mkdir(parents=True, exist_ok=True)
        json.write_text(dump_json(context))
        written["json"] = json
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(context))
        written["html"] = html
    return written
