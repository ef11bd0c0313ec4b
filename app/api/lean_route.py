"""A route class for the hot JSON routes (POST /search, /search/batch): FastAPI declares them and
writes their OpenAPI document as usual; a well-formed request is run without FastAPI's
per-request dependency solver, and every other request goes through FastAPI's own handler.

Why: FastAPI's request handler (reading the body, `json.loads`, `solve_dependencies` over the
route's dependency tree, validating the body as Python data) cost about 60 of the 114 us that
the whole ASGI stack took per /search in process (scratch ASGI benchmark with a stub search
service: 114 -> 55 us with this handler). On the served path at c=1, with caches cold after
each model run, the span from our outer middleware to the route fell from 236-276 to 144-154 us
(scratch timeline). `make ab-serve` against the code before (`docs/bench/2026-11-26-ab-lean-
route/`): c=32 7.6% more requests/s (11 of 12 pairs), c=1 p50 2.9% lower (40 pairs).

What the fast path does, for a route whose declaration it can follow (checked once, when the
route is built; otherwise the route keeps FastAPI's handler):

- the body is one pydantic model, validated from the JSON bytes in one pydantic-core call
  (`model_validate_json`), only when the request's content type is JSON (what FastAPI parses);
- each dependency is an `async def` (or an object with an async `__call__`, as FastAPI's
  security schemes are) whose parameters are the `Request` and other such dependencies; they
  are called directly, each once per request (FastAPI's default cache);
- the endpoint returns a `Response`, which is sent as it is (FastAPI does the same).

Anything else, a request with another content type, a body that does not validate (or is not
JSON), or an app with dependency overrides, is handed to FastAPI's handler with the body already
read, so every error response is FastAPI's own, byte for byte (`tests/app/test_lean_route.py`
compares both on a corpus of good and bad bodies). A dependency that raises (a wrong API key)
raises here as it does there, and a request that is both malformed and without a key is
FastAPI's to answer, in FastAPI's order. Not run on the fast path: FastAPI's native
OpenTelemetry spans for the dependency step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True)
class _Dependency:
    """One dependency the fast path calls: `call(**kwargs)` with the request (under each name it
    takes it by: a `Request` or an `HTTPConnection` parameter) and its sub-dependencies' values.
    `name` is the parameter it fills; None for one declared in `dependencies=[...]` (a router's
    or a route's), which runs for its effect (a check that raises) and fills nothing."""

    name: str | None
    call: Callable[..., Coroutine[Any, Any, Any]]
    request_params: tuple[str, ...]
    subs: tuple[_Dependency, ...]


class LeanJsonRoute(APIRoute):
    """An `APIRoute` whose handler runs a well-formed JSON request without FastAPI's solver."""

    def get_route_handler(self) -> Handler:
        fallback = super().get_route_handler()
        dependant = _effective_dependant(self)
        plan = None if dependant is None else _plan(dependant)
        if dependant is None or plan is None:
            return fallback
        body_param, model, dependencies = plan
        endpoint = dependant.call
        assert endpoint is not None

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides or not _is_json(request):
                return await fallback(request)
            try:
                body = model.model_validate_json(await request.body())
            except ValidationError:
                return await fallback(request)
            values: dict[str, Any] = {body_param: body}
            await _fill(values, dependencies, request, {})
            response = await endpoint(**values)
            if not isinstance(response, Response):  # the plan only takes Response endpoints
                raise TypeError(f"{self.path}: the endpoint returned no Response")
            return response

        return handler


def _effective_dependant(route: APIRoute) -> Dependant | None:
    """The dependency tree FastAPI's own handler runs for `route` here. A route included in an
    app is served through an inclusion context (FastAPI >= 0.16x: the routers' dependencies
    joined to the route's), which FastAPI hands to `get_route_handler` in a context variable;
    older versions copy the route with them. None when that context is there but not readable
    (then the route keeps FastAPI's handler)."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = context_var.get() if context_var is not None else None
    if context is None or getattr(context, "original_route", None) is not route:
        return route.dependant
    dependant = getattr(context, "dependant", None)
    return dependant if isinstance(dependant, Dependant) else None


def _is_json(request: Request) -> bool:
    """Whether FastAPI would parse this body as JSON: application/json or application/*+json."""
    content_type = request.headers.get("content-type")
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def _fill(
    kwargs: dict[str, Any],
    dependencies: tuple[_Dependency, ...],
    request: Request,
    cache: dict[Any, Any],
) -> None:
    """Run `dependencies` in order (each call once per request) and put each named one's value
    in `kwargs`."""
    for dependency in dependencies:
        if dependency.call not in cache:
            own: dict[str, Any] = dict.fromkeys(dependency.request_params, request)
            await _fill(own, dependency.subs, request, cache)
            cache[dependency.call] = await dependency.call(**own)
        if dependency.name is not None:
            kwargs[dependency.name] = cache[dependency.call]


def _plan(
    dependant: Dependant,
) -> tuple[str, type[BaseModel], tuple[_Dependency, ...]] | None:
    """The body parameter, its model and the dependencies, if the fast path can run this
    route exactly as FastAPI would; None if anything in its declaration is beyond it."""
    if (
        _has_inputs(dependant)
        or dependant.request_param_name is not None
        or dependant.http_connection_param_name is not None
        or len(dependant.body_params) != 1
        or not _returns_response(dependant.call)
        or not inspect.iscoroutinefunction(dependant.call)
    ):
        return None
    field = dependant.body_params[0]
    model = field.field_info.annotation
    if (
        not (isinstance(model, type) and issubclass(model, BaseModel))
        or field.alias != field.name
        or getattr(field.field_info, "embed", False)
    ):
        return None
    dependencies = _dependencies(dependant.dependencies)
    return None if dependencies is None else (field.name, model, dependencies)


def _dependency(dependant: Dependant) -> _Dependency | None:
    call = dependant.call
    if (
        call is None
        or not dependant.use_cache
        or _has_inputs(dependant)
        or dependant.body_params
        or not _is_async(call)
    ):
        return None
    subs = _dependencies(dependant.dependencies)
    if subs is None:
        return None
    connection = (dependant.request_param_name, dependant.http_connection_param_name)
    return _Dependency(
        dependant.name, call, tuple(name for name in connection if name is not None), subs
    )


def _dependencies(dependants: list[Dependant]) -> tuple[_Dependency, ...] | None:
    """The fast path's form of each dependency, or None if any is beyond it."""
    found: list[_Dependency] = []
    for dependant in dependants:
        dependency = _dependency(dependant)
        if dependency is None:
            return None
        found.append(dependency)
    return tuple(found)


def _has_inputs(dependant: Dependant) -> bool:
    """Whether it reads anything but the request and its dependencies (path, query, header or
    cookie parameters, the response, background tasks, security scopes, a websocket)."""
    return bool(
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.websocket_param_name
    )


def _is_async(call: Any) -> bool:
    """An `async def`, or an object whose `__call__` is one; not a generator (FastAPI runs those
    with an exit stack) and not a plain function (FastAPI runs those in its threadpool)."""
    if inspect.isfunction(call) or inspect.ismethod(call):
        return inspect.iscoroutinefunction(call)
    return inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004


def _returns_response(call: Any) -> bool:
    annotation = inspect.signature(call, eval_str=True).return_annotation
    return isinstance(annotation, type) and issubclass(annotation, Response)
