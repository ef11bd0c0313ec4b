"""The long-lived heap kept out of Python's full garbage collections.

A serving process holds many long-lived objects (the loaded index's rows, the tokenizer's and
Lingua's Python side); every full collection walks them all while requests wait. `gc.freeze()`
moves everything alive now to a permanent generation that collections skip (frozen objects are
still freed by reference counting): run once the service is loaded and after a reindex, undone
by `thaw` at shutdown. On the old store it cut the c=32 p99 from 132-150 ms to 54 ms on the
sample index and from about 1.9 s to 127 ms at 100k entries (`make bench-100k`).

The young generation's threshold goes up too (a /search request allocates a few thousand
containers, so several young collections ran per request): at 20,000, c=32 served 5% more
req/s and a lone query's p50 rose 4% (`make ab-serve`); kept for the throughput.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 20_000
# The thresholds before the first raise, which `thaw` puts back.
_saved_thresholds: tuple[int, int, int] | None = None


def freeze_long_lived(reason: str) -> int:
    """Freeze every object alive now (see the module doc); returns the frozen count.

    What was frozen before is thawed and collected first, so garbage cycles among objects
    frozen earlier (an old collection's, after a reindex) are reclaimed at each call instead of
    kept for the life of the process: one full collection per call, off the request path."""
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
    nothing). A reindex frees the old version's arrays and the build's buffers, but glibc keeps
    freed heap pages mapped, so without this the process's RSS only grows from build to build."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is not None:
        trim(0)


def thaw() -> None:
    """At shutdown: hand the frozen objects back to the collector and put the thresholds back
    (an app stopped inside a longer-lived process, such as a test run, then leaves no cycles
    behind and the process collects as before)."""
    global _saved_thresholds
    gc.unfreeze()
    if _saved_thresholds is not None:
        gc.set_threshold(*_saved_thresholds)
        _saved_thresholds = None
