"""Progress: the pure event, throttled lines for CI and pipes, a bar on a terminal (no server)."""

from __future__ import annotations

import io

from planguard.progress import Bar, Lines, Silent, Step, eta_s, is_ci, line, reporter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_step_knows_its_fraction_and_eta() -> None:
    assert Step(0, 0).fraction == 1.0
    assert Step(5, 20).fraction == 0.25
    assert eta_s(Step(0, 20), 10.0) is None
    assert eta_s(Step(5, 20), 10.0) == 30.0
    text = line(Step(12, 40, 2), 36.0, "compare")
    assert text == "compare: 12/40 (30%), 2 regressions, ETA 1m24s, 0m36s elapsed"
    assert "ETA" not in line(Step(40, 40, 1), 100.0, "compare")
    assert "1 regression," in line(Step(40, 40, 1), 100.0, "compare")
    assert "check: 1/1 (100%), 2 blockers," in line(Step(1, 1, 2), 1.0, "check", "blocker")


def test_lines_are_throttled_by_time_and_by_share_of_the_work() -> None:
    out, clock = io.StringIO(), _Clock()
    lines = Lines(out, "compare", clock=clock)
    for done in range(0, 1001):
        clock.now = done * 0.001  # quick statements: the 10 % rule prints
        lines.step(Step(done, 1000, done // 100))
    lines.close()
    printed = out.getvalue().splitlines()
    assert printed[0].strip().startswith("compare: 1/1000 (0%)")  # the start itself is not a line
    assert printed[-1].strip().startswith("compare: 1000/1000 (100%), 10 regressions")
    assert 10 <= len(printed) <= 12, printed

    out, clock = io.StringIO(), _Clock()
    lines = Lines(out, "compare", clock=clock)
    for done in range(0, 9):
        clock.now = done * 4.0  # slow statements, 1/1000 of the work each: every 10 s
        lines.step(Step(done, 1000))
    lines.close()
    printed = out.getvalue().splitlines()
    # at the first done (4 s), then 10 s later or more (16 s, 28 s), and the last state when closed
    assert [p.split(": ")[1].split(" ")[0] for p in printed] == ["1/1000", "4/1000", "7/1000", "8/1000"]


def test_messages_pass_through_and_close_adds_nothing_twice() -> None:
    out = io.StringIO()
    lines = Lines(out, "check", clock=_Clock())
    lines.message("NEW in recovery")
    lines.step(Step(1, 1))
    lines.close()
    assert out.getvalue().splitlines() == ["  NEW in recovery", "  check: 1/1 (100%), 0 regressions, 0m00s elapsed"]


def test_the_reporter_fits_where_the_output_goes() -> None:
    assert isinstance(reporter("x", quiet=True, stream=_Tty(), env={}), Silent)
    assert isinstance(reporter("x", stream=_Tty(), env={}), Bar)
    assert isinstance(reporter("x", stream=_Tty(), env={"CI": "true"}), Lines)
    assert isinstance(reporter("x", stream=io.StringIO(), env={}), Lines)  # piped
    assert is_ci({"CI": "1"}) and not is_ci({"CI": "false"}) and not is_ci({})


def test_the_bar_shows_done_regressions_and_eta() -> None:
    from rich.console import Console

    out = io.StringIO()
    bar = Bar(out, "compare", console=Console(file=out, force_terminal=True, width=120))
    bar.step(Step(0, 10))
    bar.message("paused: OLD is busy")
    bar.step(Step(3, 10, 1))
    bar.close()
    text = out.getvalue()
    assert "compare" in text and "3/10" in text and "1 regression" in text and "ETA" in text
    assert "paused: OLD is busy" in text
    Silent().step(Step(1, 1))  # nothing, and no error
