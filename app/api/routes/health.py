"""Probes: /health/live and /health/ready (GET and HEAD), and /metrics for the scraper.

All `async def`: a sync route would wait for a thread of the pool that embeddings and admin
routes share, and a probe must answer under load. The check that may block (a Qdrant round
trip, files) runs in asyncio's own executor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.api.deps import EncoderDep, GuardDep, MetricsDep, may_see_details
from app.api.responses import OrjsonResponse
from app.api.schemas.health import LiveResponse, ReadyResponse
from app.metrics import forget_dead_workers
from app.services.index_guard import IndexUnavailableError

router = APIRouter(tags=["health"])

_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Serving: the model is warm and the alias serves this model."},
    503: {
        "model": ReadyResponse,
        "description": "Not ready: `problem` says why (index missing, Qdrant down, wrong model).",
    },
}


@router.get("/health/live", response_model=LiveResponse)
async def live() -> OrjsonResponse:
    """The process answers; says nothing about the model or the index."""
    return OrjsonResponse({"status": "ok"})


@router.head("/health/live", responses={200: {"description": "The process answers."}})
async def live_head() -> Response:
    """As GET /health/live, without a body."""
    return Response(status_code=200)


async def _ready(request: Request, encoder: EncoderDep, guard: GuardDep) -> OrjsonResponse:
    # The encoder is loaded and warm once lifespan serves requests: the index decides.
    body: dict[str, Any] = {
        "ready": False,
        "model": encoder.fingerprint,
        "providers": list(getattr(encoder, "providers", [])),
        "index": None,
        "index_points": None,
        "problem": None,
    }
    try:
        info = await asyncio.to_thread(guard.current, force=True)
    except IndexUnavailableError as exc:
        body["problem"] = str(exc)
    else:
        body |= {"ready": True, "index": info.collection, "index_points": info.points}
    if not may_see_details(request):
        # Open to probes, but store errors, the collection and the fingerprint are for
        # operators: without a key only the verdict.
        body = {"ready": body["ready"], "problem": None if body["ready"] else "not ready"}
    return OrjsonResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/health/ready", response_model=ReadyResponse, responses=_READY_RESPONSES)
async def ready(request: Request, encoder: EncoderDep, guard: GuardDep) -> OrjsonResponse:
    """Ready = the model is loaded and warm, Qdrant answers and the alias serves this model.
    Without a key (when keys are configured) only `ready` and a generic `problem`."""
    return await _ready(request, encoder, guard)


@router.head("/health/ready", responses=_READY_RESPONSES)
async def ready_head(request: Request, encoder: EncoderDep, guard: GuardDep) -> Response:
    """As GET /health/ready (same status), without a body."""
    return Response(status_code=(await _ready(request, encoder, guard)).status_code)


@router.get("/metrics", include_in_schema=False)
async def prometheus(metrics: MetricsDep) -> Response:
    forget_dead_workers(metrics.multiprocess_dir)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
