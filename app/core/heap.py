"""The long-lived heap kept out of Python's full garbage collections.

A serving process holds many long-lived objects (the index's rows, the tokenizer's and Lingua's
Python side) that every full collection would walk while requests wait: `gc.freeze()` moves them
to a permanent generation that collections skip, and the young generation's threshold goes up
(a /search request allocates a few thousand containers).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 20_000
# The thresholds before the first raise, which `thaw` puts back.
_saved_thresholds: tuple[int, int, int] | None = None


def freeze_long_lived(reason: str) -> int:
    """Freeze every object alive now; returns the frozen count. What was frozen before is thawed
    and collected first, so cycles among objects frozen earlier (an old collection's, after a
    reindex) are reclaimed instead of kept for the life of the process."""
    global _saved_thresholds
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    if _saved_thresholds is None:
        _saved_thresholds = gc.get_threshold()
        gc.set_threshold(GEN0_THRESHOLD, *_saved_thresholds[1:])
    frozen = gc.get_freeze_count()
    log.info("%d long-lived objects kept out of garbage collection (%s)", frozen, reason)
    return frozen


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's `malloc_trim`; elsewhere
    nothing): glibc keeps freed pages mapped, so RSS would only grow from reindex to reindex."""
    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):  # no such library, or no malloc_trim
        if name:
            ctypes.CDLL(name).malloc_trim(0)


def thaw() -> None:
    """At shutdown: unfreeze and put the thresholds back, so an app stopped inside a longer-lived
    process (a test run) leaves the process collecting as before."""
    global _saved_thresholds
    gc.unfreeze()
    if _saved_thresholds is not None:
        gc.set_threshold(*_saved_thresholds)
        _saved_thresholds = None
