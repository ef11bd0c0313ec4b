"""API keys: resolved from a setting or a secret file, compared in constant time. Nothing here
knows about HTTP: the dependencies that refuse a request live in `app.api.deps`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from app.core.config import Settings

# Where a client puts its key: this header, or `Authorization: Bearer <key>`.
API_KEY_HEADER = "X-API-Key"


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


def presented_key(api_key_header: str | None, authorization: str | None) -> str | None:
    """The key a client sent: the X-API-Key header, else an `Authorization: Bearer` token."""
    if api_key_header:
        return api_key_header
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(given: str | None, expected: str) -> bool:
    # compare_digest on bytes: the time taken does not depend on where the keys differ.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class ApiKeys:
    """The keys resolved once at startup, so a bad key file stops the service from starting."""

    search: str | None
    admin: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        return cls(
            search=resolve_key(settings.search_api_key, settings.search_api_key_file),
            admin=resolve_key(settings.admin_api_key, settings.admin_api_key_file),
        )
