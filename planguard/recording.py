"""What both clusters answered during a comparison, and its file form (pure: no database).

``planguard.runner`` fills one ``SideRecord`` per cluster; ``planguard.judge`` decides from
them alone.  A ``Recording`` saved with ``save`` and read with ``load`` is judged again
without touching a server: the golden tests replay real recordings this way, and a
reviewer can keep the raw evidence of a comparison (``compare --save-recording``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planguard.checks.readiness import ClusterSnapshot
from planguard.errors import PlanguardError, WorkloadError
from planguard.measure import Digest, Run, Warmup, not_measured
from planguard.plan import Plan, parse_plan, plan_json
from planguard.workload import ParamSet, Statement

CUSTOM, GENERIC, CONFIRM = "custom", "generic", "confirm"
Key = tuple[str, str, str]  # (statement key, parameter set label, CUSTOM | GENERIC | CONFIRM)
RECORDING_FORMAT = 1
# Why a run stopped early (``Stopped.kind``): a signal, a fault, a budget spent.
INTERRUPTED, FAULT, BUDGET = "interrupted", "fault", "budget"


@dataclass(frozen=True)
class ServerInfo:
    label: str
    version: str
    version_num: int
    dsn: str  # redacted
    # What tells one running cluster from another (port, postmaster start, system identifier):
    # the same on both sides means one cluster compared with itself.
    identity: str | None = None

    @property
    def major(self) -> int:
        return self.version_num // 10000


@dataclass
class SideRecord:
    """Everything one cluster was asked and answered during a comparison."""

    info: ServerInfo | None = None
    runs: dict[Key, list[Run]] = field(default_factory=dict)
    errors: dict[Key, str] = field(default_factory=dict)
    warmups: dict[Key, Warmup] = field(default_factory=dict)
    auto_generic: dict[str, bool | None] = field(default_factory=dict)  # by statement key
    plan_only: dict[str, Plan | str] = field(default_factory=dict)
    readiness: dict[str, ClusterSnapshot] = field(default_factory=dict)  # by database
    digests: dict[tuple[str, str], Digest | str] = field(default_factory=dict)
    executions: int = 0  # EXPLAIN ANALYZE executions of workload statements, warm-ups included
    server_ms: float = 0.0  # their planning plus execution time
    reconnects: int = 0  # sessions lost (terminated, dropped) and opened again
    # Why planguard's executions counted in the cluster's activity statistics (SET track_counts
    # = off refused), and the role it ran as; None when they left no trace.
    counted: str | None = None
    counted_role: str | None = None

    def done(self, key: Key) -> bool:
        """``key`` was measured, or failed for a reason of its own (not cut short by a stop,
        nor by a lock another session held)."""
        if key in self.errors:
            return not not_measured(self.errors[key])
        return key in self.runs

    def kept(self) -> SideRecord:
        """A copy without the parameter sets that were not measured (cut short, or a lock
        held): what a resumed run keeps."""
        cut = {k for k, e in self.errors.items() if not_measured(e)}
        return SideRecord(
            info=self.info,
            runs={k: list(v) for k, v in self.runs.items() if k not in cut},
            errors={k: v for k, v in self.errors.items() if k not in cut},
            warmups={k: v for k, v in self.warmups.items() if k not in cut},
            auto_generic=dict(self.auto_generic), plan_only=dict(self.plan_only),
            readiness=dict(self.readiness), digests=dict(self.digests),
            executions=self.executions, server_ms=self.server_ms, reconnects=self.reconnects,
            counted=self.counted, counted_role=self.counted_role,
        )

    def to_dict(self) -> dict[str, Any]:
        def key(k: tuple[str, ...]) -> str:
            return "\x1f".join(k)

        return {
            "info": None if self.info is None else vars(self.info),
            "runs": {key(k): [_run(r) for r in runs] for k, runs in self.runs.items()},
            "errors": {key(k): v for k, v in self.errors.items()},
            "warmups": {key(k): {"runs": w.runs, "first_read": w.first_read, "last_read": w.last_read,
                                 "reads_by_relation": [list(x) for x in w.reads_by_relation]}
                        for k, w in self.warmups.items()},
            "auto_generic": dict(self.auto_generic),
            "plan_only": {k: v if isinstance(v, str) else {"plan": plan_json(v)}
                          for k, v in self.plan_only.items()},
            "readiness": {k: v.to_dict() for k, v in self.readiness.items()},
            "digests": {key(k): v if isinstance(v, str) else vars(v) for k, v in self.digests.items()},
            "executions": self.executions,
            "server_ms": self.server_ms,
            "reconnects": self.reconnects,
            "counted": self.counted,
            "counted_role": self.counted_role,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SideRecord:
        def key(k: str) -> Any:
            return tuple(k.split("\x1f"))

        return cls(
            info=None if d["info"] is None else ServerInfo(**d["info"]),
            runs={key(k): [_unrun(r) for r in runs] for k, runs in d["runs"].items()},
            errors={key(k): v for k, v in d["errors"].items()},
            warmups={key(k): Warmup(w["runs"], w["first_read"], w["last_read"],
                                    tuple((str(a), int(b)) for a, b in w["reads_by_relation"]))
                     for k, w in d["warmups"].items()},
            auto_generic=dict(d["auto_generic"]),
            plan_only={k: v if isinstance(v, str) else parse_plan(v["plan"])
                       for k, v in d["plan_only"].items()},
            readiness={k: ClusterSnapshot.from_dict(v) for k, v in d["readiness"].items()},
            digests={key(k): v if isinstance(v, str) else Digest(**v) for k, v in d["digests"].items()},
            executions=int(d["executions"]),
            server_ms=float(d["server_ms"]),
            reconnects=int(d.get("reconnects", 0)),
            counted=d.get("counted"),
            counted_role=d.get("counted_role"),
        )


def _run(r: Run) -> dict[str, Any]:
    return {"execution_ms": r.execution_ms, "planning_ms": r.planning_ms, "shared_buffers": r.shared_buffers,
            "temp_buffers": r.temp_buffers, "shared_read": r.shared_read, "plan": plan_json(r.plan)}


RUN_KEYS = frozenset(("execution_ms", "planning_ms", "shared_buffers", "temp_buffers", "shared_read", "plan"))


def _run_hook(d: dict[str, Any]) -> Any:
    """``json.loads``'s object hook: a run's object becomes its ``Run`` as soon as it is read,
    so the file's plan objects never all live at once (the plan keeps them compact)."""
    if len(d) == len(RUN_KEYS) and d.keys() == RUN_KEYS:
        return _unrun(d)
    return d


