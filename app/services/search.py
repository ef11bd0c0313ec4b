"""Searches: cut the queries, encode them (directly or through the batcher), ask Qdrant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from app.metrics import Metrics
from app.services.batcher import DirectEncoding, QueryEncoding
from app.services.index_guard import QDRANT_ERRORS, IndexGuard, IndexUnavailableError
from index_builder.encoder import Encoder
from index_builder.store import FaqIndex, Hit

_T = TypeVar("_T")


@dataclass(frozen=True)
class SearchOutcome:
    hits: list[Hit]
    collection: str
    took_ms: float
    truncated: bool


@dataclass(frozen=True)
class QuerySpec:
    text: str
    top_k: int
    lang: str | None = None
    market: str | None = None


@dataclass(frozen=True)
class BatchOutcome:
    hits: list[list[Hit]]
    truncated: list[bool]
    collection: str
    took_ms: float


class SearchService:
    def __init__(
        self,
        encoder: Encoder,
        guard: IndexGuard,
        metrics: Metrics,
        max_query_chars: int,
        queries: QueryEncoding | None = None,
    ) -> None:
        self.encoder = encoder
        self.guard = guard
        self.metrics = metrics
        self.max_query_chars = max_query_chars
        self.queries: QueryEncoding = queries or DirectEncoding(encoder, metrics)

    def _encode(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[bool]]:
        # Cut absurdly long input before tokenising: the model keeps max_length tokens anyway.
        cut = [len(t) > self.max_query_chars for t in texts]
        t0 = time.perf_counter()
        encoded = self.queries.encode([t[: self.max_query_chars] for t in texts])
        self.metrics.encode_duration.observe(time.perf_counter() - t0)
        truncated = [c or t for c, t in zip(cut, encoded.truncated, strict=True)]
        if any(truncated):
            self.metrics.truncated.inc(sum(truncated))
        return encoded.vectors, truncated

    def _ask_qdrant(self, call: Callable[[FaqIndex], _T]) -> _T:
        """Run one search call on the live index, timed; an unreachable Qdrant is a 503."""
        t0 = time.perf_counter()
        try:
            result = call(self.guard.index)
        except QDRANT_ERRORS as exc:
            # Re-checked on the next request, so the service recovers once Qdrant answers.
            self.guard.invalidate()
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
        self.metrics.search_duration.observe(time.perf_counter() - t0)
        return result

    def search(
        self, query: str, top_k: int, *, lang: str | None = None, market: str | None = None
    ) -> SearchOutcome:
        start = time.perf_counter()
        info = self.guard.current()
        vectors, truncated = self._encode([query])
        hits = self._ask_qdrant(
            lambda index: index.search(vectors[0], top_k, lang=lang, market=market)
        )
        return SearchOutcome(
            hits=hits,
            collection=info.collection,
            took_ms=(time.perf_counter() - start) * 1000.0,
            truncated=truncated[0],
        )

    def search_batch(self, specs: Sequence[QuerySpec]) -> BatchOutcome:
        """Several searches: the queries encoded together, then one batched Qdrant call."""
        start = time.perf_counter()
        info = self.guard.current()
        vectors, truncated = self._encode([s.text for s in specs])
        specs_ = [(s.top_k, s.lang, s.market) for s in specs]
        hits = self._ask_qdrant(lambda index: index.search_batch(vectors, specs_))
        return BatchOutcome(
            hits=hits,
            truncated=truncated,
            collection=info.collection,
            took_ms=(time.perf_counter() - start) * 1000.0,
        )
