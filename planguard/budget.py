"""Budgets: what a comparison may ask of production before it stops or pauses (pure).

``planguard.runner`` checks them between steps: a budget spent ends the run (its partial
result is judged and reported as partial); a busy OLD pauses it (``--polite``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Limits on what a comparison may ask of the clusters (None: no limit).

    ``max_total_s``: the whole run's wall time, after which what was measured is judged and
    reported as partial; ``max_old_server_s``: the server time (planning plus execution of
    workload statements) planguard may spend on OLD, production; ``polite_active``: pause
    while OLD has more active sessions than this (other than planguard's own), and
    ``polite_lag_s``: ... while a replica or subscriber of OLD lags by more than this.
    """

    max_total_s: float | None = None
    max_old_server_s: float | None = None
    polite_active: int | None = None
    polite_lag_s: float | None = None

    @property
    def polite(self) -> bool:
        return self.polite_active is not None or self.polite_lag_s is not None

    def spent(self, elapsed_s: float, old_server_ms: float) -> str | None:
        """Why the run must stop now, or None."""
        if self.max_total_s is not None and elapsed_s >= self.max_total_s:
            return f"the time budget (--max-total {self.max_total_s:g} s) is spent"
        if self.max_old_server_s is not None and old_server_ms / 1000 >= self.max_old_server_s:
            return (f"the server time budget on OLD (--max-old-server-time {self.max_old_server_s:g} s) "
                    "is spent")
        return None

    def busy(self, active: int, lag_s: float | None) -> str | None:
        """Why OLD is too busy to be asked for more now (polite mode), or None."""
        if self.polite_active is not None and active > self.polite_active:
            return f"OLD has {active} active sessions (--polite {self.polite_active})"
        if self.polite_lag_s is not None and lag_s is not None and lag_s > self.polite_lag_s:
            return f"a replica of OLD lags by {lag_s:,.1f} s (--polite-max-lag {self.polite_lag_s:g})"
        return None