def _unrun(d: dict[str, Any] | Run) -> Run:
    if isinstance(d, Run):
        return d  # read by _run_hook
    return Run(d["execution_ms"], d["planning_ms"], d["shared_buffers"], d["temp_buffers"],
               parse_plan(d["plan"]), d["shared_read"])


@dataclass(frozen=True)
class Stopped:
    """Why a run ended before the end of its workload.

    ``kind``: ``interrupted`` (a signal), ``fault`` (a cluster lost, a step that failed twice)
    or ``budget`` (``--max-total``, ``--max-old-server-time``); ``in_flight``: the parameter
    sets that were running then (marked ``not finished`` on both sides).
    """

    reason: str
    kind: str
    in_flight: tuple[Key, ...] = ()


@dataclass(frozen=True)
class Recording:
    """What both clusters answered; ``stopped`` when the run ended early (a partial result);
    ``retries``: steps run again after a lost session or a cancel; ``paused_s``: time spent
    waiting for a busy OLD (``--polite``); ``kept``: parameter sets a resumed run kept."""

    old: SideRecord
    new: SideRecord
    stopped: Stopped | None = None
    retries: int = 0
    paused_s: float = 0.0
    kept: int = 0  # parameter sets a resumed run took from the recording it resumed

    def save(self, path: Path) -> None:
        stopped = None if self.stopped is None else {
            "reason": self.stopped.reason, "kind": self.stopped.kind,
            "in_flight": ["\x1f".join(k) for k in self.stopped.in_flight]}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"format": RECORDING_FORMAT, "old": self.old.to_dict(),
                                        "new": self.new.to_dict(), "stopped": stopped,
                                        "retries": self.retries, "paused_s": self.paused_s,
                                        "kept": self.kept},
                                       sort_keys=True) + "\n")
        except OSError as exc:
            raise PlanguardError(f"cannot write the recording {path}: {exc.strerror or exc}") from exc

    @classmethod
    def load(cls, path: Path) -> Recording:
        return cls.from_data(_read(path, "cannot read recording {path}"), path)

    @classmethod
    def from_data(cls, data: Any, path: Path) -> Recording:
        """The recording of ``data``, a file's JSON as ``_read`` gives it (runs already read)."""
        if not isinstance(data, dict) or data.get("format") != RECORDING_FORMAT:
            raise WorkloadError(f"{path} is not a planguard recording of format {RECORDING_FORMAT}")
        try:
            st = data.get("stopped")
            stopped = None if not st else Stopped(
                st["reason"], st["kind"], tuple(tuple(k.split("\x1f")) for k in st["in_flight"]))
            return cls(SideRecord.from_dict(data["old"]), SideRecord.from_dict(data["new"]), stopped,
                       int(data.get("retries", 0)), float(data.get("paused_s", 0.0)),
                       int(data.get("kept", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkloadError(f"{path}: malformed recording ({exc!r})") from exc


def _read(path: Path, failure: str) -> Any:
    """The JSON of ``path``, each run's object read into its Run as it comes (``_run_hook``);
    ``failure``: the error's words, ``{path}`` in them."""
    try:
        return json.loads(path.read_text(), object_hook=_run_hook)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a plan's PlanFormatError too
        why = getattr(exc, "strerror", None) or exc
        raise WorkloadError(f"{failure.format(path=path)}: {why}") from exc


def param_sets_of(stmt: Statement) -> tuple[ParamSet, ...]:
    """The sets to run; a statement without parameters runs once with none."""
    if stmt.param_sets:
        return stmt.param_sets
    if not stmt.bindings:
        return (ParamSet("no parameters", ()),)
    return ()


def resume_from(path: Path) -> Recording:
    """The recording to resume: ``path`` is one, or the JSON report of a comparison that
    names its recording (a partial run always saves one)."""
    data = _read(path, "cannot read {path} to resume from")
    if isinstance(data, dict) and "format" in data and "old" in data:
        return Recording.from_data(data, path)  # read once, run by run
    if not isinstance(data, dict) or "verdict" not in data:
        raise WorkloadError(f"{path} is neither a planguard JSON report nor a recording")
    recording = data.get("recording")
    if not recording:
        raise WorkloadError(f"{path} names no recording to resume from: it was complete, and was not "
                            "run with --save-recording")
    target = Path(recording)
    if not target.is_absolute():
        target = path.parent / target
    return Recording.load(target)
