"""Reports of a comparison or a check, all rendered from one context object (the JSON
contract in docs/json-contract.md, described by ``schema.json``):

- ``json``: the contract itself, for machines;
- ``html``: a self-contained page for reviewers;
- ``md``: a summary for ``$GITHUB_STEP_SUMMARY`` or a pull-request comment;
- ``junit``: JUnit XML, so CI systems list statements and blockers as test cases.

A saved JSON result renders again into any format without a database (``load_result``,
``render``); ``gate`` says which exit code it stands for under ``--fail-on``.
"""

from __future__ import annotations

import functools
import json as _json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from planguard.errors import PlanguardError
from planguard.model import CheckResult, Comparison
from planguard.report.html import render_html
from planguard.report.json import FORMAT_VERSION, check_to_dict, dump_json, to_dict
from planguard.report.junit import render_junit
from planguard.report.markdown import render_markdown

__all__ = ["FAIL_ON", "FORMATS", "SUFFIXES", "Gate", "ResultError", "check_to_dict", "check_writable",
           "context_of", "dump_json", "gate", "load_result", "render", "render_html", "render_junit",
           "render_markdown", "schema", "schema_errors", "to_dict", "write_context", "write_reports"]

FORMATS = ("json", "html", "md", "junit")
# The file name each format gets by default: reports/<name><suffix>.
SUFFIXES = {"json": ".json", "html": ".html", "md": ".md", "junit": ".junit.xml"}
FAIL_ON = ("blocker", "warning")


class ResultError(PlanguardError):
    """A saved result is missing, unreadable, or not a planguard result of this format."""


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
                                 "(-o, --json, --md, --junit, --save-recording)") from exc


@dataclass(frozen=True)
class Gate:
    """What a result means for a CI gate: the exit code, and why when it is not the verdict's."""

    exit_code: int
    why: str | None = None


def gate(context: dict[str, Any], fail_on: str = "blocker") -> Gate:
    """0 for GO, 1 for NO-GO; with ``fail_on="warning"`` a GO with warnings is 1 too (the
    verdict stays GO: ``why`` says what made the exit 1)."""
    if fail_on not in FAIL_ON:
        raise ValueError(f"fail_on must be one of {FAIL_ON}, got {fail_on!r}")
    if context["verdict"] != "GO":
        return Gate(1)
    warnings = [f for f in context["findings"] if f["severity"] == "warning"]
    if fail_on == "warning" and warnings:
        kinds = sorted({f["kind"] for f in warnings})
        n = len(warnings)
        return Gate(1, f"exit 1: --fail-on warning and {n} warning{'s' if n != 1 else ''} "
                       f"({', '.join(kinds)})")
    return Gate(0)


def render(context: dict[str, Any], fmt: str, fail_on: str = "blocker") -> str:
    """The report in ``fmt`` (one of FORMATS) from a result's context."""
    if fmt == "json":
        return dump_json(context)
    if fmt == "html":
        return render_html(context)
    if fmt == "md":
        return render_markdown(context, why=gate(context, fail_on).why)
    if fmt == "junit":
        return render_junit(context, fail_on=fail_on)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def context_of(result: Comparison | CheckResult) -> dict[str, Any]:
    """A comparison's or a check's report as plain data: the JSON contract, every format's input."""
    return check_to_dict(result) if isinstance(result, CheckResult) else to_dict(result)


def write_context(context: dict[str, Any], outputs: dict[str, Path],
                  fail_on: str = "blocker") -> dict[str, Path]:
    """Write ``context`` in each format of ``outputs`` ({format: path}, creating folders)."""
    for fmt, path in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(context, fmt, fail_on), encoding="utf-8")
    return dict(outputs)


def write_reports(result: Comparison | CheckResult, html: Path | None = None, json: Path | None = None, *,
                  md: Path | None = None, junit: Path | None = None,
                  fail_on: str = "blocker") -> dict[str, Path]:
    """Write the requested reports of a comparison or a check (creating folders); returns
    {format: path} for those written."""
    outputs = {fmt: path for fmt, path in (("json", json), ("html", html), ("md", md), ("junit", junit))
               if path is not None}
    return write_context(context_of(result), outputs, fail_on)


@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a result, ``planguard/report/schema.json``."""
    text = resources.files("planguard.report").joinpath("schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = _json.loads(text)
    return loaded


def schema_errors(context: Any, limit: int = 20) -> list[str]:
    """Where ``context`` breaks the schema, one line each (``$.findings[0].kind: ...``),
    most fundamental first; empty when it is a valid result."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError, relevance

    def deepest(e: ValidationError) -> ValidationError:
        while e.context:  # anyOf / oneOf: the branch that went furthest, not the whole instance
            e = max(e.context, key=lambda c: len(c.absolute_path))
        return e

    validator = Draft202012Validator(schema())
    errors = [deepest(e) for e in sorted(validator.iter_errors(context), key=relevance)]
    return [f"{e.json_path}: {_short(e.message)}" for e in errors[:limit]]


def _short(text: str, limit: int = 160) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[:limit - 1] + "…"


def load_result(path: Path) -> dict[str, Any]:
    """A result that ``compare`` or ``check`` saved as JSON, checked against the schema.
    Raises ResultError with one line saying what is wrong and what to pass instead."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultError(f"cannot read result {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ResultError(f"{path} is not a planguard result: not UTF-8 text") from exc
    try:
        data = _json.loads(text)
    except ValueError as exc:
        raise ResultError(f"{path} is not JSON ({exc}); pass the JSON report that "
                          "'planguard compare' or 'planguard check' wrote (--json)") from exc
    hint = "pass the JSON report that 'planguard compare' or 'planguard check' wrote (--json)"
    if not isinstance(data, dict) or "format_version" not in data or data.get("kind") not in ("compare",
                                                                                               "check"):
        what = " (a workload or a recording?)" if isinstance(data, dict) and (
            "statements" in data or "format" in data) else ""
        raise ResultError(f"{path} is not a planguard result{what}; {hint}")
    if data["format_version"] != FORMAT_VERSION:
        raise ResultError(f"{path} is a result of format_version {data['format_version']!r}; this "
                          f"planguard reads format_version {FORMAT_VERSION}: render it with the "
                          "planguard that wrote it")
    problems = schema_errors(data, limit=1)
    if problems:
        raise ResultError(f"{path} is not a valid planguard result: {problems[0]}")
    return data
