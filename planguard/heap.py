"""Long-lived objects kept out of Python's cyclic garbage collector while a big step runs (pure).

Judging and rendering thousands of statements allocate millions of small objects while the
recording's plans (millions more) stay alive throughout. Each full collection the
allocations trigger walks every one of them and frees nothing: on 5,000 statements of
50-node plans that is half of the judging time. ``long_lived()`` moves what exists when it
is entered to the collector's permanent generation (``gc.freeze``) and pauses the collector
until the outermost block ends; then it gives them back (``gc.unfreeze``) and lets it run
again. Memory is still freed as objects lose their last reference; only reference cycles
made inside the block wait for its end (judging and rendering make next to none).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_was_enabled = True


@contextmanager
def long_lived() -> Iterator[None]:
    """Exclude the objects that exist now from the collector's scans until the block ends."""
    global _depth, _was_enabled
    if _depth == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
            if _was_enabled:
                gc.enable()
