"""The JUnit XML report: CI systems list statements and blockers as test cases (pure).

Two suites:

- ``planguard.statements``: one test case per statement, named by its short id, its
  database and the start of its text; a ``<failure>`` when a blocker is about it, ``<skipped>``
  when it was not executed, and the call's reason as ``system-out``.  ``time`` is NEW's
  median time of the decisive parameter set, so "slowest tests" lists NEW's slowest statements.
- ``planguard.findings``: one test case per blocking finding (class name
  ``planguard.findings.<kind>``, a ``<failure>`` with the headline as its message, the message
  and the remediation as its text) and per warning, passing with the message as
  ``system-out``.  When its fix was verified on NEW, a finding's case carries the outcome as
  ``<properties><property name="verification" value="restores_old_plan"/></properties>`` and
  the verification's summary in ``system-out``.

With ``fail_on="warning"`` warnings fail too, and so do the statements they are about.
Text that XML 1.0 cannot carry (control characters in hostile statement text) is replaced
by U+FFFD, so the file always parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

STATEMENTS = "planguard.statements"
FINDINGS = "planguard.findings"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(text: object) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


def _one_line(text: object, limit: int) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[:limit - 1].rstrip() + "…"


def _failing(severity: str, fail_on: str) -> bool:
    return severity == "blocker" or (fail_on == "warning" and severity == "warning")


def _about_statement(f: dict[str, Any]) -> tuple[str, str | None] | None:
    subject = f.get("subject")
    if subject and subject["type"] == "statement":
        return subject["name"], subject.get("database")
    return None


def _verification_text(v: dict[str, Any]) -> str:
    """What trying the fix on NEW did: outcome, summary, the reason, the SQL tried."""
    text = f"verification: {v['outcome']}: {v['summary']}"
    if v.get("reason"):
        text += f"\n{v['reason']}"
    return text + f"\n\ntried on NEW (rolled back):\n{v['trial']}"


def statement_name(s: dict[str, Any], database: str | None) -> str:
    """Short id, database and the start of the statement's text."""
    db = s.get("database") or database
    return _one_line(f"{s['fingerprint'][:8]} {db + ' ' if db else ''}{s['query']}", 100)


def _case(parent: ET.Element, classname: str, name: str, time_s: float = 0.0) -> ET.Element:
    return ET.SubElement(parent, "testcase", classname=_x(classname), name=_x(name), time=f"{time_s:.6f}")


def _suite(parent: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(parent, "testsuite", name=name)


def _count(suite: ET.Element) -> dict[str, int]:
    cases = suite.findall("testcase")
    counts = {"tests": len(cases), "failures": sum(1 for c in cases if c.find("failure") is not None),
              "errors": 0, "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
    for key, value in counts.items():
        suite.set(key, str(value))
    return counts


def render_junit(context: dict[str, Any], fail_on: str = "blocker") -> str:
    """The JUnit XML of a result (``planguard.report.json.to_dict`` or ``check_to_dict`` output)."""
    root = ET.Element("testsuites", name=f"planguard {context['kind']}")
    database = (context.get("workload") or {}).get("database")
    findings = context["findings"]
    against: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for f in findings:
        about = _about_statement(f)
        if about and _failing(f["severity"], fail_on):
            against.setdefault(about, []).append(f)

    stmts = _suite(root, STATEMENTS)
    props = ET.SubElement(stmts, "properties")
    for key, value in (("verdict", context["verdict"]), ("kind", context["kind"]), ("fail_on", fail_on),
                       ("old_server_version", context["old"]["server_version"]),
                       ("new_server_version", context["new"]["server_version"]),
                       ("generated_at", context["generated_at"]),
                       ("coverage", (context.get("coverage") or {}).get("text", ""))):
        ET.SubElement(props, "property", name=key, value=_x(value))
    for s in context["statements"]:
        db = s.get("database") or database
        median = s["new"].get("median_ms")
        case = _case(stmts, STATEMENTS, statement_name(s, database), (median or 0.0) / 1000)
        behind = against.get((s["fingerprint"][:8], db), []) + (
            against.get((s["fingerprint"][:8], None), []) if db is not None else [])
        if behind:
            text = "\n\n".join(f"{f['kind']} ({f['severity']}): {f['message']}\n\nfix: {f['remediation']}"
                               for f in behind)
            failure = ET.SubElement(case, "failure", message=_x(_one_line(behind[0].get("headline")
                                                                          or behind[0]["message"], 500)),
                                    type=_x(behind[0]["kind"]))
            failure.text = _x(text)
        elif s["status"] == "skipped":
            ET.SubElement(case, "skipped", message=_x(_one_line(s["reason"], 500)))
        out = ET.SubElement(case, "system-out")
        out.text = _x(f"{s['status']}: {s['reason']}\n\n{s['query']}")

    finds = _suite(root, FINDINGS)
    names: dict[tuple[str, str], int] = {}
    for f in findings:
        if f["severity"] == "info":
            continue
        pair = (f["kind"], f["object"])
        names[pair] = names.get(pair, 0) + 1
        name = f["object"] if names[pair] == 1 else f"{f['object']} ({names[pair]})"
        case = _case(finds, f"{FINDINGS}.{f['kind']}", name)
        v = f.get("verification")
        if v:
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name="verification", value=_x(v["outcome"]))
        if _failing(f["severity"], fail_on):
            headline = _one_line(f.get("headline") or f["message"], 500)
            failure = ET.SubElement(case, "failure", message=_x(headline), type=_x(f["severity"]))
            failure.text = _x(f"{f['message']}\n\nremediation:\n{f['remediation']}")
            if v:
                out = ET.SubElement(case, "system-out")
                out.text = _x(_verification_text(v))
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _x(f"{f['severity']}: {f['message']}\n\nremediation:\n{f['remediation']}"
                          + (f"\n\n{_verification_text(v)}" if v else ""))

    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in (stmts, finds):
        for key, value in _count(suite).items():
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{float(context.get('duration_s') or 0):.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
