"""The Markdown summary: for ``$GITHUB_STEP_SUMMARY`` and a pull-request comment (pure).

The verdict, the blockers one line each (with their fix's outcome when fixes were verified on
NEW, then the verified fixes' summaries and NEW's catalog check), the fix script as one SQL
block, a table of the
worst statements (by added active sessions at production rates, then by NEW/OLD ratio),
coverage and versions.  Lists are cut with "… and N more" and the whole stays under
``max_chars`` (a pull-request comment takes 65,536 characters; a step summary 1 MiB): the
full detail is in the HTML and JSON reports.

Statement text, identifiers and messages are hostile input: in prose, ``|``, backticks,
emphasis and link brackets are backslash-escaped and ``& < >`` written as entities, so no
markup or HTML comes through; statement text goes into code spans whose delimiter is
longer than any run of backticks inside, and the SQL block into a fence longer than any
run of backticks in the script.
"""

from __future__ import annotations

import re
from typing import Any

MAX_CHARS = 60_000
MIN_AAS = 0.001  # added active sessions from which a statement that was not called worse is listed
_ESCAPED = re.compile(r"([\\`*_\[\]|~])")
_BAD = {"regressed", "error", "slower_same_plan", "unstable", "plan_changed"}
# A blocker's line ends with what trying its fix on NEW did (planguard.verify's outcomes).
OUTCOMES = {"restores_old_plan": "fix verified: restores OLD's plan", "improves": "fix verified: improves",
            "no_effect": "fix tried: no effect", "not_tried": "fix not tried"}


def esc(text: object, limit: int | None = None) -> str:
    """``text`` as inert Markdown on one line (also safe in a table cell), cut to ``limit``."""
    one = " ".join(str(text).split())
    if limit is not None and len(one) > limit:
        one = one[:limit - 1].rstrip() + "…"
    one = one.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _ESCAPED.sub(r"\\\1", one)


def code(text: object, limit: int | None = None) -> str:
    """``text`` as an inline code span on one line, safe in a table cell."""
    one = " ".join(str(text).split())
    if limit is not None and len(one) > limit:
        one = one[:limit - 1].rstrip() + "…"
    fence = "`" * (max((len(m) for m in re.findall(r"`+", one)), default=0) + 1)
    pad = " " if one.startswith("`") or one.endswith("`") or fence != "`" else ""
    return f"{fence}{pad}{one.replace('|', chr(92) + '|')}{pad}{fence}"


