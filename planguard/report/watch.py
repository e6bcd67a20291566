"""The watch's outputs (pure: no database): a JSON object per interval (the JSON lines), the
Prometheus text-format file, and the HTML snapshot of the latest state.

``interval_dict`` is the one shape every output renders from.  The HTML snapshot is one
self-contained file without any script (a Content-Security-Policy forbids them): the call,
its fixes and evidence, the top statements by load against the baseline, and inline SVG of
the added active sessions and the top statement's latency ratio over the intervals kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from planguard.report.templating import ENV, rounded
from planguard.watch import CALLS, Interval, Row

JSON_VERSION = 1

def row_dict(r: Row) -> dict[str, Any]:
    return {
        "database": r.database, "fingerprint": r.fingerprint, "short_id": r.short_id, "query": r.query,
        "in_baseline": r.in_baseline, "state": r.state, "streak": r.streak, "reason": r.reason,
        "calls": r.calls, "calls_per_second": rounded(r.rate), "mean_ms": rounded(r.mean_ms),
        "baseline_calls_per_second": rounded(r.base_rate), "baseline_mean_ms": rounded(r.base_mean_ms),
        "latency_ratio": rounded(r.ratio), "buffers_per_call": rounded(r.buffers_per_call, 1),
        "baseline_buffers_per_call": rounded(r.base_buffers_per_call, 1),
        "rows_per_call": rounded(r.rows_per_call, 1),
        "baseline_rows_per_call": rounded(r.base_rows_per_call, 1),
        "active_sessions": rounded(r.load), "load_share": rounded(r.share, 4),
        "added_active_sessions": rounded(r.added_sessions),
        "causes": [asdict(c) for c in r.causes], "plan_note": r.plan_note,
    }


def interval_dict(iv: Interval) -> dict[str, Any]:
    """One interval as the JSON lines carry it (``"type": "interval"``)."""
    return {
        "type": "interval", "version": JSON_VERSION, "interval": iv.number, "at": iv.at,
        "seconds": round(iv.seconds, 3), "since_cutover_s": round(iv.since_start_s, 1), "counted": iv.counted,
        "verdict": iv.call.verdict, "summary": iv.call.summary, "fixes": list(iv.call.fixes),
        "evidence": list(iv.call.evidence), "events": list(iv.events),
        "active_sessions": rounded(iv.total_load), "statements_seen": iv.statements_seen,
        "capacity": iv.capacity, "activity": dict(iv.activity) if iv.activity else None,
        "watch_load": dict(iv.watch_load) if iv.watch_load else None,
        "statements": [row_dict(r) for r in iv.rows],
    }


def json_line(iv: Interval) -> str:
    return json.dumps(interval_dict(iv), separators=(",", ":"), default=list)


def write_prometheus(iv: Interval, path: Path) -> None:
    """The latest interval as a Prometheus text-format file (node_exporter's textfile
    collector reads it; written atomically by prometheus_client)."""
    reg = CollectorRegistry()
    verdict = Gauge("planguard_watch_verdict", "1 for the watch's current call", ["verdict"], registry=reg)
    for name in CALLS:
        verdict.labels(name).set(1 if iv.call.verdict == name else 0)
    Gauge("planguard_watch_interval", "intervals judged so far", registry=reg).set(iv.number)
    Gauge("planguard_watch_active_sessions", "average active sessions of all statements in the interval",
          registry=reg).set(iv.total_load)
    labels = ["database", "fingerprint", "state"]
    ratio = Gauge("planguard_watch_latency_ratio", "mean latency against OLD's baseline mean", labels,
                  registry=reg)
    added = Gauge("planguard_watch_added_active_sessions", "active sessions added against the baseline "
                  "(calls/s x extra seconds per call)", labels, registry=reg)
    share = Gauge("planguard_watch_load_share", "share of NEW's statement time in the interval", labels,
                  registry=reg)
    for r in iv.rows:
        key = (r.database, r.short_id, r.state)
        share.labels(*key).set(r.share)
        if r.ratio is not None:
            ratio.labels(*key).set(r.ratio)
        if r.added_sessions is not None:
            added.labels(*key).set(r.added_sessions)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)


def _sparkline(values: Sequence[float | None], width: int = 560, height: int = 90) -> dict[str, Any]:
    """Points of an SVG polyline (x, y in pixels) and the axis maximum, for the template."""
    known = [v for v in values if v is not None]
    top = max(known, default=0.0) or 1.0
    n = max(len(values) - 1, 1)
    points = [(round(i * width / n, 1), round(height - (v / top) * (height - 4) - 2, 1))
              for i, v in enumerate(values) if v is not None]
    return {"points": " ".join(f"{x},{y}" for x, y in points), "max": top, "width": width,
            "height": height, "count": len(values)}


def snapshot_context(history: Sequence[Interval], *, dsn: str, baseline: str, started_at: str,
                     stopped: str, explains: int, catalog_reads: int, reconnects: int,
                     events: Sequence[str]) -> dict[str, Any]:
    counted = [iv for iv in history if iv.counted]
    last = history[-1] if history else None
    latest = counted[-1] if counted else None
    worst: Row | None = None
    if latest is not None and latest.rows:
        bad = [r for r in latest.rows if r.state not in ("ok", "new", "few_calls")]
        worst = (bad or list(latest.rows))[0]
    added = [sum(max(r.added_sessions or 0.0, 0.0) for r in iv.rows if r.state in ("regressed", "slower"))
             for iv in counted]
    ratios = []
    for iv in counted:
        match = [r.ratio for r in iv.rows if worst is not None and r.key == worst.key]
        ratios.append(match[0] if match else None)
    return {
        "dsn": dsn, "baseline": baseline, "started_at": started_at, "stopped": stopped,
        "explains": explains, "catalog_reads": catalog_reads, "reconnects": reconnects,
        "last": interval_dict(last) if last else None, "latest": interval_dict(latest) if latest else None,
        "worst": row_dict(worst) if worst is not None else None,
        "added_chart": _sparkline(added), "ratio_chart": _sparkline(ratios),
        "timeline": _timeline(history),
        "events": list(events)[-50:],
        "intervals": len(history),
    }


def _timeline(history: Sequence[Interval], limit: int = 60) -> list[dict[str, Any]]:
    """The intervals where the call changed or something happened (a reset, a lost session)."""
    out = []
    previous = None
    for iv in history:
        if iv.events or iv.call.verdict != previous:
            out.append({"interval": iv.number, "at": iv.at, "verdict": iv.call.verdict,
                        "events": list(iv.events)})
        previous = iv.call.verdict
    return out[-limit:]


def render_snapshot(context: dict[str, Any]) -> str:
    """The HTML snapshot of the watch's latest state."""
    return ENV.get_template("watch.html.j2").render(**context)
