"""The response class of every route and the documented error responses of each.

Routes build plain dicts and return `OrjsonResponse` themselves: nothing validates a response
model a second time on the way out (a route's `response_model` is for the document only).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from app.api.schemas.errors import ErrorResponse


class OrjsonResponse(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


# What each error status means on this API; a route may say more for its own case.
_MEANING: dict[int, str] = {
    401: "Missing or wrong API key: send it as X-API-Key or Authorization: Bearer.",
    403: "Admin routes are disabled: the service has no admin key (FAQ_ADMIN_API_KEY).",
    404: "Not found.",
    409: "The request conflicts with the current state.",
    408: "The request body did not arrive in full within FAQ_BODY_READ_TIMEOUT_S.",
    413: "The request body is larger than FAQ_MAX_BODY_BYTES.",
    422: "The request breaks the schema, or its body is not decodable JSON (`details` names "
    "the fields).",
    429: "Too many queries are waiting for the encoder: retry after Retry-After seconds.",
    503: "The index or Qdrant cannot serve now: retry after Retry-After seconds.",
}


def _header(name: str, description: str, type_: str) -> dict[str, Any]:
    return {name: {"description": description, "schema": {"type": type_}}}


_RETRY_AFTER = _header("Retry-After", "Seconds to wait before trying again.", "integer")
_HEADERS = {
    401: _header("WWW-Authenticate", "Bearer: how to send the key.", "string"),
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}


def errors(*codes: int, **meaning: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status it can fail with, in the one error shape.

    `meaning` gives a status its text for this route, and adds it: `errors(401, s404="...")`.
    408 goes with 413: both come from reading the body (middleware.py).
    """
    listed = {*codes, *(int(key.removeprefix("s")) for key in meaning)}
    if 413 in listed:
        listed.add(408)
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted(listed):
        entry: dict[str, Any] = {
            "model": ErrorResponse,
            "description": meaning.get(f"s{code}", _MEANING[code]),
        }
        if code in _HEADERS:
            entry["headers"] = _HEADERS[code]
        out[code] = entry
    return out
