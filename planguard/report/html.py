"""The HTML report: one self-contained file (inline CSS, no script, no network)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_env = Environment(
    loader=PackageLoader("planguard.report", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


_env.filters["ms"] = _ms
_env.filters["num"] = _num


def render_html(context: dict[str, Any]) -> str:
    """Render the report from ``planguard.report.json.to_dict`` output."""
    return _env.get_template("report.html.j2").render(r=context)
