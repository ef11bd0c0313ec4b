"""The Qdrant server path under a slow or faulty server (issue 27, item 8): timeouts keep their
fractions, reads are tried again within one deadline and writes never, a search is one request,
and the API key stays secret.

No Qdrant server can run here, so `FakeQdrant` plays one: a threaded HTTP server on a loopback
port answering the few REST routes these tests call with canned JSON in Qdrant's shapes, each
request's answer scripted (a delay, then an answer, a 503 or a dropped connection). The service
test uses `tests/qdrant_stub.py` (answers from qdrant-client's local mode) like the outage test.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from app.core.config import Settings
from app.main import create_app
from app.services.index_guard import open_settings_store
from index_builder.faq import read_faq
from index_builder.store import QdrantStore, SearchSpec
from tests.app.conftest import SAMPLE_FAQ, _free_port, serve, settings_for
from tests.fakes import FakeEncoder
from tests.qdrant_stub import run_stub

ALIASES = {"aliases": [{"alias_name": "faq", "collection_name": "faq_v1"}]}
POINT = {
    "id": "5c0a5b1e-0000-4000-8000-000000000001",
    "version": 0,
    "score": 0.9,
    "payload": {"id": "a1", "question": "q", "answer": "a", "lang": "en", "tags": []},
}
# qdrant-client checks the server's version in a thread at construction; against a host that
# does not exist, or a fake already stopped, it only warns.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")
# An answer the script gives: ("ok" | "503" | "drop", seconds to wait first).
Step = tuple[str, float]


class FakeQdrant:
    """Canned Qdrant REST answers on 127.0.0.1. `script[path]` lists how the next requests to
    `path` are answered; once it is empty they are answered at once. `requests` records each
    request's method, path and headers (the client's version check, `GET /`, is left out)."""

    def __init__(self) -> None:
        self.script: dict[str, list[Step]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()  # ends every wait, so the server stops at once
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self)

            def do_POST(self) -> None:
                fake._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        path = handler.path.split("?")[0]
        if path == "/":
            version = importlib.metadata.version("qdrant-client")
            return self._send(handler, 200, {"title": "fake qdrant", "version": version})
        with self._lock:
            self.requests.append((handler.command, path, dict(handler.headers)))
            steps = self.script.get(path) or []
            outcome, delay_s = steps.pop(0) if steps else ("ok", 0.0)
        self.release.wait(delay_s)
        if outcome == "drop":  # the connection closes with no answer
            return
        if outcome == "503":
            return self._send(handler, 503, {"status": {"error": "Service Unavailable"}})
        self._send(handler, 200, {"result": _result(path, body), "status": "ok", "time": 0.0})

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting


def _result(path: str, body: bytes) -> Any:
    if path == "/aliases":
        return ALIASES
    if path == "/collections/aliases":
        return True
    if path.endswith("/points/query/batch"):
        return [{"points": [POINT]} for _ in json.loads(body)["searches"]]
    if path.endswith("/points/query"):
        return {"points": [POINT]}
    raise AssertionError(f"the fake has no answer for {path}")


@pytest.fixture
def fake() -> Iterator[FakeQdrant]:
    server = FakeQdrant()
    thread = threading.Thread(target=server.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.server.shutdown()
        server.server.server_close()


def _store(fake: FakeQdrant, timeout_s: float) -> QdrantStore:
    return QdrantStore.connect(fake.url, timeout_s=timeout_s)


# --- the timeout -------------------------------------------------------------------------------


def test_a_timeout_keeps_its_fraction(fake: FakeQdrant) -> None:
    # qdrant-client alone rounds 0.3 s up to 1 s.
    fake.script["/aliases"] = [("ok", 5.0)]
    store = _store(fake, timeout_s=0.3)
    started = time.perf_counter()
    with pytest.raises(ResponseHandlingException):
        store.current_collection()
    took = time.perf_counter() - started
    assert 0.25 <= took < 0.7, took
    # The try spent the read's deadline: none after it.
    assert fake.paths() == ["/aliases"]
    store.close()


# --- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "drop"])
def test_a_read_is_tried_again_after_a_quick_fault(fake: FakeQdrant, fault: str) -> None:
    fake.script["/aliases"] = [(fault, 0.0)]
    fake.script["/collections/faq/points/query/batch"] = [(fault, 0.0)]
    store = _store(fake, timeout_s=1.0)
    assert store.current_collection() == "faq_v1"
    hits = store._search_batch(np.ones((1, 4), np.float32), [SearchSpec(3)])
    assert [h.id for h in hits[0]] == ["a1"]
    assert fake.paths() == ["/aliases"] * 2 + ["/collections/faq/points/query/batch"] * 2
    store.close()


def test_a_read_gives_up_after_two_tries(fake: FakeQdrant) -> None:
    fake.script["/aliases"] = [("503", 0.0)] * 5
    store = _store(fake, timeout_s=1.0)
    with pytest.raises(UnexpectedResponse):
        store.current_collection()
    assert fake.paths() == ["/aliases"] * 2
    store.close()


def test_the_tries_of_a_read_share_one_deadline(fake: FakeQdrant) -> None:
    # A slow 503, then a server that hangs: the second try gets what is left of 0.5 s, not 0.5 s
    # of its own (which would make 0.3 + 0.05 + 0.5 s).
    fake.script["/aliases"] = [("503", 0.3), ("ok", 5.0)]
    store = _store(fake, timeout_s=0.5)
    started = time.perf_counter()
    with pytest.raises(ResponseHandlingException):
        store.current_collection()
    took = time.perf_counter() - started
    assert took < 0.7, took
    assert fake.paths() == ["/aliases"] * 2
    store.close()


def test_a_write_is_never_tried_again(fake: FakeQdrant) -> None:
    fake.script["/collections/aliases"] = [("503", 0.0)]
    store = _store(fake, timeout_s=1.0)
    with pytest.raises(UnexpectedResponse):
        store._move_alias("faq_v2")
    # The alias lookup before it is a read; the move itself was sent once.
    assert fake.paths() == ["/aliases", "/collections/aliases"]
    store.close()


# --- one request per search --------------------------------------------------------------------


def test_a_store_search_is_one_request_through_the_alias(fake: FakeQdrant) -> None:
    store = _store(fake, timeout_s=1.0)
    assert [h.id for h in store.search(np.ones(4, np.float32), 3)] == ["a1"]
    store._search_batch(np.ones((2, 4), np.float32), [SearchSpec(3), SearchSpec(5)])
    # A single search is a batch of one: still one request, through the alias.
    assert fake.paths() == ["/collections/faq/points/query/batch"] * 2
    store.close()


def test_a_service_search_is_one_request_to_the_server(tmp_path: Path) -> None:
    encoder = FakeEncoder(dim=384)
    backend = QdrantClient(":memory:")
    QdrantStore(backend).build(read_faq(SAMPLE_FAQ), encoder, progress=False)
    port = _free_port()
    settings = settings_for(
        tmp_path / "no-model", tmp_path / "unused", qdrant_url=f"http://127.0.0.1:{port}"
    )
    app = create_app(settings, encoder_factory=lambda _: encoder)
    query = {"query": "where is my order", "top_k": 3}
    with run_stub(backend, port) as stub, serve(app) as api:
        assert api.post("/search", json=query).status_code == 200  # the index check is cached
        before = stub.state.requests
        for _ in range(5):
            r = api.post("/search", json=query)
            assert r.status_code == 200, r.text
        assert stub.state.requests - before == 5


# --- the API key -------------------------------------------------------------------------------


def test_the_api_key_is_secret_and_still_sent(fake: FakeQdrant) -> None:
    settings = Settings(qdrant_url=fake.url, qdrant_api_key="s3cret-key", qdrant_timeout_s=1.0)
    assert "s3cret-key" not in repr(settings)
    assert "s3cret-key" not in settings.model_dump_json()
    store = open_settings_store(settings)
    assert store.current_collection() == "faq_v1"
    assert [headers.get("api-key") for _, _, headers in fake.requests] == ["s3cret-key"]
    store.close()


def test_a_key_over_plain_http_to_another_host_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="index_builder.store.qdrant")
    # Never contacted (.invalid resolves nowhere); the client connects at its first call.
    urls = [
        "http://qdrant-a.invalid:6333",
        "http://qdrant-a.invalid:6333",
        "qdrant-b.invalid:6333",  # no scheme: qdrant-client speaks http
        "https://qdrant-c.invalid:6333",
        "http://localhost:6333",
        "http://127.0.0.1:6333",
    ]
    for url in urls:
        QdrantStore.connect(url, api_key="k", timeout_s=0.2).close()
    QdrantStore.connect("http://qdrant-d.invalid:6333", timeout_s=0.2).close()  # no key
    warned = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warned) == 2, warned
    assert "qdrant-a.invalid" in warned[0]
    assert "qdrant-b.invalid" in warned[1]
