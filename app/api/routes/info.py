"""GET /info: what this service serves: model, variant, providers, index."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import EncoderDep, GuardDep, SearchAuth, SettingsDep
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.openai import InfoResponse
from app.services.index_guard import IndexUnavailableError

router = APIRouter(tags=["info"])


@router.get("/info", response_model=InfoResponse, responses=errors(401))
def info(
    request: Request, encoder: EncoderDep, guard: GuardDep, settings: SettingsDep, _: SearchAuth
) -> OrjsonResponse:
    """The served model (name, fingerprint, variant, providers), the index behind the alias and
    the abstain threshold in force with its source.

    Answers while the index is unavailable too: `index.problem` then says why.
    """
    index: dict[str, Any] = {
        "alias": settings.collection_alias,
        "collection": None,
        "points": None,
        "problem": None,
    }
    current = None
    try:
        current = guard.current()
    except IndexUnavailableError as exc:
        index["problem"] = str(exc)
    else:
        index["collection"], index["points"] = current.collection, current.points
    threshold = request.app.state.search.answering.threshold(current)
    model = {
        "name": encoder.name,
        "fingerprint": encoder.fingerprint,
        "variant": str(getattr(encoder, "variant", settings.model_variant)),
        "providers": list(getattr(encoder, "providers", [])),
        "dim": encoder.dim,
        "max_length": encoder.max_length,
    }
    abstain = {
        "min_score": threshold.min_score,
        "source": threshold.source,
        "collection": threshold.collection,
    }
    return OrjsonResponse(
        {"model": model, "index": index, "abstain": abstain, "version": request.app.version}
    )
