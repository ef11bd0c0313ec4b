"""A stand-in for a Qdrant server: the few REST endpoints the service's reads call.

No Qdrant server can run on the development machines (no binary in the registries, no Docker
engine), so the outage test points `QdrantClient(url=...)` at this instead: a FastAPI app on a
loopback port answering in Qdrant's REST shapes (`{"result": ..., "status": "ok", "time": ...}`)
from qdrant-client's own local mode. It covers the version check the client makes at
construction (`GET /`), `GET /aliases`, `GET /collections/{name}`, `POST .../points/count` and
`POST .../points/query` and `.../points/query/batch`, which is all `QdrantStore.check_model` and
the searches use. The real server path is the docker-compose stack.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from qdrant_client import QdrantClient, models


def _ok(result: Any, started: float) -> JSONResponse:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return JSONResponse({"result": result, "status": "ok", "time": time.perf_counter() - started})


def _not_found(exc: Exception) -> JSONResponse:
    return JSONResponse({"status": {"error": f"Not found: {exc}"}, "time": 0.0}, status_code=404)


def create_stub_app(backend: QdrantClient) -> FastAPI:
    """REST routes answered by `backend` (a local-mode client); sync routes, as in the service."""
    app = FastAPI()
    app.state.requests = 0

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Any:
        app.state.requests += 1
        return await call_next(request)

    @app.get("/")
    def root() -> dict[str, str]:
        return {"title": "qdrant stub", "version": importlib.metadata.version("qdrant-client")}

    @app.get("/aliases")
    def aliases() -> JSONResponse:
        return _ok(backend.get_aliases(), time.perf_counter())

    @app.get("/collections/{name}")
    def collection(name: str) -> JSONResponse:
        started = time.perf_counter()
        try:
            return _ok(backend.get_collection(name), started)
        except ValueError as exc:
            return _not_found(exc)

    @app.post("/collections/{name}/points/count")
    def count(name: str, body: models.CountRequest) -> JSONResponse:
        started = time.perf_counter()
        try:
            result = backend.count(name, count_filter=body.filter, exact=bool(body.exact))
        except ValueError as exc:
            return _not_found(exc)
        return _ok(result, started)

    @app.post("/collections/{name}/points/query")
    def query(name: str, body: models.QueryRequest) -> JSONResponse:
        started = time.perf_counter()
        query = body.query
        if isinstance(query, models.NearestQuery):
            query = query.nearest
        try:
            result = backend.query_points(
                name,
                query=query,
                query_filter=body.filter,
                limit=body.limit or 10,
                with_payload=body.with_payload if body.with_payload is not None else True,
                with_vectors=body.with_vector or False,
            )
        except ValueError as exc:
            return _not_found(exc)
        return _ok(result, started)

    @app.post("/collections/{name}/points/query/batch")
    def query_batch(name: str, body: models.QueryRequestBatch) -> JSONResponse:
        started = time.perf_counter()
        try:
            results = backend.query_batch_points(name, requests=body.searches)
        except ValueError as exc:
            return _not_found(exc)
        return _ok([r.model_dump(mode="json") for r in results], started)

    return app


@contextmanager
def run_stub(backend: QdrantClient, port: int) -> Iterator[FastAPI]:
    """Serve the stub on 127.0.0.1:`port` in a thread until the block ends."""
    app = create_stub_app(backend)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the Qdrant stub did not start on port {port}")
        time.sleep(0.02)
    try:
        yield app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
