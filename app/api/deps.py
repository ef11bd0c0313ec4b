"""Dependencies as `Annotated` aliases: the heavy objects (on `app.state`, set by lifespan) and
the two API keys.

All are `async def`: they only read `app.state` and headers, and FastAPI runs a plain `def`
dependency in its threadpool, one hop per dependency and request (four or five for /search),
which under load cost more than the work itself.

The keys are declared as OpenAPI security schemes (`SearchKey`, `AdminKey`), so Swagger UI has
an Authorize button and generated clients send them. Both travel in the X-API-Key header;
`Authorization: Bearer <key>` is accepted too (OpenAI clients send that).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.api.errors import ApiError
from app.core.config import Settings
from app.core.security import API_KEY_HEADER, ApiKeys, key_matches, presented_key
from app.metrics import Metrics
from app.services.batcher import InferenceWorker
from app.services.index_guard import IndexGuard
from app.services.reindex import AdminService
from index_builder.encoder import Encoder

SEARCH_SCHEME = "SearchKey"
ADMIN_SCHEME = "AdminKey"

_search_key = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name=SEARCH_SCHEME,
    description="The search key (FAQ_SEARCH_API_KEY) for /search, /v1/* and /info; also "
    "accepted as `Authorization: Bearer <key>`.",
    auto_error=False,
)
_admin_key = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name=ADMIN_SCHEME,
    description="The admin key (FAQ_ADMIN_API_KEY) for /admin; also accepted as "
    "`Authorization: Bearer <key>`.",
    auto_error=False,
)


async def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def _metrics(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


async def _encoder(request: Request) -> Encoder:
    return cast(Encoder, request.app.state.encoder)


async def _queries(request: Request) -> InferenceWorker:
    return cast(InferenceWorker, request.app.state.queries)


async def _guard(request: Request) -> IndexGuard:
    return cast(IndexGuard, request.app.state.guard)


async def _admin(request: Request) -> AdminService:
    return cast(AdminService, request.app.state.admin)


def _api_keys(request: Request) -> ApiKeys:
    # Read by the key checks below (not a dependency of its own).
    return cast(ApiKeys, request.app.state.api_keys)


def _check(
    request: Request, header_value: str | None, expected: str, admin: str | None = None
) -> None:
    """`admin`: the admin key, which the search routes take too (the admin page's query box)."""
    given = presented_key(header_value, request.headers.get("authorization"))
    if not (key_matches(given, expected) or (admin is not None and key_matches(given, admin))):
        raise ApiError(
            401,
            "missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def _require_search_key(
    request: Request, header_value: Annotated[str | None, Security(_search_key)]
) -> None:
    check_search_key(request)


def check_search_key(request: Request) -> None:
    """The search key check, for a route that reads its request itself (`routes/search.py`),
    and the dependency above (which declares the key for the OpenAPI document)."""
    keys = _api_keys(request)
    if keys.search is not None:
        _check(request, request.headers.get(API_KEY_HEADER), keys.search, keys.admin)


def may_see_details(request: Request) -> bool:
    """Whether a request may read the service's internals (/health/ready's problem, index
    and model): always when no key is configured, else with the search or the admin key."""
    keys = _api_keys(request)
    configured = [k for k in (keys.search, keys.admin) if k is not None]
    given = presented_key(request.headers.get(API_KEY_HEADER), request.headers.get("authorization"))
    return not configured or any(key_matches(given, k) for k in configured)


async def _require_admin_key(
    request: Request, header_value: Annotated[str | None, Security(_admin_key)]
) -> None:
    keys = _api_keys(request)
    if keys.admin is None:
        raise ApiError(403, "admin routes are disabled: set FAQ_ADMIN_API_KEY to enable them")
    _check(request, header_value, keys.admin)


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
EncoderDep = Annotated[Encoder, Depends(_encoder)]
QueriesDep = Annotated[InferenceWorker, Depends(_queries)]
GuardDep = Annotated[IndexGuard, Depends(_guard)]
AdminDep = Annotated[AdminService, Depends(_admin)]
SearchAuth = Annotated[None, Depends(_require_search_key)]
AdminAuth = Annotated[None, Depends(_require_admin_key)]
