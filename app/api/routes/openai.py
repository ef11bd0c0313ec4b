"""OpenAI-compatible embeddings on the served encoder: POST /v1/embeddings, GET /v1/models.

Same key (the search key) and the same limits as /search: the body limit, at most
FAQ_SEARCH_BATCH_MAX_QUERIES texts, each cut to FAQ_MAX_QUERY_CHARS characters and to the
model's token limit, and the encoder's queue and deadline (429 when it is full, 503 past
FAQ_BATCH_DEADLINE_S).
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import numpy as np
from fastapi import APIRouter

from app.api.deps import EncoderDep, MetricsDep, QueriesDep, SearchAuth, SettingsDep
from app.api.errors import ApiError, service_errors
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.openai import EmbeddingsRequest, EmbeddingsResponse, ModelCard, ModelList
from index_builder.model.encoder import Encoder

router = APIRouter(prefix="/v1", tags=["openai"])

OWNER = "cs-faq-search"


def _card(encoder: Encoder) -> dict[str, Any]:
    """The model as OpenAI lists it; `created` is its export's Unix time (0 when unknown)."""
    stamp = getattr(getattr(encoder, "manifest", None), "created_at", "") or ""
    try:
        created = int(datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        created = 0
    return {"id": encoder.name, "object": "model", "created": created, "owned_by": OWNER}


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    responses=errors(
        401,
        413,
        422,
        429,
        s404="No served model by this name: GET /v1/models lists the one there is.",
        s503="The encoder is shutting down or too slow now: retry after Retry-After seconds.",
    ),
)
async def embeddings(
    body: EmbeddingsRequest,
    encoder: EncoderDep,
    queries: QueriesDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    _auth: SearchAuth,
) -> OrjsonResponse:
    """Unit-length vectors of the texts, with `query: ` or `passage: ` before each."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    limit = settings.search_batch_max_queries
    if len(texts) > limit:
        raise ApiError(
            422,
            f"invalid request: input: {len(texts)} texts, at most {limit} per request "
            "(FAQ_SEARCH_BATCH_MAX_QUERIES)",
        )
    if body.model not in (encoder.name, encoder.fingerprint):
        raise ApiError(
            404,
            f"model {body.model!r} is not served here; this service serves {encoder.name!r} "
            f"({encoder.fingerprint})",
        )
    cut = [t[: settings.max_query_chars] for t in texts]
    # Through the inference worker's bounded queue, as searches are: a flood of embeddings is
    # refused (429) or dropped at its deadline (503) instead of holding the model.
    with service_errors(metrics):
        encoded = await queries.encode_async(cut, body.input_type, bulk=True)
    vectors = np.ascontiguousarray(encoded.vectors, dtype="<f4")
    if body.encoding_format == "base64":
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        rows = list(vectors)
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    tokens = int(sum(encoded.n_tokens))
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return OrjsonResponse({"object": "list", "data": data, "model": encoder.name, "usage": usage})


@router.get("/models", response_model=ModelList, responses=errors(401))
def models(encoder: EncoderDep, _auth: SearchAuth) -> OrjsonResponse:
    """The one served model, as OpenAI's model list."""
    return OrjsonResponse({"object": "list", "data": [_card(encoder)]})


@router.get(
    "/models/{model}",
    response_model=ModelCard,
    responses=errors(401, s404="No served model by this name or fingerprint."),
)
def model(model: str, encoder: EncoderDep, _auth: SearchAuth) -> OrjsonResponse:
    """The served model, by its name or fingerprint (OpenAI's `models.retrieve`)."""
    if model not in (encoder.name, encoder.fingerprint):
        raise ApiError(
            404, f"model {model!r} is not served here; this service serves {encoder.name!r}"
        )
    return OrjsonResponse(_card(encoder))
