"""Dependencies as `Annotated` aliases: the heavy objects (on `app.state`, set by lifespan) and
the two API keys.

All are `async def`: FastAPI runs a plain `def` dependency in its threadpool, one hop per
dependency and request, which under load cost more than the work itself. The keys are OpenAPI
security schemes, sent as X-API-Key or `Authorization: Bearer <key>` (what OpenAI clients send).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.api.errors import ApiError
from app.core.config import Settings
from app.core.security import API_KEY_HEADER, ApiKeys, key_matches, presented_key
from app.metrics import Metrics
from app.services.batcher import InferenceWorker
from app.services.index_guard import IndexGuard
from app.services.reindex import AdminService
from index_builder.model.encoder import Encoder

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


def _from_state(name: str) -> Any:
    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return Depends(get)


def _accepts(request: Request, *keys: str | None) -> bool:
    """Whether the request presents one of `keys` (None: no such key)."""
    given = presented_key(request.headers.get(API_KEY_HEADER), request.headers.get("authorization"))
    return any(key is not None and key_matches(given, key) for key in keys)


def _unauthorized() -> ApiError:
    message = "missing or wrong API key: send it as X-API-Key or Authorization: Bearer"
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def check_search_key(request: Request) -> None:
    """The search key check (the admin key passes too: the admin page's query box), for a route
    that reads its request itself (`routes/search.py`) and for `SearchAuth`."""
    keys: ApiKeys = request.app.state.api_keys
    if keys.search is not None and not _accepts(request, keys.search, keys.admin):
        raise _unauthorized()


def may_see_details(request: Request) -> bool:
    """Whether a request may read the service's internals (/health/ready's problem, index
    and model): always when no key is configured, else with the search or the admin key."""
    keys: ApiKeys = request.app.state.api_keys
    no_keys = keys.search is None and keys.admin is None
    return no_keys or _accepts(request, keys.search, keys.admin)


async def _require_search_key(
    request: Request, _: Annotated[str | None, Security(_search_key)]
) -> None:
    check_search_key(request)


async def _require_admin_key(
    request: Request, _: Annotated[str | None, Security(_admin_key)]
) -> None:
    admin = request.app.state.api_keys.admin
    if admin is None:
        raise ApiError(403, "admin routes are disabled: set FAQ_ADMIN_API_KEY to enable them")
    if not _accepts(request, admin):
        raise _unauthorized()


SettingsDep = Annotated[Settings, _from_state("settings")]
MetricsDep = Annotated[Metrics, _from_state("metrics")]
EncoderDep = Annotated[Encoder, _from_state("encoder")]
QueriesDep = Annotated[InferenceWorker, _from_state("queries")]
GuardDep = Annotated[IndexGuard, _from_state("guard")]
AdminDep = Annotated[AdminService, _from_state("admin")]
SearchAuth = Annotated[None, Depends(_require_search_key)]
AdminAuth = Annotated[None, Depends(_require_admin_key)]
