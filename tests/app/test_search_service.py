"""The serving core under concurrency: one owner of the model, searches batched across requests,
and every answer the same as the single search would give. Real embedded Qdrant, fake encoder."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from app.metrics import Metrics, MetricsMiddleware
from app.services.answering import QuerySpec
from app.services.search import SearchCombiner
from index_builder.model.encoder import EncodeResult, Tokenized
from tests.app.test_admin import AUTH, admin_app
from tests.fakes import FakeEncoder


class OverlapRecorder(FakeEncoder):
    """The fake encoder, recording how many model runs are in progress at once.

    Every model call (queries, passages, the gate) ends in `encode_tokenized`; each run lasts a
    few milliseconds so that two callers running it at once would overlap.
    """

    def __init__(self) -> None:
        super().__init__(dim=384)
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.batch_sizes: list[int] = []

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.batch_sizes.append(len(encodings))
        try:
            time.sleep(0.003)
            return super().encode_tokenized(encodings)
        finally:
            with self._lock:
                self.active -= 1


def test_concurrent_requests_never_run_the_model_concurrently(tmp_path: Path) -> None:
    encoder = OverlapRecorder()
    queries = [
        {"query": f"where is my order {i}", "top_k": 1 + i % 5, "filters": {"lang": "es"}}
        if i % 3 == 0
        else {"query": f"refund for order {i}", "top_k": 1 + i % 5}
        for i in range(48)
    ]
    with admin_app(tmp_path, encoder, index_encoder=FakeEncoder(dim=384)) as client:

        def search(q: dict[str, Any]) -> int:
            return client.post("/search", json=q).status_code

        def batch(i: int) -> int:
            body = {"queries": queries[i : i + 3]}
            return client.post("/search/batch", json=body).status_code

        def edit(i: int) -> int:
            body = {"question": f"new question {i}", "answer": "a", "lang": "en"}
            return client.put(f"/admin/faq/new-{i}", json=body, headers=AUTH).status_code

        # Searches, batch searches and admin edits (which encode passages) interleaved.
        tasks: list[tuple[Any, Any, int]] = []
        for i, q in enumerate(queries):
            tasks.append((search, q, 200))
            if i % 3 == 0:
                tasks.append((batch, i, 200))
            if i % 4 == 0:
                tasks.append((edit, i, 201))
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(f, arg) for f, arg, _ in tasks]
            assert [f.result() for f in futures] == [status for _, _, status in tasks]
    assert encoder.max_active == 1, "the model ran concurrently"
    # The requests were concurrent: some model runs took several queries at once.
    assert max(encoder.batch_sizes) > 1


def test_concurrent_searches_answer_like_single_ones(tmp_path: Path) -> None:
    queries = [
        {"query": q, "top_k": k, "filters": f}
        for q in ("where is my order", "refund", "cancel mi pedido", "password lupa")
        for k in (1, 3, 5)
        for f in ({}, {"lang": "es"}, {"lang": "en", "market": "global"})
    ]
    with admin_app(tmp_path, OverlapRecorder(), index_encoder=FakeEncoder(dim=384)) as client:
        alone = [client.post("/search", json=q).json() for q in queries]
        with ThreadPoolExecutor(12) as pool:
            together = list(pool.map(lambda q: client.post("/search", json=q).json(), queries))
        metrics = client.get("/metrics").text
    for q, a, t in zip(queries, alone, together, strict=True):
        assert [h["id"] for h in t["results"]] == [h["id"] for h in a["results"]], q
        assert [h["score"] for h in t["results"]] == pytest.approx(
            [h["score"] for h in a["results"]], abs=1e-6
        )
        assert len(t["results"]) <= q["top_k"]
    assert "faq_search_batch_size_count" in metrics


# --- the search combiner ----------------------------------------------------------------------


def _combiner(
    calls: list[list[str]], gate: asyncio.Event | None = None, *, max_batch: int, concurrency: int
) -> SearchCombiner:
    async def answer(specs: Sequence[Any], vectors: NDArray[np.float32]) -> list[Any]:
        texts = [s.text for s in specs]
        calls.append(texts)
        if gate is not None and len(calls) <= concurrency:
            await gate.wait()
        if "boom" in texts:
            raise ConnectionError("down")
        return [f"{t}:{v[0]:g}" for t, v in zip(texts, vectors, strict=True)]

    return SearchCombiner(answer, max_batch, concurrency)


async def _ask(combiner: SearchCombiner, texts: list[str], value: float) -> list[Any]:
    specs = [QuerySpec(t, 3) for t in texts]
    return await combiner.answer(specs, np.full((len(texts), 2), value, np.float32))


def test_the_combiner_answers_a_turn_of_the_loop_in_one_call() -> None:
    # Coroutines whose vectors are ready in the same turn of the event loop (one model batch)
    # share one answer call, each getting its own results back in order; a failing call fails
    # its batch only, and the combiner carries on.
    calls: list[list[str]] = []
    combiner = _combiner(calls, max_batch=4, concurrency=2)

    async def main() -> list[Any]:
        return await asyncio.gather(
            _ask(combiner, ["a"], 1), _ask(combiner, ["b", "c"], 2), _ask(combiner, ["d", "e"], 3)
        )

    results = asyncio.run(main())
    # At most 4 queries a call; a request's queries stay together.
    assert calls == [["a", "b", "c"], ["d", "e"]]
    assert results == [["a:1"], ["b:2", "c:2"], ["d:3", "e:3"]]

    async def failing() -> list[Any]:
        return await asyncio.gather(
            _ask(combiner, ["boom"], 1), _ask(combiner, ["x"], 5), return_exceptions=True
        )

    first, second = asyncio.run(failing())
    assert isinstance(first, ConnectionError) and isinstance(second, ConnectionError)
    assert asyncio.run(_ask(combiner, ["after"], 7)) == ["after:7"]


def test_the_combiner_runs_up_to_its_concurrency_and_arrivals_form_the_next_batch() -> None:
    # A batch that arrives while one runs starts at once (concurrency 2); once both run, the
    # arrivals wait, and form the next batch together when one finishes.
    calls: list[list[str]] = []

    async def main() -> tuple[Any, ...]:
        gate = asyncio.Event()
        combiner = _combiner(calls, gate, max_batch=4, concurrency=2)
        first = asyncio.ensure_future(_ask(combiner, ["a"], 1))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(_ask(combiner, ["b"], 2))
        await asyncio.sleep(0.01)
        later = asyncio.gather(_ask(combiner, ["c"], 3), _ask(combiner, ["d", "e"], 4))
        await asyncio.sleep(0.05)
        assert calls == [["a"], ["b"]]  # both running: the arrivals wait
        gate.set()
        return await first, await second, await later

    first, second, later = asyncio.run(main())
    assert calls == [["a"], ["b"], ["c", "d", "e"]]
    assert (first, second, later) == (["a:1"], ["b:2"], [["c:3"], ["d:4", "e:4"]])
    with pytest.raises(ValueError, match="concurrency"):
        _combiner(calls, max_batch=4, concurrency=0)


# --- the access log ----------------------------------------------------------------------------


def _call(middleware: MetricsMiddleware, status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    middleware.app = app
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    asyncio.run(middleware(scope, receive, send))


def test_the_access_log_sample_keeps_every_error(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    quiet = MetricsMiddleware(lambda *a: None, metrics, sample=0.0)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.INFO, logger="app.access"):
        for _ in range(5):
            _call(quiet, 200)
        _call(quiet, 404)
        _call(quiet, 503)
        loud = MetricsMiddleware(quiet.app, metrics, sample=1.0)
        _call(loud, 200)
    assert [r.status for r in caplog.records] == [404, 503, 200]  # type: ignore[attr-defined]
    # Every request is timed, logged or not.
    samples = {
        (s.labels.get("status"), s.name): s.value
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "faq_http_request_duration_seconds_count"
    }
    assert samples[("200", "faq_http_request_duration_seconds_count")] == 6


def test_the_request_path_has_no_base_http_middleware(tmp_path: Path) -> None:
    """BaseHTTPMiddleware adds a task and a body stream per request; every layer is plain ASGI."""
    from starlette.middleware.base import BaseHTTPMiddleware

    from app.main import create_app
    from tests.app.conftest import settings_for

    app = create_app(settings_for(tmp_path / "m", tmp_path / "q"), lambda _: FakeEncoder())
    classes = [m.cls for m in app.user_middleware]
    assert MetricsMiddleware in classes
    assert not [c for c in classes if isinstance(c, type) and issubclass(c, BaseHTTPMiddleware)]
