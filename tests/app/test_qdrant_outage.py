"""Server mode with Qdrant down: not ready, quick 503s, and recovery without a restart.

Qdrant is played by `tests/qdrant_stub.py` (qdrant-client's REST calls answered from local
mode), since no Qdrant server can run here; the real server is the docker-compose stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from qdrant_client import QdrantClient

from app.main import create_app
from index_builder.faq import read_faq
from index_builder.store import QdrantStore
from tests.app.conftest import SAMPLE_FAQ, _free_port, serve, settings_for
from tests.fakes import FakeEncoder
from tests.qdrant_stub import run_stub

# The limit is "within a second"; the settings below keep a wide margin under it.
LIMIT_S = 1.0
QUERY = {"query": "where is my order", "top_k": 3}


def _timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = call()
    return response, time.perf_counter() - started


def _wait_ready(api: httpx.Client, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        ready = api.get("/health/ready")
        if ready.status_code == 200 or time.monotonic() > deadline:
            return ready
        time.sleep(0.1)


def _assert_down(api: httpx.Client) -> None:
    ready, took = _timed(lambda: api.get("/health/ready"))
    assert ready.status_code == 503, ready.text
    assert took < LIMIT_S
    assert ready.json()["ready"] is False
    assert "Qdrant is unreachable" in ready.json()["problem"]
    for _ in range(3):  # the first pays the failed check, the next ones its cached answer
        r, took = _timed(lambda: api.post("/search", json=QUERY))
        assert r.status_code == 503, r.text
        assert took < LIMIT_S
        assert r.json()["error"]["type"] == "service_unavailable"
        assert "Qdrant is unreachable" in r.json()["error"]["message"]
        assert r.headers["Retry-After"]


def _assert_up(api: httpx.Client) -> None:
    ready = _wait_ready(api, timeout_s=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["index"] == "faq_v1"
    r = api.post("/search", json=QUERY)
    assert r.status_code == 200, r.text
    assert r.json()["index"] == "faq_v1"
    assert len(r.json()["results"]) == 3


def test_service_waits_for_qdrant_and_reconnects_without_restart(tmp_path: Path) -> None:
    encoder = FakeEncoder(dim=384)
    backend = QdrantClient(":memory:")
    QdrantStore(backend).build(read_faq(SAMPLE_FAQ), encoder, progress=False)

    port = _free_port()  # nothing listens here until the stub starts
    settings = settings_for(
        tmp_path / "no-model",
        tmp_path / "unused",
        qdrant_url=f"http://127.0.0.1:{port}",
        qdrant_timeout_s=0.5,
        index_check_interval_s=0.5,
    )
    app = create_app(settings, encoder_factory=lambda _: encoder)
    with serve(app) as api:
        # Started although Qdrant is down: alive, not ready, searches refused quickly.
        assert api.get("/health/live").status_code == 200
        _assert_down(api)

        with run_stub(backend, port) as stub:
            _assert_up(api)
            assert stub.state.requests > 0  # the answers came from the stand-in

        # Qdrant goes away under a serving process, then comes back on the same address.
        _assert_down(api)
        with run_stub(backend, port):
            _assert_up(api)
