"""One search: cut the query, encode it, ask Qdrant, shape the answer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.metrics import Metrics
from app.services.index_guard import QDRANT_ERRORS, IndexGuard, IndexUnavailableError
from index_builder.encoder import Encoder
from index_builder.store import Hit


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    collection: str
    took_ms: float
    truncated: bool


class SearchService:
    def __init__(
        self, encoder: Encoder, guard: IndexGuard, metrics: Metrics, max_query_chars: int
    ) -> None:
        self.encoder = encoder
        self.guard = guard
        self.metrics = metrics
        self.max_query_chars = max_query_chars

    def search(
        self, query: str, top_k: int, *, lang: str | None = None, market: str | None = None
    ) -> SearchOutcome:
        start = time.perf_counter()
        info = self.guard.current()
        # Cut absurdly long input before tokenising: the model keeps max_length tokens anyway.
        cut = len(query) > self.max_query_chars
        text = query[: self.max_query_chars]
        t0 = time.perf_counter()
        encoded = self.encoder.encode([text], "query")
        self.metrics.encode_duration.observe(time.perf_counter() - t0)
        truncated = cut or encoded.truncated[0]
        if truncated:
            self.metrics.truncated.inc()
        t1 = time.perf_counter()
        try:
            hits = self.guard.index.search(encoded.vectors[0], top_k, lang=lang, market=market)
        except QDRANT_ERRORS as exc:
            self.guard.invalidate()
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
        self.metrics.search_duration.observe(time.perf_counter() - t1)
        return SearchOutcome(
            hits=hits,
            collection=info.collection,
            took_ms=(time.perf_counter() - start) * 1000.0,
            truncated=truncated,
        )
