"""Workload files of either format: capture's JSON (``planguard.workload``) or a hand-written
``.sql`` file (``planguard.sqlfile``), chosen by the file's suffix."""

from __future__ import annotations

from pathlib import Path

from planguard.safety import check_workload
from planguard.sqlfile import load_sql
from planguard.workload import Workload, load_json


def load(path: Path) -> Workload:
    """Read a workload file, ``.sql`` or JSON; a clear one-line error when it is not one."""
    workload = load_sql(path) if path.suffix == ".sql" else load_json(path)
    check_workload(workload, str(path))
    return workload
