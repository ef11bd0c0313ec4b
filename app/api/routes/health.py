"""Probes: /health/live and /health/ready (GET and HEAD), and /metrics for the scraper."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.api.deps import EncoderDep, GuardDep, MetricsDep
from app.api.responses import OrjsonResponse
from app.api.schemas.health import LiveResponse, ReadyResponse
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
def live() -> OrjsonResponse:
    """The process answers; says nothing about the model or the index."""
    return OrjsonResponse({"status": "ok"})


@router.head("/health/live", responses={200: {"description": "The process answers."}})
def live_head() -> Response:
    """As GET /health/live, without a body."""
    return Response(status_code=200)


def _ready(
    request: Request, encoder: EncoderDep, guard: GuardDep, metrics: MetricsDep
) -> tuple[dict[str, Any], int]:
    providers = list(getattr(encoder, "providers", []))
    body: dict[str, Any] = {
        "ready": False,
        "model": encoder.fingerprint,
        "providers": providers,
        "index": None,
        "index_points": None,
        "problem": None,
    }
    try:
        info = guard.current(force=True)
    except IndexUnavailableError as exc:
        body["problem"] = str(exc)
        return body, 503
    body["ready"] = bool(request.app.state.warm)
    body["index"], body["index_points"] = info.collection, info.points
    metrics.index_points.set(info.points)
    metrics.index_info.info({"collection": info.collection, "fingerprint": info.fingerprint})
    return body, 200 if body["ready"] else 503


@router.get("/health/ready", response_model=ReadyResponse, responses=_READY_RESPONSES)
def ready(
    request: Request, encoder: EncoderDep, guard: GuardDep, metrics: MetricsDep
) -> OrjsonResponse:
    """Ready = the model is loaded and warm, Qdrant answers and the alias serves this model."""
    body, status = _ready(request, encoder, guard, metrics)
    return OrjsonResponse(body, status_code=status)


@router.head("/health/ready", responses=_READY_RESPONSES)
def ready_head(
    request: Request, encoder: EncoderDep, guard: GuardDep, metrics: MetricsDep
) -> Response:
    """As GET /health/ready (same status), without a body."""
    _, status = _ready(request, encoder, guard, metrics)
    return Response(status_code=status)


@router.get("/metrics", include_in_schema=False)
def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
