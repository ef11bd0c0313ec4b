"""Searches: cut the queries, encode them (directly or through the batcher), ask Qdrant."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import models

from app.metrics import Metrics
from app.services.batcher import DirectEncoding, QueryEncoding
from app.services.index_guard import QDRANT_ERRORS, IndexGuard, IndexUnavailableError
from index_builder.encoder import Encoder
from index_builder.store import FaqIndex, Hit


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


def _filter(lang: str | None, market: str | None) -> models.Filter | None:
    conditions: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("lang", lang), ("market", market))
        if value is not None
    ]
    return models.Filter(must=conditions) if conditions else None


def _hit(point: Any) -> Hit:
    # The payload layout FaqIndex.build writes (index_builder/store.py, FaqIndex.search).
    payload = point.payload or {}
    return Hit(
        id=str(payload.get("id", point.id)),
        question=str(payload.get("question", "")),
        answer=str(payload.get("answer", "")),
        lang=str(payload.get("lang", "")),
        market=payload.get("market"),
        tags=list(payload.get("tags") or []),
        score=float(point.score),
    )


def search_many(
    index: FaqIndex, vectors: NDArray[np.float32], specs: Sequence[QuerySpec]
) -> list[list[Hit]]:
    """One `query_batch_points` call for all queries: one round trip to a Qdrant server."""
    requests = [
        models.QueryRequest(
            query=vector.astype(np.float32).tolist(),
            limit=spec.top_k,
            filter=_filter(spec.lang, spec.market),
            with_payload=True,
        )
        for vector, spec in zip(vectors, specs, strict=True)
    ]
    responses = index.client.query_batch_points(collection_name=index.alias, requests=requests)
    return [[_hit(p) for p in r.points] for r in responses]


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

    def search(
        self, query: str, top_k: int, *, lang: str | None = None, market: str | None = None
    ) -> SearchOutcome:
        start = time.perf_counter()
        info = self.guard.current()
        vectors, truncated = self._encode([query])
        t1 = time.perf_counter()
        try:
            hits = self.guard.index.search(vectors[0], top_k, lang=lang, market=market)
        except QDRANT_ERRORS as exc:
            self.guard.invalidate()
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
        self.metrics.search_duration.observe(time.perf_counter() - t1)
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
        t1 = time.perf_counter()
        try:
            hits = search_many(self.guard.index, vectors, specs)
        except QDRANT_ERRORS as exc:
            self.guard.invalidate()
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
        self.metrics.search_duration.observe(time.perf_counter() - t1)
        return BatchOutcome(
            hits=hits,
            truncated=truncated,
            collection=info.collection,
            took_ms=(time.perf_counter() - start) * 1000.0,
        )
