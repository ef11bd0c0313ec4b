"""Keys, body limit, CORS and request ids; the model is beside the point (fake encoder)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.core.logging import JsonFormatter
from app.main import create_app
from tests.app.conftest import fake_app, serve, settings_for
from tests.fakes import FakeEncoder


def _fake_app(tmp_path: Path, **overrides: object) -> Iterator[httpx.Client]:
    with serve(fake_app(tmp_path, **overrides)) as client:
        yield client


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[httpx.Client]:
    key_file = tmp_path / "search.key"
    key_file.write_text("s3cret-search\n")
    yield from _fake_app(
        tmp_path,
        search_api_key_file=key_file,
        max_body_bytes=2048,
        cors_origins=["https://shop.example"],
    )


QUERY = {"query": "where is my order"}


def test_search_key_from_file_is_required(keyed: httpx.Client) -> None:
    r = keyed.post("/search", json=QUERY)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "unauthorized"
    assert keyed.post("/search", json=QUERY, headers={"X-API-Key": "wrong"}).status_code == 401
    assert keyed.post("/search", json=QUERY, headers={"X-API-Key": "s3cret-search"}).is_success
    bearer = {"Authorization": "Bearer s3cret-search"}
    assert keyed.post("/search", json=QUERY, headers=bearer).status_code == 200
    batch = {"queries": [QUERY]}
    assert keyed.post("/search/batch", json=batch).status_code == 401
    assert keyed.post("/search/batch", json=batch, headers=bearer).status_code == 200
    # Health and metrics stay open for probes and scrapers.
    assert keyed.get("/health/live").status_code == 200


def test_oversize_body_is_413_with_content_length_and_when_streamed(keyed: httpx.Client) -> None:
    big = json.dumps({"query": "x" * 5000}).encode()
    headers = {"X-API-Key": "s3cret-search", "Content-Type": "application/json"}
    r = keyed.post("/search", content=big, headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "payload_too_large"
    assert "2048" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    r = keyed.post("/search", content=chunks(), headers=headers)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "payload_too_large"

    # A streamed body under the limit is replayed to the route intact.
    small = json.dumps(QUERY).encode()
    r = keyed.post("/search", content=iter([small[:5], small[5:]]), headers=headers)
    assert r.status_code == 200 and r.json()["results"]


def test_request_id_is_echoed_or_made(keyed: httpx.Client) -> None:
    r = keyed.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = keyed.get("/health/live").headers["x-request-id"]
    assert len(made) == 32
    # An id that could break log lines is replaced, not echoed.
    assert keyed.get("/health/live", headers={"X-Request-ID": "a b\\"}).headers[
        "x-request-id"
    ] not in ("a b\\",)


def test_cors_allows_only_configured_origins(keyed: httpx.Client) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    ok = keyed.options("/search", headers={"Origin": "https://shop.example", **preflight})
    assert ok.headers.get("access-control-allow-origin") == "https://shop.example"
    bad = keyed.options("/search", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in bad.headers


def test_unreadable_key_file_stops_startup(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, tmp_path / "q", admin_api_key_file=tmp_path / "missing")
    with pytest.raises(RuntimeError, match="cannot read the API key file"):
        create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=384))


def test_json_log_lines_carry_the_request_id() -> None:
    from app.middleware import request_id_var

    token = request_id_var.set("rid-42")
    try:
        record = logging.makeLogRecord(
            {"name": "app.access", "levelname": "INFO", "msg": "POST %s", "args": ("/search",)}
        )
        record.__dict__.update({"status": 200, "duration_ms": 3.5, "color_message": "\x1b[36m"})
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "rid-42"
    assert line["message"] == "POST /search"
    assert line["status"] == 200 and line["duration_ms"] == 3.5
    assert "color_message" not in line
