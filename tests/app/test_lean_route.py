"""The hot routes' handler (`app/api/lean_route.py`): the same answers as FastAPI's own handler
for good and bad requests alike, the fast path really taken by a well-formed request, and
dependencies declared on an including router still run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.api.errors import ApiError, install_error_handlers
from app.api.lean_route import LeanJsonRoute
from app.api.responses import OrjsonResponse
from app.main import create_app
from index_builder.encoder import FakeEncoder
from tests.app.conftest import build_index, serve, settings_for

KEY = "s3cret-search"
JSON = {"Content-Type": "application/json", "X-API-Key": KEY}

# (path, headers, body): good requests, and bad ones of every kind the fast path hands back.
CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("/search", JSON, b'{"query": "where is my order"}'),
    ("/search", JSON, b'{"query": "cancel mi pedido", "top_k": 3, "group": false}'),
    ("/search", JSON, b'{"query": "refund", "top_k": 3.0, "filters": {"lang": " EN "}}'),
    ("/search", JSON, b'{"query": "a", "query": "where is my order"}'),
    ("/search", JSON, b'{"query": "\\u00e9t\\u00e9", "min_score": 0.2, "lang": "es"}'),
    ("/search", {**JSON, "Content-Type": "application/json; charset=utf-8"}, b'{"query": "x"}'),
    ("/search", {**JSON, "Content-Type": "APPLICATION/JSON"}, b'{"query": "x"}'),
    ("/search", {**JSON, "Content-Type": "application/vnd.shop+json"}, b'{"query": "x"}'),
    ("/search", {**JSON, "Content-Type": "text/plain"}, b'{"query": "x"}'),
    ("/search", {"X-API-Key": KEY}, b'{"query": "x"}'),
    ("/search", {"Content-Type": "application/json"}, b'{"query": "x"}'),
    ("/search", {**JSON, "X-API-Key": "wrong"}, b'{"query": "x"}'),
    ("/search", {"Content-Type": "application/json"}, b'{"query": 5}'),
    ("/search", JSON, b""),
    ("/search", JSON, b"null"),
    ("/search", JSON, b"[]"),
    ("/search", JSON, b'{"query": '),
    ("/search", JSON, b'{"query": "x"}\n\x00'),
    ("/search", JSON, b'{"query": 5}'),
    ("/search", JSON, b'{"query": "   "}'),
    ("/search", JSON, b'{"query": "x", "top_k": "5"}'),
    ("/search", JSON, b'{"query": "x", "top_k": 2.5}'),
    ("/search", JSON, b'{"query": "x", "top_k": 1e400}'),
    ("/search", JSON, b'{"query": "x", "group": 1}'),
    ("/search", JSON, b'{"query": "x", "surprise": true}'),
    ("/search", JSON, b'{"query": "x", "min_score": NaN}'),
    ("/search", JSON, b'{"query": "\\ud800"}'),
    ("/search", JSON, b'{"query": "x\xff"}'),
    ("/search", JSON, b'\xef\xbb\xbf{"query": "x"}'),
    ("/search", JSON, '{"query": "where is my order"}'.encode("utf-16")),
    ("/search/batch", JSON, b'{"queries": [{"query": "x"}, {"query": "refund", "top_k": 2}]}'),
    ("/search/batch", JSON, b'{"queries": []}'),
    ("/search/batch", JSON, json.dumps({"queries": [{"query": "x"}] * 40}).encode()),
    ("/search/batch", JSON, b'{"queries": [{"query": "x", "top_k": 0}]}'),
]


def _answer(client: httpx.Client, path: str, headers: dict[str, str], body: bytes) -> Any:
    r = client.post(path, content=body, headers=headers)
    payload = r.json()
    if isinstance(payload, dict):
        payload.pop("took_ms", None)  # the one field that differs between two runs
    return r.status_code, r.headers.get("www-authenticate"), payload


def _answers(tmp_path: Path, name: str) -> list[Any]:
    qdrant = tmp_path / f"qdrant-{name}"
    build_index(qdrant, FakeEncoder(dim=384))
    key_file = tmp_path / "search.key"
    key_file.write_text(KEY)
    settings = settings_for(tmp_path / "unused-model", qdrant, search_api_key_file=key_file)
    app = create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=384))
    with serve(app) as client:
        return [_answer(client, *case) for case in CASES]


def test_the_hot_routes_answer_exactly_as_fastapis_handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lean = _answers(tmp_path, "lean")
    # The same app with FastAPI's own handler on every route.
    monkeypatch.setattr(LeanJsonRoute, "get_route_handler", APIRoute.get_route_handler)
    reference = _answers(tmp_path, "fastapi")
    for case, got, expected in zip(CASES, lean, reference, strict=True):
        assert got == expected, case
    statuses = [status for status, _, _ in lean]
    # The corpus holds answers, refusals of the body and of the key.
    assert statuses.count(200) >= 8 and 401 in statuses and statuses.count(422) >= 10


@pytest.fixture
def solver_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths whose request went through FastAPI's dependency solver."""
    calls: list[str] = []
    solve = fastapi.routing.solve_dependencies

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].url.path)
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    yield calls


def test_a_well_formed_request_skips_the_solver_and_a_bad_one_gets_it(
    tmp_path: Path, solver_calls: list[str]
) -> None:
    qdrant = tmp_path / "qdrant"
    build_index(qdrant, FakeEncoder(dim=384))
    settings = settings_for(tmp_path / "unused-model", qdrant)
    with serve(create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=384))) as client:
        assert client.post("/search", json={"query": "where is my order"}).status_code == 200
        assert client.post("/search/batch", json={"queries": [{"query": "x"}]}).is_success
        assert solver_calls == []
        assert client.post("/search", json={"query": 5}).status_code == 422
        assert client.get("/info").status_code == 200  # a route of FastAPI's route class
        assert solver_calls == ["/search", "/info"]


class Item(BaseModel):
    name: str


async def _deny(request: Request) -> None:
    raise ApiError(403, f"{request.url.path}: denied by the including router")


async def _allow() -> None:
    return None


def _sync_dependency() -> str:
    return "from the threadpool"


def _small_app() -> FastAPI:
    router = APIRouter(route_class=LeanJsonRoute)

    @router.post("/guarded")
    async def guarded(item: Item) -> OrjsonResponse:
        return OrjsonResponse({"name": item.name})

    @router.post("/sync")
    async def sync(item: Item, value: str = Depends(_sync_dependency)) -> OrjsonResponse:
        return OrjsonResponse({"name": item.name, "value": value})

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router, prefix="/closed", dependencies=[Depends(_deny)])
    app.include_router(router, prefix="/open")
    return app


def test_an_including_routers_dependencies_run_and_unusual_routes_keep_fastapis_handler(
    solver_calls: list[str],
) -> None:
    app = _small_app()
    with serve(app) as client:
        denied = client.post("/closed/guarded", json={"name": "x"})
        assert denied.status_code == 403 and "denied" in denied.json()["error"]["message"]
        assert client.post("/open/guarded", json={"name": "x"}).json() == {"name": "x"}
        assert solver_calls == []
        # A plain `def` dependency runs in FastAPI's threadpool: the route keeps its handler.
        sync = client.post("/open/sync", json={"name": "x"})
        assert sync.json() == {"name": "x", "value": "from the threadpool"}
        assert solver_calls == ["/open/sync"]
        # Dependency overrides (tests' tool) are FastAPI's to apply.
        app.dependency_overrides[_deny] = _allow
        assert client.post("/closed/guarded", json={"name": "y"}).json() == {"name": "y"}
        assert solver_calls == ["/open/sync", "/closed/guarded"]
