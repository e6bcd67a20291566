"""The one jinja2 environment every HTML page renders with (pure), and a rounding helper the
pages' JSON shapes share."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape

# Autoescaped everywhere: every value in a page comes from a database or a workload file.
ENV = Environment(loader=PackageLoader("planguard.report", "templates"),
                  autoescape=select_autoescape(default=True, default_for_string=True),
                  trim_blocks=True, lstrip_blocks=True)


def rounded(v: float | None, digits: int = 3) -> float | None:
    """``v`` rounded for a JSON document, None kept."""
    return None if v is None else round(v, digits)
