"""The HTML report: one self-contained file that loads nothing.

Data flow: ``render_html`` takes the dict of ``planguard.report.json.to_dict`` (the JSON
contract). Jinja renders what a reviewer reads first (verdict, fix script, summary,
findings, tables) as escaped HTML. Everything per statement (the table's rows, the
charts' points, each statement's detail with its raw plans and what ``planguard.plantree``
computes of them) goes into ``<script type="application/json">`` blocks, which the page's
own script (``static/report.js``) turns into DOM with ``textContent`` only, lazily: a
statement's detail and plan trees are built when it is expanded, what EXPLAIN says of each
node read from the raw plan. Details above ``COMPRESS_ABOVE`` bytes are gzip-compressed (zlib-ng) in
chunks (base64), built on every core (forked workers) when there are many, and inflated in
the page with ``DecompressionStream``. A Content-Security-Policy allows only that one script,
by hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import multiprocessing as mp
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson
import pglast
from markupsafe import Markup
from zlib_ng import gzip_ng

from planguard.heap import long_lived
from planguard.plantree import DETAIL_KEYS, plan_pair
from planguard.report.templating import ENV

_env = ENV

COMPRESS_ABOVE = 1_000_000  # bytes of detail JSON beyond which it is gzip-compressed
CHUNK = 50  # statements per compressed chunk: expanding one inflates only its chunk
MAX_WORKERS = 8  # processes building chunks at once, at most
# How the page names a verification's outcome (planguard.verify, the JSON's verification.outcome).
OUTCOMES = {"restores_old_plan": "restores OLD's plan", "improves": "improves", "no_effect": "no effect",
            "not_tried": "not tried"}
STATUS_ORDER = ("error", "regressed", "slower_same_plan", "unstable", "plan_changed", "improved",
                "unchanged", "skipped")


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:,.3f}" if v < 10 else f"{v:,.1f}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:,.0f}"


def _duration(seconds: float | None) -> str:
    """3725 -> '1 h 2 min'; 90 -> '1 min 30 s'; days for a long stats window."""
    if seconds is None:
        return "–"
    s = round(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else "",
             f"{s} s" if s and not days and not hours else ""]
    return " ".join(p for p in parts if p) or "0 s"


_env.filters["ms"] = _ms
_env.filters["duration"] = _duration
_env.filters["num"] = _num


def _static(name: str) -> str:
    return (resources.files("planguard.report") / "static" / name).read_text(encoding="utf-8")


@lru_cache(maxsize=4096)
def pretty_sql(query: str) -> str:
    """The statement pretty-printed by PostgreSQL's own parser (pglast), else as it is."""
    try:
        return str(pglast.prettify(query))
    except Exception:  # any text pglast cannot parse or print is shown raw
        return query


