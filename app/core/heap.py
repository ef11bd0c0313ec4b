"""The long-lived heap kept out of Python's full garbage collections.

A serving process holds many long-lived objects (the matrix snapshot's rows, qdrant-client's
local points and payloads, the tokenizer's and Lingua's Python side). Every full (generation 2)
collection walks all of them while the request path waits, and under load requests allocate
fast enough to trigger one often. `make bench-100k` at c=32 measured it, with and without the
freeze in one sitting: p99 132-150 ms -> 54 ms on the sample index and about 1.9 s -> 127 ms at
100k entries. `gc.freeze()` moves everything alive now to a permanent generation that
collections skip; frozen objects are still freed by reference counting when dropped (only a
reference cycle among them waits, until the next call here). It runs once the service is
loaded, again after a reindex has loaded the new collection and after a worker's replica
reload, and `thaw` undoes it at shutdown.

The same calls raise the young generation's threshold: Python collects generation 0 every 700
net allocations of container objects, and a `/search` request makes a few thousand (dicts,
lists, the hits, pydantic's and Starlette's objects), so several young collections ran per
request. At 20,000 (`make ab-serve`, the code before as B, `docs/bench/2026-11-26-ab-paired/`):
c=32 5% more req/s (12 of 12 pairs), but a lone query's p50 4% higher (19 of 20), and as much at
5,000; kept for the throughput. Reference cycles are still reclaimed, in larger and rarer
passes: request garbage is freed by reference counting, not by the collector.
"""

from __future__ import annotations

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


def thaw() -> None:
    """At shutdown: hand the frozen objects back to the collector and put the thresholds back
    (an app stopped inside a longer-lived process, such as a test run, then leaves no cycles
    behind and the process collects as before)."""
    global _saved_thresholds
    gc.unfreeze()
    if _saved_thresholds is not None:
        gc.set_threshold(*_saved_thresholds)
        _saved_thresholds = None
