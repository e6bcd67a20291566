"""The rehearsal's outputs (pure: no database): one JSON document and one HTML page.

``rehearsal_dict`` is the one shape both render from.  The HTML page is self-contained and
runs no script (a Content-Security-Policy forbids them): the verdict and why, each reason's
causes and fixes, the ramp, per-statement throughput and latency against OLD, and inline SVG
of the latency (p95 per second) and the active sessions (the pool's connections busy, calls
waiting for one, and the replay's sessions active on NEW) over time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from planguard.rehearsal import Rehearsal, StatementLoad, Step, headline
from planguard.report.templating import ENV, rounded

JSON_VERSION = 1

def _load(s: StatementLoad) -> dict[str, Any]:
    srv = s.server
    return {
        "key": s.key, "short_id": s.short_id, "query": s.query,
        "target_calls_per_second": s.target_rate, "achieved_calls_per_second": s.achieved_rate,
        "arrived": s.arrived, "served": s.served, "errors": dict(s.errors), "not_served": dict(s.not_served),
        "error_share": rounded(s.error_share, 4), "lock_timeouts": s.lock_timeouts,
        "latency_ms": dict(s.latency_ms), "service_ms": dict(s.service_ms),
        "old_mean_ms": rounded(s.old_mean_ms), "old_buffers_per_call": rounded(s.old_buffers, 1),
        "server": None if srv is None else {
            "calls": srv.calls, "mean_ms": rounded(srv.mean_ms),
            "buffers_per_call": rounded(srv.buffers_per_call, 1),
            "rows_per_call": rounded(srv.rows_per_call, 1)},
        "time_share": s.time_share,
    }


def _step(s: Step) -> dict[str, Any]:
    top = s.top
    return {
        "rate": s.rate, "duration_s": s.duration_s, "connections": s.connections,
        "target_calls_per_second": s.target_rate, "achieved_calls_per_second": s.achieved_rate,
        "arrived": s.arrived, "served": s.served, "held": s.held, "first_behind_s": s.first_behind_s,
        "saturation": s.saturation, "client_active_sessions": s.client_sessions,
        "server_active_sessions": s.server_sessions, "dispatch_lag_p95_ms": s.lag_p95_ms,
        "client_bound": s.client_bound, "client_cpu": s.client_cpu, "stopped": s.stopped,
        "top_statement": top.key if top else None,
        "statements": [_load(x) for x in sorted(s.statements, key=lambda x: -x.time_share)],
        "timeline": [asdict(t) for t in s.timeline],
    }


def rehearsal_dict(r: Rehearsal, *, dsn: str, workload: str, started_at: str,
                   seconds: float) -> dict[str, Any]:
    """The rehearsal as its JSON document carries it."""
    o = r.options
    return {
        "type": "rehearsal", "version": JSON_VERSION, "verdict": r.verdict, "exit_code": r.exit_code,
        "headline": headline(r), "new": dsn, "workload": workload, "started_at": started_at,
        "seconds": round(seconds, 1),
        "options": {"rate": o.rate, "ramp": list(o.ramp), "duration_s": o.duration_s,
                    "connections": r.plan.connections, "connections_from": r.plan.connections_from,
                    "pool_timeout_s": o.pool_timeout_s, "statement_timeout_ms": o.statement_timeout_ms,
                    "lock_timeout_ms": o.lock_timeout_ms, "seed": o.seed,
                    "max_other_sessions": o.max_other_sessions, "hold_share": o.hold_share,
                    "max_error_share": o.max_error_share},
        "captured_calls_per_second": round(r.plan.total_rate, 3),
        "old_active_sessions": round(r.plan.observed_sessions, 4),
        "headroom": r.headroom, "saturation_rate": r.saturation_rate,
        "reasons": [{"kind": x.kind, "text": x.text, "statement": x.statement, "blocks": x.blocks,
                     "causes": [asdict(c) for c in x.causes]} for x in r.reasons],
        "fixes": fixes(r),
        "left_out": [{"key": k, "why": w} for k, w in r.plan.left_out],
        "notes": list(r.notes),
        "steps": [_step(s) for s in r.steps],
    }


def schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of a rehearsal result, ``planguard/report/rehearsal.schema.json``."""
    return dict(json.loads(resources.files("planguard.report").joinpath("rehearsal.schema.json")
                           .read_text(encoding="utf-8")))


def fixes(r: Rehearsal) -> list[str]:
    """The SQL the reasons' causes name, in order, once each."""
    return list(dict.fromkeys(c.fix for x in r.reasons for c in x.causes if c.fix))


def _chart(series: Sequence[tuple[str, Sequence[float | None], str]], width: int = 1040, height: int = 170,
           marks: Sequence[tuple[float, str]] = (), line: float | None = None) -> dict[str, Any]:
    """Polylines of several series over the same seconds, one y axis from 0 to their maximum."""
    known = [v for _, vals, _ in series for v in vals if v is not None] + ([line] if line else [])
    top = max(known, default=0.0) or 1.0
    n = max(max((len(v) for _, v, _ in series), default=1) - 1, 1)
    pad = 4

    def y(v: float) -> float:
        return round(height - pad - (v / top) * (height - 2 * pad), 1)

    lines = []
    for name, vals, color in series:
        pts = " ".join(f"{round(i * width / n, 1)},{y(v)}" for i, v in enumerate(vals) if v is not None)
        lines.append({"name": name, "points": pts, "color": color})
    return {"width": width, "height": height, "max": top, "lines": lines, "seconds": n + 1,
            "marks": [{"x": round(x * width / n, 1), "label": label} for x, label in marks],
            "line": None if line is None else {"y": y(line), "value": line}}


def _charts(doc: dict[str, Any]) -> dict[str, Any]:
    p95: list[float | None] = []
    in_use: list[float | None] = []
    waiting: list[float | None] = []
    server: list[float | None] = []
    marks: list[tuple[float, str]] = []
    for s in doc["steps"]:
        marks.append((len(p95), f"{s['rate']:g}x"))
        for t in s["timeline"]:
            p95.append(t["p95_ms"])
            in_use.append(t["busy"])
            waiting.append(float(t["waiting"]))
            server.append(None if t["server_active"] is None else float(t["server_active"]))
    return {
        "latency": _chart([("p95 latency (ms)", p95, "#b42318")], marks=marks),
        "sessions": _chart([("connections busy", in_use, "#175cd3"), ("calls waiting", waiting, "#b54708"),
                            ("active on NEW", server, "#067647")], marks=marks,
                           line=float(doc["options"]["connections"])),
    }


def render_html(doc: dict[str, Any]) -> str:
    """The rehearsal's HTML page, from its JSON document (a saved one renders the same)."""
    return ENV.get_template("rehearse.html.j2").render(doc=doc, charts=_charts(doc))


def write(doc: dict[str, Any], *, json_path: Path | None, html_path: Path | None) -> dict[str, Path]:
    """Write the JSON document and the HTML page; {format: path} of what was written."""
    out: dict[str, Path] = {}
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        out["json"] = json_path
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(doc), encoding="utf-8")
        out["html"] = html_path
    return out
