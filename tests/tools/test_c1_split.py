"""tools.c1_split's ASGI call: it reaches the route with the body and refuses a failed answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tools.c1_split import asgi_search


def _app(status: int) -> tuple[FastAPI, list[Any]]:
    app = FastAPI()
    seen: list[Any] = []

    @app.post("/search")
    async def search(request: Request) -> JSONResponse:
        seen.append(json.loads(await request.body()))
        return JSONResponse({"results": []}, status_code=status)

    return app, seen


def test_the_body_reaches_the_route() -> None:
    app, seen = _app(200)
    asyncio.run(asgi_search(app, b'{"query": "can I cancel mi pedido", "top_k": 5}'))
    assert seen == [{"query": "can I cancel mi pedido", "top_k": 5}]


def test_an_answer_other_than_200_is_an_error() -> None:
    app, _ = _app(503)
    with pytest.raises(RuntimeError, match="answered 503"):
        asyncio.run(asgi_search(app, b"{}"))
