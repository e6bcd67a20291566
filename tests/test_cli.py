"""CLI exit codes and one-line errors (no server needed: bad input fails before any query)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from planguard.workload import Source, Statement, Workload


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planguard.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def assert_one_line_error(res: subprocess.CompletedProcess[str], needle: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("planguard: error:"), res.stderr
    assert needle in lines[0]


@pytest.fixture
def workload_file(tmp_path: Path) -> Path:
    path = tmp_path / "w.json"
    Workload(Source("18.0", 180000, "postgres", "host=x", "2026-01-01"),
             (Statement("f", "SELECT 1 FROM t", "select"),)).save(path)
    return path


def test_help_everywhere() -> None:
    for args in ([], ["capture"], ["compare"], ["check"], ["report"], ["demo"]):
        res = run(*args, "--help")
        assert res.returncode == 0 and "Usage:" in res.stdout


def test_missing_workload_file(tmp_path: Path) -> None:
    res = run("compare", "host=127.0.0.1", "host=127.0.0.1", "-w", str(tmp_path / "none.json"))
    assert_one_line_error(res, "cannot read workload")


def test_workload_of_unknown_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 7}')
    assert_one_line_error(run("compare", "a", "b", "-w", str(bad)), "format_version 7 is not supported")


def test_unreachable_cluster(workload_file: Path, tmp_path: Path) -> None:
    res = run("compare", "host=127.0.0.1 port=1", "host=127.0.0.1 port=1", "-w", str(workload_file),
              "-o", str(tmp_path / "r.html"))
    assert_one_line_error(res, "cannot connect to")


def test_invalid_dsn(workload_file: Path) -> None:
    assert_one_line_error(run("compare", "nonsense=1", "x", "-w", str(workload_file)), "invalid DSN")


def test_capture_unreachable_and_bad_threshold(tmp_path: Path, workload_file: Path) -> None:
    res = run("capture", "--dsn", "host=127.0.0.1 port=1 password=hunter2", "-o", str(tmp_path / "w.json"))
    assert_one_line_error(res, "cannot connect to old cluster")
    assert "hunter2" not in res.stderr
    res = run("compare", "a", "b", "-w", str(workload_file), "--time-ratio", "0.5")
    assert_one_line_error(res, "time_ratio and buffers_ratio must be at least 1.0")


def test_usage_errors_exit_2() -> None:
    assert run("compare").returncode == 2
    assert run("capture", "--top", "0", "--dsn", "x", "-o", "y").returncode == 2
