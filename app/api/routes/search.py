"""POST /search and /search/batch: validate, ask the search service, write the answer.

Async routes: the search service awaits the inference worker and the store, whichever it is
(`SearchService.answer`). The answer is a plain dict written by
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
from app.services.answering import Shaped
from app.services.search import QuerySpec

router = APIRouter(tags=["search"])

_FAILURES = errors(401, 413, 422, 429, 503)


def _results(shaped: Shaped) -> list[dict[str, Any]]:
    return [
        {
            "id": h.id,
            "question": h.question,
            "answer": h.answer,
            "score": score,
            "lang": h.lang,
            "market": h.market,
            "tags": h.tags,
            "topic": topic,
            "lang_reason": reason,
        }
        for h, topic, reason, score in zip(
            shaped.hits, shaped.topics, shaped.lang_reasons, shaped.scores, strict=True
        )
    ]


def _answer(shaped: Shaped) -> dict[str, Any]:
    """Whether it answers, with which score, and the language the query was read as."""
    return {
        "answered": shaped.answered,
        "answer_score": shaped.answer_score,
        "query_lang": shaped.query_lang,
    }


def query_spec(body: SearchRequest) -> QuerySpec:
    """The search a request asks for (`faq-bench`'s raw measure builds its own the same way)."""
    return QuerySpec(
        body.query,
        body.top_k,
        lang_filter=body.filters.lang,
        market=body.filters.market,
        group=body.group,
        prefer_lang=body.lang,
        min_score=body.min_score,
    )


@router.post("/search", response_model=SearchResponse, responses=_FAILURES)
async def search(
    body: SearchRequest,
    service: SearchServiceDep,
    encoder: EncoderDep,
    metrics: MetricsDep,
    _auth: SearchAuth,
) -> OrjsonResponse:
    """The best FAQ entries for one question."""
    with service_errors(metrics):
        outcome = await service.answer([query_spec(body)])
    shaped = outcome.shaped[0]
    return OrjsonResponse(
        {
            "results": _results(shaped),
            "model": encoder.fingerprint,
            "index": outcome.collection,
            "took_ms": round(outcome.took_ms, 3),
            "truncated": outcome.truncated[0],
            **_answer(shaped),
        }
    )


@router.post("/search/batch", response_model=BatchSearchResponse, responses=_FAILURES)
async def search_batch(
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
    with service_errors(metrics):
        outcome = await service.answer([query_spec(q) for q in body.queries])
    return OrjsonResponse(
        {
            "results": [
                {"results": _results(shaped), "truncated": truncated, **_answer(shaped)}
                for shaped, truncated in zip(outcome.shaped, outcome.truncated, strict=True)
            ],
            "model": encoder.fingerprint,
            "index": outcome.collection,
            "took_ms": round(outcome.took_ms, 3),
        }
    )
