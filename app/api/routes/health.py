from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.api.deps import EncoderDep, GuardDep, MetricsDep
from app.api.schemas import ReadyResponse
from app.services.index_guard import IndexUnavailableError

router = APIRouter(tags=["health"])


@router.get("/health/live")
def live() -> dict[str, str]:
    """The process answers; says nothing about the model or the index."""
    return {"status": "ok"}


@router.get("/health/ready", response_model=ReadyResponse)
def ready(request: Request, encoder: EncoderDep, guard: GuardDep, metrics: MetricsDep) -> Response:
    """Ready = the model is loaded and warm, Qdrant answers and the alias serves this model."""
    providers = list(getattr(encoder, "providers", []))
    body = ReadyResponse(ready=False, model=encoder.fingerprint, providers=providers)
    try:
        info = guard.current(force=True)
    except IndexUnavailableError as exc:
        body.problem = str(exc)
        return JSONResponse(body.model_dump(), status_code=503)
    body.ready = bool(request.app.state.warm)
    body.index, body.index_points = info.collection, info.points
    metrics.index_points.set(info.points)
    metrics.index_info.info({"collection": info.collection, "fingerprint": info.fingerprint})
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", include_in_schema=False)
def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
