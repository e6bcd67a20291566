"""Recorded real comparisons judged again, without a server: the same report, byte for byte.

tests/fixtures/record_recordings.py (``make fixtures``) recorded what both clusters answered
for the demo's postmortem, as restored and after ANALYZE, and the report judged from it.
The judgement is pure, so judging the recording again must give exactly that report; a
change that alters it is a change in behaviour, to be recorded again on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from planguard.config import Thresholds
from planguard.judge import comparison_of
from planguard.loader import load
from planguard.recording import Recording
from planguard.report import to_dict
from tests.fixtures.record_recordings import OUT, dump

NAMES = sorted(p.name.removesuffix(".recording.json") for p in OUT.glob("*.recording.json"))


@pytest.mark.parametrize("name", NAMES)
def test_a_recorded_comparison_is_judged_the_same(name: str) -> None:
    recording = Recording.load(OUT / f"{name}.recording.json")
    workload = load(OUT / f"{name}.workload.json")
    result = comparison_of(workload, recording, Thresholds(), repeat=5, redact=False,
                           started_at="recorded", duration_s=0.0)
    expected = (OUT / f"{name}.report.json").read_text()
    assert dump(to_dict(result)) == expected


def test_the_recordings_are_there() -> None:
    assert NAMES == ["demo_after_analyze", "demo_as_restored"], "run make fixtures"


def test_a_recording_round_trips(tmp_path: Path) -> None:
    recording = Recording.load(OUT / "demo_as_restored.recording.json")
    recording.save(tmp_path / "again.json")
    assert Recording.load(tmp_path / "again.json") == recording
    recording.old.counted, recording.old.counted_role = "permission denied to set parameter", "app"
    recording.save(tmp_path / "counted.json")
    again = Recording.load(tmp_path / "counted.json")
    assert again == recording and again.old.counted_role == "app" and again.new.counted is None


def test_recording_files_fail_with_one_clear_line(tmp_path: Path) -> None:
    from planguard.errors import PlanguardError, WorkloadError

    recording = Recording.load(OUT / "demo_after_analyze.recording.json")
    (tmp_path / "file").write_text("")
    with pytest.raises(PlanguardError, match="cannot write the recording"):
        recording.save(tmp_path / "file" / "inside.json")  # a file where a folder should be
    (tmp_path / "bad.json").write_text('{"format": 9}')
    with pytest.raises(WorkloadError, match="not a planguard recording of format 1"):
        Recording.load(tmp_path / "bad.json")
    with pytest.raises(WorkloadError, match="cannot read recording"):
        Recording.load(tmp_path / "missing.json")


def test_a_recording_is_read_run_by_run_as_its_plain_json_says(tmp_path: Path) -> None:
    """``Recording.load`` turns each run's object into its Run as the file is read (so a big
    recording's plan objects never all live at once): the same record as reading the whole
    JSON first; a run whose plan is not EXPLAIN output is one clear error, no traceback."""
    import json

    from planguard.errors import WorkloadError
    from planguard.recording import SideRecord

    path = OUT / "demo_as_restored.recording.json"
    data = json.loads(path.read_text())
    recording = Recording.load(path)
    assert recording.old == SideRecord.from_dict(data["old"])
    assert recording.new == SideRecord.from_dict(data["new"])
    assert sum(len(v) for v in recording.new.runs.values()) == sum(len(v) for v in data["new"]["runs"].values())
    key = next(iter(data["new"]["runs"]))
    data["new"]["runs"][key][0]["plan"] = [{"Plan": {"Rows": 3}}]
    (tmp_path / "bad_plan.json").write_text(json.dumps(data))
    with pytest.raises(WorkloadError, match=r"cannot read recording .*Node Type"):
        Recording.load(tmp_path / "bad_plan.json")


def test_resuming_from_a_recording_reads_it_once_as_load_does(tmp_path: Path) -> None:
    """``resume_from`` given the recording itself reads it run by run, the same record as
    ``Recording.load``; a file it cannot read is one clear error naming what it was for."""
    from planguard.errors import WorkloadError
    from planguard.recording import resume_from

    path = OUT / "demo_as_restored.recording.json"
    assert resume_from(path) == Recording.load(path)
    (tmp_path / "broken.json").write_text('{"format": 1, "old": ')
    with pytest.raises(WorkloadError, match=r"cannot read .*broken\.json to resume from: "):
        resume_from(tmp_path / "broken.json")
