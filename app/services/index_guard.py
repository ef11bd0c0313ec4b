"""Knows whether the live index can serve the loaded model, re-checked at most every few seconds.

The alias can move under a running service (a reindex in another process, a rollback), so the
answer is cached briefly rather than fixed at startup. A failed check is remembered only for
`failure_ttl_s` (at most 1 s; readiness probes always re-check), so the service becomes ready
as soon as the index appears or Qdrant answers again. With a `refresh` hook (several workers
on the embedded Qdrant) each check may first swap in a reloaded replica.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.core.config import Settings, collection_layout
from app.core.heap import freeze_long_lived
from app.wiring import IndexMode, index_mode, matrix_search, retrieval
from index_builder.store import FaqIndex, FaqIndexError, IndexInfo, open_client

log = logging.getLogger(__name__)

# What qdrant-client raises when the server is down, slow or answers with an error.
QDRANT_ERRORS: tuple[type[BaseException], ...] = (
    ResponseHandlingException,
    UnexpectedResponse,
    ConnectionError,
    TimeoutError,
)


class IndexUnavailableError(RuntimeError):
    """The index cannot answer now; the message says why and what to run."""


# Called before each check; returns a new index to serve (a reloaded replica) or None.
IndexRefresh = Callable[[], FaqIndex | None]


class IndexGuard:
    def __init__(
        self,
        index: FaqIndex,
        fingerprint: str,
        interval_s: float,
        *,
        refresh: IndexRefresh | None = None,
        failure_ttl_s: float | None = None,
    ) -> None:
        self.index = index
        self.fingerprint = fingerprint
        self.interval_s = interval_s
        # A failure is remembered briefly so that requests during an outage answer 503 at once
        # instead of each paying Qdrant's timeout; short, so recovery is noticed within a second.
        self.failure_ttl_s = min(interval_s, 1.0) if failure_ttl_s is None else failure_ttl_s
        self._refresh = refresh
        self._lock = threading.Lock()
        self._info: IndexInfo | None = None
        self._checked_at = 0.0
        self._failure: str | None = None
        self._failed_at = 0.0

    def current(self, *, force: bool = False) -> IndexInfo:
        """The live index if it matches the model, else `IndexUnavailableError`."""
        if not self._lock.acquire(blocking=False):
            # Another thread is checking (possibly waiting on a dead server): while the last
            # answer was a failure, say so now rather than queue behind that check.
            failure = self._failure
            if failure is not None and not force:
                raise IndexUnavailableError(failure)
            self._lock.acquire()
        try:
            now = time.monotonic()
            if not force:
                if self._info is not None and now - self._checked_at < self.interval_s:
                    return self._info
                if self._failure is not None and now - self._failed_at < self.failure_ttl_s:
                    raise IndexUnavailableError(self._failure)
            try:
                info = self._check()
            except IndexUnavailableError as exc:
                self._info = None
                self._failure = str(exc)
                self._failed_at = time.monotonic()
                raise
            self._info = info
            self._failure = None
            self._checked_at = time.monotonic()
            return info
        finally:
            self._lock.release()

    def cached(self) -> IndexInfo | None:
        """The last good check while it is fresh, without blocking; None when `current()`
        has to check (which may wait on a server or load a replica: not on the event loop)."""
        info = self._info
        if info is not None and time.monotonic() - self._checked_at < self.interval_s:
            return info
        return None

    def _check(self) -> IndexInfo:
        try:
            if self._refresh is not None:
                fresh = self._refresh()
                if fresh is not None:
                    # Searches read `guard.index` per call, so they move to the new one here.
                    self.index = fresh
                    freeze_long_lived("replica reloaded")
            return self.index.check_model(self.fingerprint)
        except FaqIndexError as exc:
            raise IndexUnavailableError(str(exc)) from exc
        except QDRANT_ERRORS as exc:
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc

    def invalidate(self) -> None:
        with self._lock:
            self._info = None

    def close(self) -> None:
        self.index.client.close()


def open_index_guard(settings: Settings, fingerprint: str) -> IndexGuard:
    """The guard over the index the settings name (`app.wiring.index_mode`); the lifespan
    closes it.

    - server: one client (it does not connect until the first call, so a server that is down
      at startup only makes the service not ready);
    - embedded: the process holds the data directory, as qdrant-client requires;
    - replica: an in-memory replica of the directory, reloaded when a writer bumps its
      generation (`app/services/replica.py`).
    """
    interval = settings.index_check_interval_s
    mode = index_mode(settings)
    if mode is IndexMode.REPLICA:
        # Imported here: only this mode needs it, and it imports index_builder.local_lock.
        from app.services.replica import ReplicaSource

        source = ReplicaSource(
            settings.qdrant_path,
            settings.collection_alias,
            lock_timeout_s=settings.replica_lock_timeout_s,
            matrix=matrix_search(settings),
            retrieval=retrieval(settings),
        )
        return IndexGuard(source.empty_index(), fingerprint, interval, refresh=source.refresh)
    client = open_client(
        url=settings.qdrant_url if mode is IndexMode.SERVER else None,
        api_key=settings.qdrant_api_key,
        path=settings.qdrant_path,
        timeout=settings.qdrant_timeout_s,
    )
    index = FaqIndex(
        client,
        alias=settings.collection_alias,
        keep=settings.keep_collections,
        matrix=matrix_search(settings),
        layout=collection_layout(settings),
        retrieval=retrieval(settings),
    )
    if mode is IndexMode.EMBEDDED:
        try:
            index.warm()
        except FaqIndexError as exc:
            # The guard reports it (not ready); searches load the snapshot once it can.
            log.warning("search matrix not loaded at startup: %s", exc)
    return IndexGuard(index, fingerprint, interval)
