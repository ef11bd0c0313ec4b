"""Knows whether the live index can serve the loaded model, re-checked at most every few seconds.

The alias can move under a running service (a reindex in another process, a rollback), so the
answer is cached briefly rather than fixed at startup; a failed check is not cached, so the
service becomes ready as soon as the index appears or Qdrant answers again.
"""

from __future__ import annotations

import threading
import time

from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from index_builder.store import FaqIndex, FaqIndexError, IndexInfo

# What qdrant-client raises when the server is down, slow or answers with an error.
QDRANT_ERRORS: tuple[type[BaseException], ...] = (
    ResponseHandlingException,
    UnexpectedResponse,
    ConnectionError,
    TimeoutError,
)


class IndexUnavailableError(RuntimeError):
    """The index cannot answer now; the message says why and what to run."""


class IndexGuard:
    def __init__(self, index: FaqIndex, fingerprint: str, interval_s: float) -> None:
        self.index = index
        self.fingerprint = fingerprint
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._info: IndexInfo | None = None
        self._checked_at = 0.0

    def current(self, *, force: bool = False) -> IndexInfo:
        """The live index if it matches the model, else `IndexUnavailableError`."""
        with self._lock:
            fresh = time.monotonic() - self._checked_at < self.interval_s
            if self._info is not None and fresh and not force:
                return self._info
            try:
                info = self.index.check_model(self.fingerprint)
            except FaqIndexError as exc:
                self._info = None
                raise IndexUnavailableError(str(exc)) from exc
            except QDRANT_ERRORS as exc:
                self._info = None
                raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
            self._info = info
            self._checked_at = time.monotonic()
            return info

    def invalidate(self) -> None:
        with self._lock:
            self._info = None