def _finite(v: Any) -> Any:
    """The value with NaN and infinities as None (JSON.parse accepts neither)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    return v


def _json_bytes(v: Any) -> bytes:
    """Compact JSON in UTF-8, NaN and infinities as null. orjson encodes the raw plans 8x faster
    than the json module (the largest part of a big report's CPU); the json module takes what
    it refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(v, default=str, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return json.dumps(_finite(v), separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _json(v: Any) -> str:
    return _json_bytes(v).decode()


def _script_json(v: Any) -> Markup:
    """JSON safe inside a ``<script type="application/json">`` element: no ``<`` can close it."""
    text = _json(v).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _side(m: dict[str, Any], with_tree: bool) -> dict[str, Any]:
    """What the page shows of one side's measurement (the plan text only without a tree)."""
    return {"median_ms": m.get("median_ms"), "times_ms": m.get("times_ms") or [],
            "shared_buffers": m.get("shared_buffers"), "temp_buffers": m.get("temp_buffers"),
            "runs": m.get("runs"), "error": m.get("error"), "indexes": m.get("indexes") or [],
            "warmup": m.get("warmup"), "plan_json": m.get("plan_json"),
            "plan_text": None if with_tree else m.get("plan_text")}


def _plans(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """The plan trees of a pair of measurements, from ``planguard.plantree``."""
    po, pn = old.get("plan_json"), new.get("plan_json")
    if po is None and pn is None:
        return None
    return plan_pair(po, pn)


def _pair_detail(x: dict[str, Any]) -> dict[str, Any]:
    plans = _plans(x["old"], x["new"])
    tree_old = bool(plans and plans.get("old"))
    tree_new = bool(plans and plans.get("new"))
    return {"status": x.get("status"), "reason": x.get("reason"), "timing": x.get("timing"),
            "changes": x.get("changes") or [], "plans": plans,
            "old": _side(x["old"], tree_old), "new": _side(x["new"], tree_new)}


def _detail(s: dict[str, Any]) -> dict[str, Any]:
    """One statement's detail, built by the page when the statement is expanded."""
    sets = []
    for p in s.get("param_sets") or []:
        d = _pair_detail(p)
        g = p.get("generic")
        conf = p.get("confirmation")
        d.update({"label": p["label"], "values": p.get("values") or [], "sources": p.get("sources") or [],
                  "guessed": p.get("guessed") or [], "results": p.get("results"),
                  "confirmation": None if conf is None else {"status": conf.get("status"),
                                                             "reason": conf.get("reason")},
                  "generic": None if g is None else {
                      **_pair_detail(g), "plan_cache_picks_generic": g.get("plan_cache_picks_generic")}})
        sets.append(d)
    return {"sql": pretty_sql(s["query"]), "reason": s.get("reason"), "impact": s.get("impact"),
            "decisive": s.get("decisive_param_set"), "param_sets": sets, "plan_only": s.get("plan_only"),
            "mean_ms_on_old": s.get("mean_ms_on_old"), "attribution": s.get("attribution"),
            "attribution_note": s.get("attribution_note")}


def _row(i: int, s: dict[str, Any]) -> dict[str, Any]:
    """One statement's line in the table (what sorting and filtering need)."""
    imp = s.get("impact") or {}
    return {"i": i, "fp": s["fingerprint"], "status": s["status"], "generic_status": s.get("generic_status"),
            "kind": s.get("kind"), "tables": s.get("tables") or [], "q": s["query"], "calls": s.get("calls"),
            "cps": s.get("calls_per_second"), "old_ms": s["old"].get("median_ms"),
            "new_ms": s["new"].get("median_ms"), "ratio": s.get("time_ratio"),
            "old_buf": s["old"].get("shared_buffers"), "new_buf": s["new"].get("shared_buffers"),
            "aas": imp.get("extra_active_sessions"), "changes": [c["detail"] for c in s.get("changes") or []],
            "attr": s.get("attribution"), "attr_note": s.get("attribution_note")}


def _table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of the same keys as ``{"keys": [...], "values": [[...], ...]}``: each key once, not
    once a row (a third of the table on 5,000 statements); the page makes the rows again."""
    keys = list(rows[0]) if rows else []
    return {"keys": keys, "values": [list(r.values()) for r in rows]}


def _points(i: int, s: dict[str, Any]) -> list[list[Any]]:
    """The scatter chart's points: one per parameter set measured on both sides."""
    out = []
    for p in s.get("param_sets") or []:
        o, n = p["old"].get("median_ms"), p["new"].get("median_ms")
        if o is not None and n is not None:
            out.append([i, p["label"], o, n, p.get("status")])
    return out


def _detail_block(statements: list[dict[str, Any]]) -> tuple[str, Markup]:
    """The statements' details as one JSON block, or as gzip+base64 chunks when they are big.

    Built CHUNK statements at a time until they are past COMPRESS_ABOVE; from then on each
    chunk is compressed as it is built (``_chunks``, in parallel where the machine allows),
    so only a chunk's details (plan trees) live at once, however many statements there are."""
    details: list[dict[str, Any]] = []
    texts: list[bytes] = []  # the chunks so far, packed, as JSON
    size = 0
    for k in range(0, len(statements), CHUNK):
        part = [_detail(s) for s in statements[k:k + CHUNK]]
        texts.append(_json_bytes(_packed(part)))
        size += len(texts[-1])
        details.extend(part)
        if size > COMPRESS_ABOVE:
            chunks = [_gzip(t) for t in texts]
            chunks.extend(_chunks(statements, range(k + CHUNK, len(statements), CHUNK)))
            return "gzip", _script_json({"size": CHUNK, "chunks": chunks})
    return "json", _script_json(details)


def _packed(details: list[dict[str, Any]]) -> list[Any]:
    """A chunk as it is compressed: ``[details, trees, raw plans]``, the plan trees and the raw
    plans (each pair's, in the order of the details, a set's generic pair after it) moved out
    of the details into lists of their own. Alike next to alike, gzip finds more to share
    within its 32 KB window: 18 % smaller on the recorded demo's plans. The page puts them
    back (``report.js``: ``unpacked``)."""
    trees: list[Any] = []
    raws: list[Any] = []
    out = []
    for d in details:
        sets = []
        for p in d["param_sets"]:
            pairs = [p] + ([p["generic"]] if p.get("generic") else [])
            moved = []
            for x in pairs:
                trees.append(x["plans"])
                raws.append([x["old"]["plan_json"], x["new"]["plan_json"]])
                moved.append({**x, "plans": None, "old": {**x["old"], "plan_json": None},
                              "new": {**x["new"], "plan_json": None}})
            if len(moved) > 1:
                moved[0]["generic"] = moved[1]
            sets.append(moved[0])
        out.append({**d, "param_sets": sets})
    return [out, trees, raws]


def _gzip(data: bytes) -> str:
    """gzip (zlib-ng's, level 9: 11 % smaller than zlib's level 6 and quicker) in base64; no
    date in the header: the same report gives the same bytes."""
    return base64.b64encode(gzip_ng.compress(data, 9, mtime=0)).decode("ascii")


def _chunk_of(statements: list[dict[str, Any]], k: int) -> str:
    """The chunk of statements from index ``k``: details built, JSON, compressed (bytes all
    the way: a chunk's megabytes of JSON are never copied into a str and back)."""
    return _gzip(_json_bytes(_packed([_detail(s) for s in statements[k:k + CHUNK]])))


_forked: list[dict[str, Any]] = []  # the statements forked workers build chunks of


def _forked_chunk(k: int) -> str:
    return _chunk_of(_forked, k)


def _chunks(statements: list[dict[str, Any]], starts: range) -> list[str]:
    """The compressed chunks from each of ``starts``, in order. Each is CPU work alone (plan
    trees, JSON, gzip): with several cores and no other thread in this process, forked
    workers build them in parallel from the statements they inherit (a chunk's index is all
    that is sent to them); else this process, one after the other. The same chunks either way."""
    workers = min(os.cpu_count() or 1, len(starts), MAX_WORKERS)
    if workers < 2 or "fork" not in mp.get_all_start_methods() or threading.active_count() > 1:
        return [_chunk_of(statements, k) for k in starts]
    global _forked
    _forked = statements
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            return list(pool.map(_forked_chunk, starts))
    finally:
        _forked = []


def _groups(findings: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Findings grouped by kind, groups in the order their first finding comes."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        groups.setdefault(f["kind"], []).append(f)
    return list(groups.items())


def render_html(context: dict[str, Any]) -> str:
    """Render the report from ``planguard.report.json.to_dict`` output."""
    with long_lived():  # the report's dict lives on: no collection needs to walk it
        return _render(context)


def _render(context: dict[str, Any]) -> str:
    statements = context.get("statements") or []
    data = {"rows": _table([_row(i, s) for i, s in enumerate(statements)]),
            "points": [pt for i, s in enumerate(statements) for pt in _points(i, s)],
            "statuses": list(STATUS_ORDER),
            "time_ratio": (context.get("thresholds") or {}).get("time_ratio"),
            "redacted": context.get("redacted", False), "detail_keys": list(DETAIL_KEYS)}
    encoding, detail = _detail_block(statements)
    script = _static("report.js")
    if "</script" in script.lower():
        raise RuntimeError("report.js must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    findings = context.get("findings") or []
    blockers = [f for f in findings if f["severity"] == "blocker"]
    # Verified fixes: every blocker (one without a trial shows as not verified), then any other
    # finding whose fix was tried; none at all when the run did not verify.
    verified = [] if context.get("verification") is None else blockers + [
        f for f in findings if f["severity"] != "blocker" and f.get("verification")]
    return _env.get_template("report.html.j2").render(
        r=context, blockers=blockers, groups=_groups(findings), verified=verified, outcomes=OUTCOMES,
        warnings=sum(1 for f in findings if f["severity"] == "warning"),
        by_id={f["id"]: f for f in findings},
        css=Markup(_static("report.css")), script=Markup(script), script_hash=digest,
        data=_script_json(data), detail=detail, detail_encoding=encoding)
