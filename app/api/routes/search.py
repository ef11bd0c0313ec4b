"""POST /search and /search/batch: validate, ask the search service, write the answer.

Sync routes: FastAPI runs them in the threadpool, so waiting for the encoder never blocks the
event loop and /health stays responsive under load. The answer is a plain dict written by
orjson (`response_model` documents it; nothing validates it a second time).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.deps import EncoderDep, MetricsDep, SearchAuth, SearchServiceDep, SettingsDep
from app.api.errors import ApiError, service_errors
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.search import (
    BatchSearchRequest,
    BatchSearchResponse,
    SearchRequest,
    SearchResponse,
)
from app.services.search import QuerySpec
from index_builder.store import Hit

router = APIRouter(tags=["search"])

_FAILURES = errors(401, 413, 422, 429, 503)


def _results(hits: list[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "id": h.id,
            "question": h.question,
            "answer": h.answer,
            "score": h.score,
            "lang": h.lang,
            "market": h.market,
            "tags": h.tags,
        }
        for h in hits
    ]


@router.post("/search", response_model=SearchResponse, responses=_FAILURES)
def search(
    body: SearchRequest,
    service: SearchServiceDep,
    encoder: EncoderDep,
    metrics: MetricsDep,
    _auth: SearchAuth,
) -> OrjsonResponse:
    """The best FAQ entries for one question."""
    with service_errors(metrics):
        outcome = service.search(
            body.query, body.top_k, lang=body.filters.lang, market=body.filters.market
        )
    return OrjsonResponse(
        {
            "results": _results(outcome.hits),
            "model": encoder.fingerprint,
            "index": outcome.collection,
            "took_ms": round(outcome.took_ms, 3),
            "truncated": outcome.truncated,
        }
    )


@router.post("/search/batch", response_model=BatchSearchResponse, responses=_FAILURES)
def search_batch(
    body: BatchSearchRequest,
    service: SearchServiceDep,
    encoder: EncoderDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    _auth: SearchAuth,
) -> OrjsonResponse:
    """Several questions in one request, answered in order."""
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
    with service_errors(metrics):
        outcome = service.search_batch(specs)
    return OrjsonResponse(
        {
            "results": [
                {"results": _results(hits), "truncated": truncated}
                for hits, truncated in zip(outcome.hits, outcome.truncated, strict=True)
            ],
            "model": encoder.fingerprint,
            "index": outcome.collection,
            "took_ms": round(outcome.took_ms, 3),
        }
    )
