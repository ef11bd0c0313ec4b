"""GET /admin/analytics (admin key): the query log read back, the FAQ's gaps clustered; and
GET /admin/ui, the page that shows them.

The page is served without data and without a key (a browser cannot send a header on
navigation, and a key in a URL ends up in logs and history): it asks for the admin key, keeps
it in sessionStorage and calls /admin/analytics and /search with it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminAuth, MetricsDep
from app.api.errors import ApiError, service_errors
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.analytics import AnalyticsResponse
from app.services import analytics
from app.services.index_guard import QDRANT_ERRORS
from index_builder.answers.grouping import hit_topic
from index_builder.store import FaqIndexError, SearchSpec

router = APIRouter(prefix="/admin", tags=["admin"])

# Texts per call to the inference worker: an embeddings request's worth, queued as bulk work so
# that searches go first.
_ENCODE_CHUNK = 32
_INDEX_ERRORS: tuple[type[BaseException], ...] = (*QDRANT_ERRORS, FaqIndexError)


@router.get(
    "/analytics",
    response_model=AnalyticsResponse,
    responses=errors(
        401,
        403,
        422,
        429,
        s409="The query log is off (FAQ_QUERY_LOG): there is nothing to report.",
        s503="The query log's database, the encoder or the index cannot serve now: retry "
        "after Retry-After seconds.",
    ),
)
async def get_analytics(
    request: Request,
    _: AdminAuth,
    metrics: MetricsDep,
    days: Annotated[int, Query(ge=1, le=366, description="The window: the last N days.")] = 7,
    distance: Annotated[
        float,
        Query(
            gt=0.0,
            le=1.0,
            description="Cosine distance at which gap clusters stop merging (average linkage); "
            "larger: fewer, broader gaps.",
        ),
    ] = analytics.DEFAULT_DISTANCE,
) -> OrjsonResponse:
    """Searches, abstain rates per language and kind, topics shown and never clicked, and the
    FAQ's gaps: abstained and low-score queries clustered with the served encoder."""
    state = request.app.state
    if state.query_log is None:
        raise ApiError(409, "the query log is off: set FAQ_QUERY_LOG to record searches")
    # The threshold a search without min_score gets now: the live collection's, else the model's.
    with service_errors(metrics):
        info = state.guard.cached() or await run_in_threadpool(state.guard.current)
    threshold = state.search.answering.threshold(info).min_score
    low = None if threshold is None else round(threshold + analytics.LOW_SCORE_MARGIN, 6)
    try:
        report = await run_in_threadpool(analytics.read_log, state.query_log.engine, days, low)
    except ConnectionError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    texts = list(dict.fromkeys(q for q, _ in report.weak))
    chunks = [texts[i : i + _ENCODE_CHUNK] for i in range(0, len(texts), _ENCODE_CHUNK)]
    with service_errors(metrics):
        encoded = [(await state.queries.encode_async(c, bulk=True)).vectors for c in chunks]
    vectors = np.concatenate(encoded) if encoded else np.empty((0, 1), np.float32)
    found = await run_in_threadpool(analytics.find_gaps, report.weak, texts, vectors, distance)
    nearest = []
    if found:
        try:
            nearest = await state.guard.store.search_batch(
                np.stack([centre for _, centre in found]), [SearchSpec(1)] * len(found)
            )
        except _INDEX_ERRORS as exc:
            message = f"the index cannot serve: {exc}"
            raise ApiError(503, message, headers={"Retry-After": "5"}) from exc
    gaps = [
        {
            **gap,
            "nearest_topic": hit_topic(hits[0]) if hits else None,
            "nearest_score": round(hits[0].score, 4) if hits else None,
        }
        for (gap, _), hits in zip(found, nearest, strict=True)
    ]
    body = {"days": days, "since": report.since.isoformat(), **report.summary}
    body |= {"low_score_below": low, "distance": distance, "gap_queries": len(report.weak)}
    return OrjsonResponse({**body, "gaps": gaps})


_PAGE = files("app.api").joinpath("admin_ui.html").read_text(encoding="utf-8")
# The page's one inline script, allowed by its hash and nothing else: shoppers' queries are
# shown on it, and a query that slipped past the page's escaping still runs no script.
_SCRIPT = re.search(r"<script>(.*?)</script>", _PAGE, re.DOTALL)
assert _SCRIPT is not None, "admin_ui.html has no inline script"
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT[1].encode()).digest()).decode()
_HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; script-src 'sha256-{_SCRIPT_HASH}'; "
    "style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/ui", include_in_schema=False)
async def admin_ui(request: Request) -> HTMLResponse:
    """The admin page: no data in it, so no key needed to load it (see the module's doc)."""
    if request.app.state.api_keys.admin is None:
        raise ApiError(403, "admin routes are disabled: set FAQ_ADMIN_API_KEY to enable them")
    return HTMLResponse(_PAGE, headers=_HEADERS)
