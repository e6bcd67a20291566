"""User-facing errors.

The library raises these with a message that says what was tried and how to fix it;
only ``planguard.cli`` turns them into a one-line message and exit code 2.
"""

from __future__ import annotations


class PlanguardError(Exception):
    """Base class for every error planguard reports to a user (exit code 2)."""


class ConnectionFailed(PlanguardError):
    """A cluster could not be reached or refused the connection."""


class InsufficientPrivilege(PlanguardError):
    """The role lacks a privilege a step needs; the message names it."""


class WorkloadError(PlanguardError):
    """A workload file is missing, unreadable or of an unknown format."""


class CaptureError(PlanguardError):
    """Statements could not be read from the old cluster."""


class ClusterError(PlanguardError):
    """A throwaway cluster could not be created, started or stopped."""


class ConfigError(PlanguardError):
    """A threshold or option has an invalid value."""


class SnapshotError(PlanguardError):
    """A recorded catalog snapshot is unreadable or of an unknown format."""


def one_line(exc: BaseException, *, last: bool = False) -> str:
    """An error as one line: PostgreSQL's primary message when the server sent one, else the
    first (or, with ``last``, the last) line of its text, else the exception's type."""
    diag = getattr(exc, "diag", None)
    text = getattr(diag, "message_primary", None) or str(exc)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if last else lines[0]
