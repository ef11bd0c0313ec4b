"""POST /search and /search/batch: validate, ask the search service, write the answer.

The hot routes read the request themselves, with no dependency solver or body handling of
FastAPI's (about half of the stack's time per /search): the JSON bytes are validated in one
pydantic-core call and the key checked directly; `openapi_extra` documents both.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.api.deps import SEARCH_SCHEME, check_search_key
from app.api.errors import ApiError, service_errors
from app.api.responses import OrjsonResponse, errors
from app.api.schemas.search import (
    BatchSearchRequest,
    BatchSearchResponse,
    SearchRequest,
    SearchResponse,
)
from app.middleware import request_id_var
from app.services.answering import QuerySpec, Shaped
from app.services.search import BatchOutcome

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


def _answer(shaped: Shaped, truncated: bool) -> dict[str, Any]:
    """The results and whether it answers, with which score, and the query's language."""
    return {
        "results": _results(shaped),
        "truncated": truncated,
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


_Body = TypeVar("_Body", bound=BaseModel)


def _openapi(model: type[BaseModel]) -> dict[str, Any]:
    """The body and key of a route that reads them itself, for the OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "security": [{SEARCH_SCHEME: []}],
    }


async def _body(request: Request, model: type[_Body]) -> _Body:
    """The request's JSON body as `model`, or the API's 422 (FastAPI's error shape)."""
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    if not raw or "json" not in content_type:
        loc = ("body",)
        raise RequestValidationError([{"type": "missing", "loc": loc, "msg": "Field required"}])
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        # pydantic-core's parser refuses what Python's accepts (a lone surrogate "\ud800"):
        # parsed as FastAPI would, the field that holds it is named in the error.
        try:
            return model.model_validate(json.loads(raw))
        except ValidationError as exc:  # (a ValueError too: caught first)
            errors = exc.errors(include_url=False)
        except ValueError:  # not JSON for Python either: keep pydantic's offset and reason
            pass
    raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


async def _answer_all(
    request: Request, specs: list[QuerySpec]
) -> tuple[BatchOutcome, dict[str, Any]]:
    """The search service's answers to `specs`, and the fields every search response has."""
    state = request.app.state
    with service_errors(state.metrics):
        outcome: BatchOutcome = await state.search.answer(specs)
    common = {
        "model": state.encoder.fingerprint,
        "index": outcome.collection,
        "took_ms": round(outcome.took_ms, 3),
    }
    if state.query_log is not None:  # queued for its writer thread; never waits
        state.query_log.record(
            request_id_var.get(),
            [s.text for s in specs],
            outcome.shaped,
            outcome.took_ms,
            outcome.collection,
            common["model"],
        )
    return outcome, common


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=_FAILURES,
    openapi_extra=_openapi(SearchRequest),
)
async def search(request: Request) -> OrjsonResponse:
    """The best FAQ entries for one question."""
    check_search_key(request)
    body = await _body(request, SearchRequest)
    outcome, common = await _answer_all(request, [query_spec(body)])
    answer = _answer(outcome.shaped[0], outcome.truncated[0])
    return OrjsonResponse({"results": answer.pop("results"), **common, **answer})


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    responses=_FAILURES,
    openapi_extra=_openapi(BatchSearchRequest),
)
async def search_batch(request: Request) -> OrjsonResponse:
    """Several questions in one request, answered in order."""
    check_search_key(request)
    body = await _body(request, BatchSearchRequest)
    limit = request.app.state.settings.search_batch_max_queries
    if len(body.queries) > limit:
        raise ApiError(
            422,
            f"invalid request: queries: {len(body.queries)} queries, at most {limit} per "
            "batch (FAQ_SEARCH_BATCH_MAX_QUERIES)",
        )
    outcome, common = await _answer_all(request, [query_spec(q) for q in body.queries])
    answers = map(_answer, outcome.shaped, outcome.truncated)
    return OrjsonResponse({"results": list(answers), **common})
