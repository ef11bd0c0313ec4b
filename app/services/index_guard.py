"""Knows whether the live index can serve the loaded model, re-checked at most every few seconds.

The alias can move under a running service (a reindex in another process or worker, a
rollback), so the answer is cached briefly rather than fixed at startup. A failed check is
remembered for at most a second (readiness probes always re-check), so the service becomes
ready as soon as the index appears or Qdrant answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.core.config import Settings, collection_layout
from index_builder.store import FaqIndexError, IndexInfo, Store, open_store
from index_builder.store.fusion import Retrieval

log = logging.getLogger(__name__)

# What qdrant-client raises when the server is down, slow or answers with an error.
QDRANT_ERRORS: tuple[type[BaseException], ...] = (
    ResponseHandlingException,
    UnexpectedResponse,
    ConnectionError,
    TimeoutError,
)
# How long a good check is trusted: the alias moves rarely, and a server check is a round trip.
CHECK_INTERVAL_S = 5.0


class IndexUnavailableError(RuntimeError):
    """The index cannot answer now; the message says why and what to run."""


class IndexGuard:
    def __init__(
        self,
        store: Store,
        fingerprint: str,
        interval_s: float = CHECK_INTERVAL_S,
        on_check: Callable[[IndexInfo], None] | None = None,
    ) -> None:
        """`on_check(info)` after every good check: each worker keeps its own gauges of the
        live index current (not only the one a readiness probe happened to reach)."""
        self.store = store
        self.on_check = on_check
        self.fingerprint = fingerprint
        self.interval_s = interval_s
        # Requests during an outage answer 503 at once instead of each paying Qdrant's timeout;
        # briefly, so recovery is noticed within a second.
        self.failure_ttl_s = min(interval_s, 1.0)
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
            if self.on_check is not None:
                self.on_check(info)
            return info
        finally:
            self._lock.release()

    def cached(self) -> IndexInfo | None:
        """The last good check while it is fresh, without blocking; None when `current()`
        has to check (which may wait on a server: not on the event loop)."""
        info = self._info
        if info is not None and time.monotonic() - self._checked_at < self.interval_s:
            return info
        return None

    def _check(self) -> IndexInfo:
        try:
            return self.store.check_model(self.fingerprint)
        except FaqIndexError as exc:
            raise IndexUnavailableError(str(exc)) from exc
        except QDRANT_ERRORS as exc:
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc

    def invalidate(self) -> None:
        with self._lock:
            self._info = None

    def close(self) -> None:
        self.store.close()


def retrieval(settings: Settings) -> Retrieval:
    """How searches fuse the question, answer and lexical parts, for every index the service
    opens (`FAQ_ANSWER_WEIGHT`, `FAQ_LEXICAL_WEIGHT`)."""
    return Retrieval(answer_weight=settings.answer_weight, lexical_weight=settings.lexical_weight)


def open_settings_store(settings: Settings, lock_timeout_s: float = 30.0) -> Store:
    """The store the settings name: a Qdrant server when `FAQ_QDRANT_URL` is set, else the
    embedded one in `FAQ_INDEX_PATH` (whose writers wait `lock_timeout_s` for another's)."""
    return open_store(
        url=settings.qdrant_url,
        api_key=key.get_secret_value() if (key := settings.qdrant_api_key) else None,
        path=settings.index_path,
        alias=settings.collection_alias,
        keep=settings.keep_collections,
        timeout_s=settings.qdrant_timeout_s,
        layout=collection_layout(settings),
        retrieval=retrieval(settings),
        lock_timeout_s=lock_timeout_s,
    )


def open_index_guard(
    settings: Settings, fingerprint: str, on_check: Callable[[IndexInfo], None] | None = None
) -> IndexGuard:
    """The guard over the settings' store; an embedded store's live version is loaded here,
    so the first search does not wait for it. The lifespan closes it."""
    store = open_settings_store(settings)
    try:
        store.warm()
    except (FaqIndexError, OSError, ValueError) as exc:
        # The guard reports it (not ready); searches load the version once it can.
        log.warning("index not loaded at startup: %s", exc)
    return IndexGuard(store, fingerprint, on_check=on_check)