def fenced(text: str, lang: str = "sql") -> str:
    """A fenced code block that no run of backticks in ``text`` can close."""
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`{3,}", text)), default=0) + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def _more(n: int) -> str:
    return f"- … and {n} more in the HTML and JSON reports"


def _headline(f: dict[str, Any]) -> str:
    return str(f.get("headline") or f["message"])


def _finding_line(f: dict[str, Any]) -> str:
    head, obj = " ".join(_headline(f).split()), " ".join(f["object"].split())
    if obj and head.startswith(obj):  # headlines name their object first: set it as code
        rest = head[len(obj):]
        gap = "" if rest[:1] in (":", ",", ";", ".", ")") else " "
        return f"- **{esc(f['kind'])}** {code(obj, 120)}{gap}{esc(rest, 300)}"
    return f"- **{esc(f['kind'])}** {code(obj, 120)}: {esc(head, 300)}"


def _outcome(f: dict[str, Any], verified: bool) -> str:
    """' — fix verified: restores OLD's plan' when the run verified fixes, else nothing."""
    if not verified:
        return ""
    v = f.get("verification")
    return f" — {esc(OUTCOMES[v['outcome']] if v else 'fix not verified')}"


def _findings(findings: list[dict[str, Any]], title: str, limit: int, verified: bool = False) -> list[str]:
    if not findings:
        return []
    lines = [f"### {title} ({len(findings)})", ""]
    lines += [_finding_line(f) + _outcome(f, verified) for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(_more(len(findings) - limit))
    return [*lines, ""]


def _verified(context: dict[str, Any], limit: int) -> list[str]:
    """The verified fixes' summaries, what could not be rolled back, NEW's catalog check."""
    run = context.get("verification")
    if not run:
        return []
    tried = [f for f in context["findings"] if f.get("verification")]
    lines = ["### Verified fixes", "",
             f"Tried on NEW only, each in a transaction rolled back ({run['trials']} trials):", ""]
    for f in tried[:limit]:
        v = f["verification"]
        why = f" ({esc(v['reason'], 200)})" if v["outcome"] == "not_tried" and v.get("reason") else ""
        outcome = esc(OUTCOMES[v["outcome"]])
        lines.append(f"- **{outcome}** {code(f['object'], 120)}: {esc(v['summary'], 300)}{why}")
    if len(tried) > limit:
        lines.append(_more(len(tried) - limit))
    effects = run.get("side_effects") or []
    lines += [f"- not rolled back: {esc(e, 300)}" for e in effects[:limit]]
    if len(effects) > limit:
        lines.append(f"- … and {len(effects) - limit} more not rolled back")
    diff = run.get("catalog_diff") or []
    if run["catalog_unchanged"]:
        lines.append("- NEW's catalog is unchanged: indexes, settings, sequences, pg\\_statistic"
                     + (", apart from what the run said it could not roll back:" if diff else ""))
        lines += [f"  - {esc(d, 300)}" for d in diff[:limit]]
    else:
        lines.append("- **NEW's catalog changed during verification**: check these on NEW before cutover")
        lines += [f"  - {esc(d, 300)}" for d in diff[:limit]]
        if len(diff) > limit:
            lines.append(f"  - … and {len(diff) - limit} more")
    return [*lines, ""]


def _fix_sql(context: dict[str, Any]) -> str | None:
    script = context.get("fix_script")
    if isinstance(script, dict) and script.get("sql"):
        return str(script["sql"])
    if "fix_script" in context:
        return None
    # A result written before fix_script: the blockers' remediations, in the findings' order.
    parts = [f"-- {' '.join(f['kind'].split())}: {' '.join(f['object'].split())}\n{f['remediation'].strip()}"
             for f in context["findings"] if f["severity"] == "blocker" and f["remediation"].strip()]
    return "\n\n".join(parts) or None


def _cut_lines(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    lines, kept, size = text.splitlines(), [], 0
    for line in lines:
        if size + len(line) + 1 > budget:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join([*kept, f"-- … and {len(lines) - len(kept)} more lines: the full script is in the "
                                "HTML and JSON reports"])


def _aas(s: dict[str, Any]) -> float | None:
    imp = s.get("impact")
    return None if not imp else imp.get("extra_active_sessions")


def worst_statements(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Statements worse on NEW, by added active sessions, then by NEW/OLD time ratio."""
    worse = [s for s in statements if s["status"] in _BAD or (_aas(s) or 0) >= MIN_AAS]
    return sorted(worse, key=lambda s: (-(_aas(s) or 0), -(s.get("time_ratio") or 0), s["fingerprint"]))


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"


def _statements_table(context: dict[str, Any], limit: int) -> list[str]:
    worst = worst_statements(context["statements"])
    if not context["statements"]:
        return []
    lines = ["### Worst statements", ""]
    if not worst:
        return [*lines, "No statement is slower on NEW.", ""]
    database = (context.get("workload") or {}).get("database")
    lines += ["| statement | status | OLD ms | NEW ms | NEW/OLD | added active sessions |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for s in worst[:limit]:
        db = s.get("database") or database
        where = f" ({esc(db)})" if db else ""
        ratio = s.get("time_ratio")
        aas = _aas(s)
        lines.append(
            f"| {code(s['fingerprint'][:8])}{where} {code(s['query'], 80)} | {esc(s['status'])} | "
            f"{_ms(s['old'].get('median_ms'))} | {_ms(s['new'].get('median_ms'))} | "
            f"{'–' if ratio is None else f'{ratio:,.2f}×'} | {'–' if aas is None else f'{aas:+.3f}'} |")
    if len(worst) > limit:
        lines.append("")
        lines.append(f"… and {len(worst) - limit} more in the HTML and JSON reports")
    return [*lines, ""]


def _about(context: dict[str, Any], limit: int) -> list[str]:
    old, new = context["old"], context["new"]
    lines = ["### Coverage and versions", "",
             f"- OLD: PostgreSQL {esc(old['server_version'])}; NEW: PostgreSQL {esc(new['server_version'])}"]
    wl = context.get("workload")
    if wl:
        lines.append(f"- workload: {wl['statements']} statements from database "
                     f"{code(wl['database'] or '?')}, "
                     f"captured {esc(wl['captured_at'] or '?')} "
                     f"on PostgreSQL {esc(wl['server_version'] or '?')}")
    cov = context.get("coverage")
    if cov:
        lines.append(f"- {esc(cov['text'])}")
        items = cov.get("unjudged_items") or []
        lines += [f"  - not judged: {esc(item, 200)}" for item in items[:limit]]
        if len(items) > limit:
            lines.append(f"  - … and {len(items) - limit} more")
    imp = context.get("impact")
    if imp:
        lines.append(f"- average active sessions at production rates: "
                     f"{imp['active_sessions_old']:.3f} on OLD, "
                     f"{imp['active_sessions_new']:.3f} on NEW ({imp['delta_active_sessions']:+.3f})")
    partial = context.get("partial")
    if partial:
        lines.append(f"- **partial result**: {esc(partial['reason'], 300)}")
    return [*lines, ""]


def render_markdown(context: dict[str, Any], *, why: str | None = None, max_chars: int = MAX_CHARS,
                    limit: int = 10) -> str:
    """The summary of a result (``planguard.report.json.to_dict`` or ``check_to_dict`` output);
    ``why``: the gate's line when the exit code is not the verdict's (``planguard.report.gate``)."""
    verdict = context["verdict"]
    mark = "✅" if verdict == "GO" else "❌"
    what = "comparison" if context["kind"] == "compare" else "readiness check"
    findings = context["findings"]
    blockers = [f for f in findings if f["severity"] == "blocker"]
    warnings = [f for f in findings if f["severity"] == "warning"]
    notes = len(findings) - len(blockers) - len(warnings)
    counts = f"{len(blockers)} blockers, {len(warnings)} warnings, {notes} notes"
    if context["kind"] == "compare":
        summary = ", ".join(f"{n} {status}" for status, n in context["summary"].items() if n)
        counts += f"; {len(context['statements'])} statements" + (f": {summary}" if summary else "")
    head = [f"## {mark} planguard {what}: **{verdict}**", "", counts, ""]
    if why:
        head += [f"**{esc(why)}**", ""]
    if verdict == "GO" and not blockers:
        head += ["No blocker found.", ""]

    run = bool(context.get("verification"))
    body = _findings(blockers, "Blockers", 20, verified=run) + _verified(context, 20)
    fix = _fix_sql(context)
    tail = _findings(warnings, "Warnings", limit) + _statements_table(context, limit) + _about(context, 5)
    tail.append("<sub>planguard · full detail in the HTML report; the JSON report is the contract "
                "for machines</sub>")
    text_before = "\n".join(head + body)
    text_after = "\n".join(tail) + "\n"
    if fix:
        title = "### Fix before cutover\n\nRun on NEW, in this order:\n\n"
        budget = max(max_chars - len(text_before) - len(text_after) - len(title) - 20, 500)
        section = title + fenced(_cut_lines(fix, budget)) + "\n\n"
    else:
        section = ""
    out = text_before + "\n" + section + text_after
    if len(out) > max_chars:  # only with absurd inputs: every part is already bounded
        out = out[:max_chars - 80].rsplit("\n", 1)[0] + "\n\n… cut: the full detail is in the HTML report\n"
    return out
