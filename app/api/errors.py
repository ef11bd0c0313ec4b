"""One JSON error shape for every failure: `{"error": {"type", "message", "details"?}}`."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import OrjsonResponse
from app.metrics import Metrics
from app.services.batcher import BatcherClosedError, DeadlineExceededError, QueueFullError
from app.services.index_guard import IndexUnavailableError

log = logging.getLogger(__name__)

_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}

# The order methods are listed in an `Allow` header.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class ApiError(Exception):
    """An error the API reports on purpose, with a status and a message that says what to do."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


@contextmanager
def service_errors(metrics: Metrics) -> Iterator[None]:
    """The search path's refusals (index, encoder queue) as API errors with what to do."""
    try:
        yield
    except IndexUnavailableError as exc:
        metrics.errors.labels("index_unavailable").inc()
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc
    except QueueFullError as exc:
        metrics.rejected.labels("queue_full").inc()
        raise ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from exc
    except DeadlineExceededError as exc:
        metrics.rejected.labels("deadline").inc()
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
    except BatcherClosedError as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "5"}) from exc


def error_response(
    status_code: int,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> OrjsonResponse:
    body: dict[str, Any] = {"type": _STATUS_TYPES.get(status_code, "error"), "message": message}
    if details:
        body["details"] = details
    return OrjsonResponse({"error": body}, status_code=status_code, headers=headers)


def _detail(err: Mapping[str, Any]) -> dict[str, Any]:
    """One validation error as `{field, message}`: no "input" (the body echoed, megabytes)."""
    if err.get("type") == "json_invalid":
        # loc is ("body", <character offset>): the offset is no field.
        reason = err.get("ctx", {}).get("error", "")
        where = err.get("loc", ("body", "?"))[-1]
        return {"field": "body", "message": f"not valid JSON: {reason} (at character {where})"}
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    return {"field": ".".join(loc) or "body", "message": err.get("msg", "")}


def _validation_error(details: list[dict[str, Any]]) -> OrjsonResponse:
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    return error_response(422, f"invalid request: {summary}", details)


@lru_cache(maxsize=256)
def _path_regex(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route answers on `path`, in a fixed order.

    Starlette's own 405 names only the methods of the first route whose path matched, so a path
    served by two routes (PUT and DELETE /admin/faq/{id}) would announce one of them.
    """
    # Recent FastAPI keeps included routers nested; `iter_route_contexts` (what its own OpenAPI
    # builder walks) flattens them, prefixes included. Older releases list them flat.
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = cast(Iterable[Any], flatten(app.routes) if callable(flatten) else app.routes)
    methods: set[str] = set()
    for route in routes:
        template, route_methods = getattr(route, "path", None), getattr(route, "methods", None)
        if template and route_methods and _path_regex(template).match(path):
            methods |= set(route_methods)
    return sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> OrjsonResponse:
        return error_response(exc.status_code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> OrjsonResponse:
        return _validation_error([_detail(err) for err in exc.errors()])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> OrjsonResponse:
        if exc.status_code == 400:
            # FastAPI's answer to a body it cannot decode (bytes that are not UTF-8, say): the
            # API's own refusals are ApiErrors, so every plain 400 is this one. The document
            # promises 422 for a body that is not valid JSON, so it is one.
            details = [{"field": "body", "message": f"cannot be decoded as JSON: {exc.detail}"}]
            return _validation_error(details)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope["path"]))
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    # Added first, so innermost: the request id, CORS, the histogram and the access log (the
    # middlewares outside it) see its 500 like any other answer. Starlette's own handler for
    # Exception runs outside every middleware, where none of them would.
    app.add_middleware(UnexpectedErrorMiddleware)


class UnexpectedErrorMiddleware:
    """Answers an unexpected exception with the one JSON error shape, no stack trace."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            # Logged with the traceback for operators; the client gets no stack trace.
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:  # part of a response is out: the connection can only be dropped
                raise
            await error_response(500, "internal server error")(scope, receive, send)
