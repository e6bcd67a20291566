"""Catalog reads (I/O): one module per check family, with its SQL and ``gather(conn)``.

Each ``gather`` reads one database's catalog over a psycopg connection into the frozen
snapshot dataclasses of its family; :mod:`planguard.catalog.readiness` reads every family
(``gather_all``) and runs the check on two clusters (``run_check``).  What the snapshots
mean, and the pure ``evaluate`` that turns them into findings, live in
:mod:`planguard.checks`, which never imports this package.
"""
