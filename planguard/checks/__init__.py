"""Readiness checks (pure): one module per check family, OLD's catalog against NEW's.

Each family module (``statistics``, ``indexes``, ``sequences``, ``settings``,
``environment``, with ``freshness`` shared by ``statistics`` and ``compare``) holds its
snapshot dataclasses and ``evaluate(old, new, thresholds) -> [Finding]``, and says in its
docstring why its kinds matter and what SQL fixes them; :mod:`~planguard.checks.readiness`
evaluates them all.  Nothing here touches a server: the SQL and ``gather(conn)`` that
build the snapshots are in :mod:`planguard.catalog`, and findings, their kinds and the
text helpers of remediations are in :mod:`planguard.findings`.
"""
