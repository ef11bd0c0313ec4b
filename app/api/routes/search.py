from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter

from app.api.deps import EncoderDep, MetricsDep, SearchServiceDep, SettingsDep
from app.api.errors import ApiError
from app.api.schemas import (
    BatchSearchItem,
    BatchSearchRequest,
    BatchSearchResponse,
    SearchRequest,
    SearchResponse,
    SearchResult,
)
from app.core.security import SearchAuth
from app.metrics import Metrics
from app.services.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.services.index_guard import IndexUnavailableError
from app.services.search import QuerySpec
from index_builder.store import Hit

router = APIRouter(tags=["search"])


@contextmanager
def _service_errors(metrics: Metrics) -> Iterator[None]:
    """Turn the search service's refusals into API errors with a status and what to do."""
    try:
        yield
    except IndexUnavailableError as exc:
        metrics.errors.labels("index_unavailable").inc()
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    except QueueFullError as exc:
        metrics.rejected.labels("queue_full").inc()
        raise ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except DeadlineExceededError as exc:
        metrics.rejected.labels("deadline").inc()
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
    except BatcherClosedError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc


def _results(hits: list[Hit]) -> list[SearchResult]:
    return [
        SearchResult(
            id=h.id,
            question=h.question,
            answer=h.answer,
            score=h.score,
            lang=h.lang,
            market=h.market,
            tags=h.tags,
        )
        for h in hits
    ]


# Sync routes: FastAPI runs them in the threadpool, so ONNX Runtime (or waiting for the batcher)
# never blocks the event loop and /health stays responsive under load.
@router.post("/search", response_model=SearchResponse)
def search(
    body: SearchRequest,
    service: SearchServiceDep,
    encoder: EncoderDep,
    metrics: MetricsDep,
    _auth: SearchAuth,
) -> SearchResponse:
    with _service_errors(metrics):
        outcome = service.search(
            body.query, body.top_k, lang=body.filters.lang, market=body.filters.market
        )
    return SearchResponse(
        results=_results(outcome.hits),
        model=encoder.fingerprint,
        index=outcome.collection,
        took_ms=round(outcome.took_ms, 3),
        truncated=outcome.truncated,
    )


@router.post("/search/batch", response_model=BatchSearchResponse)
def search_batch(
    body: BatchSearchRequest,
    service: SearchServiceDep,
    encoder: EncoderDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    _auth: SearchAuth,
) -> BatchSearchResponse:
    limit = settings.search_batch_max_queries
    if len(body.queries) > limit:
        raise ApiError(
            422,
            f"invalid request: queries: {len(body.queries)} queries, at most {limit} per "
            "batch (FAQ_SEARCH_BATCH_MAX_QUERIES)",
        )
    specs = [
        QuerySpec(q.query, q.top_k, lang=q.filters.lang, market=q.filters.market)
        for q in body.queries
    ]
    with _service_errors(metrics):
        outcome = service.search_batch(specs)
    return BatchSearchResponse(
        results=[
            BatchSearchItem(results=_results(hits), truncated=truncated)
            for hits, truncated in zip(outcome.hits, outcome.truncated, strict=True)
        ],
        model=encoder.fingerprint,
        index=outcome.collection,
        took_ms=round(outcome.took_ms, 3),
    )
