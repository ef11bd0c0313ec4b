from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import EncoderDep, MetricsDep, SearchServiceDep
from app.api.errors import ApiError
from app.api.schemas import SearchRequest, SearchResponse, SearchResult
from app.core.security import SearchAuth
from app.services.index_guard import IndexUnavailableError

router = APIRouter(tags=["search"])


# A sync route: FastAPI runs it in the threadpool, so ONNX Runtime never blocks the event loop
# and /health stays responsive under load.
@router.post("/search", response_model=SearchResponse)
def search(
    body: SearchRequest,
    service: SearchServiceDep,
    encoder: EncoderDep,
    metrics: MetricsDep,
    _auth: SearchAuth,
) -> SearchResponse:
    try:
        outcome = service.search(
            body.query, body.top_k, lang=body.filters.lang, market=body.filters.market
        )
    except IndexUnavailableError as exc:
        metrics.errors.labels("index_unavailable").inc()
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    return SearchResponse(
        results=[
            SearchResult(
                id=h.id,
                question=h.question,
                answer=h.answer,
                score=h.score,
                lang=h.lang,
                market=h.market,
                tags=h.tags,
            )
            for h in outcome.hits
        ],
        model=encoder.fingerprint,
        index=outcome.collection,
        took_ms=round(outcome.took_ms, 3),
        truncated=outcome.truncated,
    )
