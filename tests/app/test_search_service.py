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
from app.services.search import LoopCombiner, QuerySpec, SearchCombiner
from index_builder.encoder import EncodeResult, FakeEncoder, Tokenized
from index_builder.store import Hit, SearchSpec
from tests.app.test_admin import AUTH, admin_app


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


def _echo(spec: SearchSpec, vector: NDArray[np.float32]) -> list[Hit]:
    top_k, lang, market, *_ = spec
    return [Hit(f"{vector[0]:.0f}", "", "", lang or "", market, [], float(top_k))]


def test_the_combiner_searches_what_queued_meanwhile_in_one_call() -> None:
    gate = threading.Event()
    entered = threading.Event()
    calls: list[int] = []

    def search(vectors: NDArray[np.float32], specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        calls.append(len(specs))
        entered.set()
        assert gate.wait(10)
        return [_echo(s, v) for v, s in zip(vectors, specs, strict=True)]

    combiner = SearchCombiner(search, max_batch=64)

    def ask(i: int) -> list[list[Hit]]:
        vectors = np.full((2, 4), float(i), dtype=np.float32)
        return combiner.search(vectors, [(i, "es", None), (i + 100, None, "mx")])

    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(ask, 0)
        assert entered.wait(5)  # the first caller is searching; the others queue behind it
        rest = [pool.submit(ask, i) for i in range(1, 6)]
        deadline = time.monotonic() + 5
        while len(combiner._queue) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        gate.set()
        results = [first.result(5)] + [f.result(5) for f in rest]
    assert calls == [2, 10]  # the five queued requests: one call
    for i, hits in enumerate(results):
        assert [h[0].id for h in hits] == [str(i), str(i)]
        assert [h[0].score for h in hits] == [i, i + 100]
        assert [(h[0].lang, h[0].market) for h in hits] == [("es", None), ("", "mx")]


def test_a_failed_search_fails_its_batch_and_the_combiner_carries_on() -> None:
    def search(vectors: NDArray[np.float32], specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        if specs[0][0] == 13:
            raise ConnectionError("down")
        return [_echo(s, v) for v, s in zip(vectors, specs, strict=True)]

    combiner = SearchCombiner(search)
    with pytest.raises(ConnectionError):
        combiner.search(np.zeros((1, 2), np.float32), [(13, None, None)])
    assert combiner.search(np.zeros((1, 2), np.float32), [(2, None, None)])[0][0].score == 2


def test_the_loop_combiner_answers_a_turn_of_the_loop_in_one_call() -> None:
    # Coroutines whose vectors are ready in the same turn of the event loop (one model batch)
    # share one answer call, each getting its own results back in order; a failing call fails
    # its batch only.
    calls: list[list[str]] = []

    def answer(specs: Sequence[Any], vectors: NDArray[np.float32]) -> list[Any]:
        texts = [s.text for s in specs]
        calls.append(texts)
        if "boom" in texts:
            raise ConnectionError("down")
        return [f"{t}:{v[0]:g}" for t, v in zip(texts, vectors, strict=True)]

    combiner = LoopCombiner(answer, max_batch=4)

    async def ask(texts: list[str], value: float) -> list[Any]:
        specs = [QuerySpec(t, 3) for t in texts]
        return await combiner.answer(specs, np.full((len(texts), 2), value, np.float32))

    async def main() -> list[Any]:
        return await asyncio.gather(
            ask(["a"], 1), ask(["b", "c"], 2), ask(["d", "e"], 3), return_exceptions=True
        )

    results = asyncio.run(main())
    # At most 4 queries a call; a request's queries stay together.
    assert calls == [["a", "b", "c"], ["d", "e"]]
    assert results == [["a:1"], ["b:2", "c:2"], ["d:3", "e:3"]]

    async def failing() -> list[Any]:
        return await asyncio.gather(ask(["boom"], 1), ask(["x"], 5), return_exceptions=True)

    calls.clear()
    first, second = asyncio.run(failing())
    assert isinstance(first, ConnectionError) and isinstance(second, ConnectionError)
    assert asyncio.run(ask(["after"], 7)) == ["after:7"]


def test_a_large_index_s_searches_run_off_the_loop_and_arrivals_form_the_next_batch() -> None:
    # With offload (a large index), the calls run in one thread of their own: the loop stays
    # free while a batch runs, the requests arriving meanwhile wait and then share one call.
    threads: set[str] = set()
    calls: list[list[str]] = []
    started, release = threading.Event(), threading.Event()

    def answer(specs: Sequence[Any], vectors: NDArray[np.float32]) -> list[Any]:
        texts = [s.text for s in specs]
        threads.add(threading.current_thread().name)
        calls.append(texts)
        if len(calls) == 1:
            started.set()
            release.wait(10)
        if "boom" in texts:
            raise ConnectionError("down")
        return [f"{t}:{v[0]:g}" for t, v in zip(texts, vectors, strict=True)]

    combiner = LoopCombiner(answer, max_batch=4, offload=lambda: True)

    async def ask(texts: list[str], value: float) -> list[Any]:
        specs = [QuerySpec(t, 3) for t in texts]
        return await combiner.answer(specs, np.full((len(texts), 2), value, np.float32))

    async def main() -> tuple[Any, ...]:
        first = asyncio.ensure_future(ask(["a"], 1))
        for _ in range(1000):  # the loop keeps running while the thread holds the batch
            if started.is_set():
                break
            await asyncio.sleep(0.005)
        assert started.is_set()
        later = asyncio.gather(ask(["b"], 2), ask(["c", "d"], 3))
        await asyncio.sleep(0.05)
        assert calls == [["a"]]  # the arrivals wait for the running batch
        release.set()
        return await first, await later

    first, later = asyncio.run(main())
    assert calls == [["a"], ["b", "c", "d"]]
    assert first == ["a:1"] and later == [["b:2"], ["c:3", "d:3"]]
    assert len(threads) == 1 and next(iter(threads)).startswith("faq-search")

    async def failing() -> list[Any]:
        return await asyncio.gather(ask(["boom"], 1), ask(["x"], 5), return_exceptions=True)

    first_error, second_error = asyncio.run(failing())
    assert isinstance(first_error, ConnectionError) and isinstance(second_error, ConnectionError)
    assert asyncio.run(ask(["after"], 7)) == ["after:7"]
    combiner.close()


def test_a_large_index_runs_up_to_its_search_threads_batches_at_once() -> None:
    # With two search threads, a batch that arrives while one runs starts at once in the
    # other thread; once both run, arrivals wait and form the next batch together.
    calls: list[list[str]] = []
    threads: set[str] = set()
    running = threading.Semaphore(0)
    release = threading.Event()

    def answer(specs: Sequence[Any], vectors: NDArray[np.float32]) -> list[Any]:
        texts = [s.text for s in specs]
        threads.add(threading.current_thread().name)
        calls.append(texts)
        if len(calls) <= 2:
            running.release()
            release.wait(10)
        return [f"{t}:{v[0]:g}" for t, v in zip(texts, vectors, strict=True)]

    combiner = LoopCombiner(answer, max_batch=4, offload=lambda: True, threads=2)

    async def ask(texts: list[str], value: float) -> list[Any]:
        specs = [QuerySpec(t, 3) for t in texts]
        return await combiner.answer(specs, np.full((len(texts), 2), value, np.float32))

    async def until_running() -> None:
        for _ in range(1000):  # the loop keeps running while the threads hold their batches
            if running.acquire(blocking=False):
                return
            await asyncio.sleep(0.005)
        raise AssertionError("a batch did not start")

    async def main() -> tuple[Any, ...]:
        first = asyncio.ensure_future(ask(["a"], 1))
        await until_running()
        second = asyncio.ensure_future(ask(["b"], 2))
        await until_running()  # started while the first still runs
        later = asyncio.gather(ask(["c"], 3), ask(["d", "e"], 4))
        await asyncio.sleep(0.05)
        assert calls == [["a"], ["b"]]  # both threads busy: the arrivals wait
        release.set()
        return await first, await second, await later

    first, second, later = asyncio.run(main())
    assert calls == [["a"], ["b"], ["c", "d", "e"]]
    assert (first, second, later) == (["a:1"], ["b:2"], [["c:3"], ["d:4", "e:4"]])
    assert len(threads) == 2 and all(t.startswith("faq-search") for t in threads)
    combiner.close()
    with pytest.raises(ValueError, match="threads"):
        LoopCombiner(answer, threads=0)


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
