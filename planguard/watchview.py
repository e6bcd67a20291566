"""The watch's live terminal view (rich), or plain lines when the output is not a terminal.

On a terminal: the call, its fixes and evidence, and a table of the top statements by load
with their baseline ratios, redrawn each interval (``rich.live.Live``).  Piped or in CI: one
line per interval (the call and the top statement), and every event on its own line.
"""

from __future__ import annotations

from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from planguard.watch import OK, RECOVERED, REGRESSION, ROLLBACK, STARTING, Interval

STYLE = {ROLLBACK: "bold white on red", REGRESSION: "bold red", RECOVERED: "bold green", OK: "green",
         STARTING: "dim"}
STATE_STYLE = {"regressed": "bold red", "slower": "red", "suspect": "yellow", "recovering": "yellow",
               "ok": "green", "new": "cyan", "few_calls": "dim"}


def _num(v: float | None, fmt: str = "{:,.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def render(iv: Interval) -> Group:
    """The view of one interval."""
    head = Text()
    head.append(f" {iv.call.verdict} ", style=STYLE.get(iv.call.verdict, ""))
    head.append(f"  interval {iv.number} · {iv.at} · {iv.total_load:.2f} active sessions · "
                f"{iv.statements_seen} statements")
    if iv.watch_load:
        head.append(f" · watch: {iv.watch_load['queries']:.0f} queries, {iv.watch_load['server_ms']:.1f} ms",
                    style="dim")
    parts: list[object] = [head]
    if iv.call.verdict not in (OK, STARTING):
        parts.append(Text(iv.call.summary))
    for fix in iv.call.fixes:
        parts.append(Text(f"  fix: {fix}", style="bold"))
    for line in iv.call.evidence:
        parts.append(Text(f"  {line}", style="dim"))
    for event in iv.events:
        parts.append(Text(f"  ! {event}", style="yellow"))
    table = Table(expand=True, show_lines=False, header_style="bold")
    for name, justify in (("#", "right"), ("statement", "left"), ("state", "left"),
                          ("calls/s (base)", "right"), ("mean ms (base)", "right"),
                          ("ratio", "right"), ("load", "right"), ("+sessions", "right")):
        table.add_column(name, justify=justify, no_wrap=name != "statement")  # type: ignore[arg-type]
    for i, r in enumerate(iv.rows, 1):
        table.add_row(str(i), f"{r.short_id} {' '.join(r.query.split())[:70]}",
                      Text(r.state.replace("_", " "), style=STATE_STYLE.get(r.state, "")),
                      f"{r.rate:,.1f} ({_num(r.base_rate, '{:,.1f}')})",
                      f"{_num(r.mean_ms)} ({_num(r.base_mean_ms)})",
                      _num(r.ratio, "{:,.1f}×"), f"{r.share:.0%}", _num(r.added_sessions, "{:+.2f}"))
    parts.append(table)
    return Group(*parts)  # type: ignore[arg-type]


def line(iv: Interval) -> str:
    """One interval as one line, for logs and CI."""
    top = iv.rows[0] if iv.rows else None
    text = f"[{iv.at}] #{iv.number} {iv.call.verdict}"
    suspects = [r for r in iv.rows if r.state == "suspect"]
    if iv.call.verdict not in (OK, STARTING):
        text += f": {iv.call.summary}"
    elif suspects:
        text += "; confirming: " + ", ".join(f"{r.short_id} {_num(r.ratio, '{:,.1f}×')}"
                                             for r in suspects[:3])
    elif top is not None:
        text += (f": top {top.short_id} {top.share:.0%} of load, {_num(top.mean_ms)} ms"
                 + (f" ({_num(top.ratio, '{:,.1f}×')} baseline)" if top.ratio is not None else ""))
    if not iv.counted:
        text += " (not counted)"
    return text


class View:
    """Shows each interval: live on a terminal, as lines otherwise."""

    def __init__(self, stream: IO[str], live: bool | None = None) -> None:
        self.console = Console(file=stream, highlight=False, soft_wrap=False)
        self.live_mode = self.console.is_terminal if live is None else live
        self._live: Live | None = None

    def __enter__(self) -> View:
        if self.live_mode:
            self._live = Live(Text("planguard watch: waiting for the first interval…"), console=self.console,
                              auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def show(self, iv: Interval) -> None:
        if self._live is not None:
            self._live.update(render(iv), refresh=True)
            return
        self.console.print(line(iv), markup=False, highlight=False, soft_wrap=True)
        for event in iv.events:
            self.console.print(f"  ! {event}", markup=False, highlight=False, soft_wrap=True)
        for fix in iv.call.fixes if iv.call.verdict in (REGRESSION, ROLLBACK) else ():
            self.console.print(f"  fix: {fix}", markup=False, highlight=False, soft_wrap=True)

    def say(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)
