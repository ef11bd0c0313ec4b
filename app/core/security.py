"""API keys: from a setting or a secret file, compared in constant time."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from pydantic import SecretStr

from app.api.errors import ApiError
from app.core.config import Settings


def resolve_key(value: SecretStr | None, file: Path | None) -> str | None:
    """The key itself, or the first line of its file (how container secrets are mounted)."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is not None:
        try:
            key = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise RuntimeError(f"cannot read the API key file {file}: {exc}") from exc
        if not key:
            raise RuntimeError(f"the API key file {file} is empty")
        return key
    return None


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def check_key(request: Request, expected: str) -> None:
    given = presented_key(request)
    # compare_digest on bytes: the time taken does not depend on where the keys differ.
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401,
            "missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )


class ApiKeys:
    """The keys resolved once at startup, so a bad key file stops the service from starting."""

    def __init__(self, settings: Settings) -> None:
        self.search = resolve_key(settings.search_api_key, settings.search_api_key_file)
        self.admin = resolve_key(settings.admin_api_key, settings.admin_api_key_file)


def _require_search_key(request: Request) -> None:
    keys: ApiKeys = request.app.state.api_keys
    if keys.search is not None:
        check_key(request, keys.search)


def _require_admin_key(request: Request) -> None:
    keys: ApiKeys = request.app.state.api_keys
    if keys.admin is None:
        raise ApiError(403, "admin routes are disabled: set FAQ_ADMIN_API_KEY to enable them")
    check_key(request, keys.admin)


SearchAuth = Annotated[None, Depends(_require_search_key)]
AdminAuth = Annotated[None, Depends(_require_admin_key)]
