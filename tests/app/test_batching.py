"""The inference worker: how batches form, what is dropped, what the API answers under overload,
and that nothing but the worker ever runs the model.

The batcher's mechanics are tested with the fake encoder (the model is beside the point), made
to block on an event so that the queue's state at each step is known, not raced against a
clock. The last tests serve the real model and check batching changes no answer.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from app.metrics import Metrics
from app.services.batcher import (
    BatcherClosedError,
    BatcherConfig,
    DeadlineExceededError,
    EncodedQuery,
    InferenceWorker,
    QueueFullError,
    build_query_encoding,
    length_bucket,
    padded_tokens,
)
from index_builder.model.encoder import EncodeResult, Tokenized
from tests.app.conftest import build_index, serve, settings_for
from tests.fakes import FakeEncoder


class GatedEncoder(FakeEncoder):
    """The fake encoder, recording every batch it runs; while `gate` is closed it blocks."""

    def __init__(self) -> None:
        super().__init__(dim=384)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult:
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        self.batches.append([" ".join(getattr(e, "words", [])) for e in encodings])
        return super().encode_tokenized(encodings)


def words(n: int, tag: str) -> str:
    """A query of exactly n fake tokens, recognisable by its first word."""
    return " ".join([tag] + ["w"] * (n - 1))


@pytest.fixture
def encoder() -> GatedEncoder:
    return GatedEncoder()


@contextmanager
def running(encoder: GatedEncoder, **config: Any) -> Iterator[InferenceWorker]:
    values: dict[str, Any] = {"max_wait_s": 0.02, "deadline_s": 10.0, **config}
    batcher = InferenceWorker(encoder, BatcherConfig(**values), Metrics())
    batcher.start()
    try:
        yield batcher
    finally:
        encoder.gate.set()
        batcher.stop()


def block_worker(encoder: GatedEncoder, batcher: InferenceWorker) -> Future[EncodedQuery]:
    """Occupy the worker with one query, so that what is submitted next waits in the queue."""
    encoder.gate.clear()
    (blocker,) = batcher.submit(encoder.tokenize(["blocker"], "query"))
    assert encoder.entered.wait(5)
    return blocker


def submit_texts(batcher: InferenceWorker, encoder: GatedEncoder, texts: list[str]) -> list[Any]:
    return batcher.submit(encoder.tokenize(texts, "query"))


def first_words(batches: list[list[str]]) -> list[list[str]]:
    return [[text.split()[0] for text in batch] for batch in batches]


# --- how batches form ---------------------------------------------------------------------


def test_batches_respect_the_max_batch_size(encoder: GatedEncoder) -> None:
    with running(encoder, max_batch_size=4) as batcher:
        block_worker(encoder, batcher)
        futures = submit_texts(batcher, encoder, [words(3, f"q{i}") for i in range(10)])
        assert batcher.queue_depth == 10
        encoder.gate.set()
        results = [f.result(5) for f in futures]
    assert [len(b) for b in encoder.batches] == [1, 4, 4, 2]
    # FIFO within a bucket, and each caller gets its own vector back.
    assert first_words(encoder.batches[1:]) == [
        ["q0", "q1", "q2", "q3"],
        ["q4", "q5", "q6", "q7"],
        ["q8", "q9"],
    ]
    expected = encoder.encode([words(3, f"q{i}") for i in range(10)], "query").vectors
    np.testing.assert_array_equal(np.stack([r.vector for r in results]), expected)


def test_token_budget_counts_padding(encoder: GatedEncoder) -> None:
    # Budget 20: [3, 3] costs 6 and adding the 10-token query would cost 3 x 10 = 30, although
    # the tokens themselves (16) would fit. [10, 3] costs exactly 20.
    lengths = [3, 3, 10, 3, 3]
    assert len({length_bucket(n) for n in lengths}) == 1  # one bucket: only the budget splits
    with running(encoder, max_batch_tokens=20) as batcher:
        block_worker(encoder, batcher)
        futures = submit_texts(batcher, encoder, [words(n, f"q{i}") for i, n in enumerate(lengths)])
        encoder.gate.set()
        for f in futures:
            f.result(5)
    assert first_words(encoder.batches[1:]) == [["q0", "q1"], ["q2", "q3"], ["q4"]]
    assert padded_tokens([3, 3]) == 6 and padded_tokens([10, 3]) == 20


def test_a_query_longer_than_the_budget_still_runs_alone(encoder: GatedEncoder) -> None:
    with running(encoder, max_batch_tokens=8) as batcher:
        result = asyncio.run(batcher.encode_async([words(50, "long"), words(2, "short")]))
    assert result.n_tokens == [50, 2]
    assert sorted(len(b) for b in encoder.batches) == [1, 1]


def test_short_queries_are_not_padded_to_long_ones(encoder: GatedEncoder) -> None:
    texts = [words(40, "l0"), words(3, "s0"), words(40, "l1"), words(4, "s1"), words(3, "s2")]
    with running(encoder, max_batch_size=32, max_batch_tokens=100_000) as batcher:
        block_worker(encoder, batcher)
        futures = submit_texts(batcher, encoder, texts)
        encoder.gate.set()
        for f in futures:
            f.result(5)
    # The oldest query's class goes first; nothing mixes 3-token and 40-token queries.
    assert first_words(encoder.batches[1:]) == [["l0", "l1"], ["s0", "s1", "s2"]]


def test_a_lone_query_waits_at_most_max_wait(encoder: GatedEncoder) -> None:
    with running(encoder, max_wait_s=0.05, max_batch_size=8) as batcher:
        start = time.monotonic()
        asyncio.run(batcher.encode_async(["alone"]))
        elapsed = time.monotonic() - start
    assert encoder.batches == [["alone"]]
    assert 0.04 <= elapsed < 2.0


# --- what is dropped and refused -----------------------------------------------------------


def test_cancelled_queries_are_dropped_not_encoded(encoder: GatedEncoder) -> None:
    with running(encoder) as batcher:
        block_worker(encoder, batcher)
        keep1, gone, keep2 = submit_texts(batcher, encoder, ["keep one", "gone", "keep two"])
        assert gone.cancel()
        encoder.gate.set()
        assert keep1.result(5).n_tokens == 2 and keep2.result(5).n_tokens == 2
    encoded = [text for batch in encoder.batches for text in batch]
    assert "gone" not in encoded and {"keep one", "keep two"} <= set(encoded)


def test_a_full_queue_refuses_whole_requests(encoder: GatedEncoder) -> None:
    with running(encoder, max_queue_size=3) as batcher:
        block_worker(encoder, batcher)  # running: no longer in the queue
        submit_texts(batcher, encoder, ["a", "b"])
        with pytest.raises(QueueFullError, match="full"):
            submit_texts(batcher, encoder, ["c", "d"])  # all or none: 2 do not fit in 1 slot
        assert batcher.queue_depth == 2
        submit_texts(batcher, encoder, ["c"])
        assert batcher.queue_depth == 3


def test_stop_encodes_what_is_queued_then_refuses(encoder: GatedEncoder) -> None:
    batcher = InferenceWorker(encoder, BatcherConfig(max_wait_s=5.0), Metrics())
    batcher.start()
    (future,) = submit_texts(batcher, encoder, ["queued at shutdown"])
    batcher.stop()  # does not wait out max_wait: closing makes every batch ready
    assert future.result(0).n_tokens == 3
    with pytest.raises(BatcherClosedError):
        submit_texts(batcher, encoder, ["after stop"])


def test_the_worker_is_the_only_path_and_does_not_wait_by_default() -> None:
    worker = build_query_encoding(FakeEncoder(), Settings())
    assert isinstance(worker, InferenceWorker)
    assert worker.config.max_wait_s == 0.0  # continuous batching: a lone query runs at once
    tuned = build_query_encoding(FakeEncoder(), Settings(batch_max_wait_ms=5, batch_queue_size=7))
    assert tuned.config.max_wait_s == 0.005 and tuned.config.max_queue_size == 7


def test_a_lone_query_does_not_wait_for_company(encoder: GatedEncoder) -> None:
    # With max_wait 0 the worker takes the query as soon as it is queued: a clock that never
    # moves would leave a waiting worker asleep forever, so finishing proves it did not wait.
    frozen = 1000.0
    batcher = InferenceWorker(
        encoder, BatcherConfig(max_wait_s=0.0, deadline_s=10.0), Metrics(), clock=lambda: frozen
    )
    batcher.start()
    try:
        (future,) = batcher.submit(encoder.tokenize(["alone"], "query"))
        assert future.result(5).n_tokens == 1
    finally:
        batcher.stop()


# --- over HTTP, fake encoder ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: the servers below only read it, one at a time (local mode's file lock)."""
    qdrant = tmp_path_factory.mktemp("batching") / "qdrant"
    build_index(qdrant, FakeEncoder(dim=384))
    return qdrant


def fake_app(qdrant: Path, encoder: FakeEncoder, **overrides: object) -> FastAPI:
    settings = settings_for(qdrant.parent / "unused-model", qdrant, **overrides)
    return create_app(settings, encoder_factory=lambda s: encoder)


def assert_error(r: httpx.Response, status: int, type_: str, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_
    assert needle in body["error"]["message"], body["error"]["message"]


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_queue_full_is_429_with_retry_after(fake_index: Path, encoder: GatedEncoder) -> None:
    app = fake_app(
        fake_index,
        encoder,
        batch_queue_size=1,
        batch_max_size=1,
        batch_deadline_s=20,
    )
    with serve(app) as api, ThreadPoolExecutor(2) as pool:
        encoder.gate.clear()
        first = pool.submit(api.post, "/search", json={"query": "where is my order"})
        assert encoder.entered.wait(10)  # the worker is busy with the first request
        second = pool.submit(api.post, "/search", json={"query": "refund"})
        wait_for(lambda: app.state.queries.queue_depth == 1)  # the second fills the queue
        r = api.post("/search", json={"query": "cancel my order"})
        assert_error(r, 429, "too_many_requests", "queue is full")
        assert int(r.headers["retry-after"]) >= 1
        r = api.post("/search/batch", json={"queries": [{"query": "x"}]})
        assert r.status_code == 429
        encoder.gate.set()
        assert first.result(10).status_code == 200
        assert second.result(10).status_code == 200
        assert metric(api, 'faq_rejected_requests_total{reason="queue_full"}') == 2
        assert api.get("/health/live").status_code == 200


def test_past_deadline_is_503(fake_index: Path, encoder: GatedEncoder) -> None:
    app = fake_app(fake_index, encoder, batch_deadline_s=0.3)
    with serve(app) as api, ThreadPoolExecutor(1) as pool:
        encoder.gate.clear()
        first = pool.submit(api.post, "/search", json={"query": "where is my order"})
        assert encoder.entered.wait(10)
        r = api.post("/search", json={"query": "refund"})
        assert_error(r, 503, "service_unavailable", "FAQ_BATCH_DEADLINE_S")
        assert "retry-after" in r.headers
        encoder.gate.set()
        # The first request was already running when its own deadline passed: it is answered.
        assert first.result(10).status_code == 200
        assert metric(api, 'faq_rejected_requests_total{reason="deadline"}') == 1
    assert all("refund" not in batch for batch in encoder.batches)


QUERIES = [
    {"query": "where is my order", "top_k": 3},
    {"query": "refund", "top_k": 1, "filters": {"lang": "es"}},
    {"query": "can I cancel mi pedido", "top_k": 5},
]


@pytest.fixture
def batch_api(fake_index: Path) -> Iterator[httpx.Client]:
    app = fake_app(fake_index, FakeEncoder(dim=384), search_batch_max_queries=4)
    with serve(app) as api:
        yield api


def test_batch_search_answers_each_query_in_order(batch_api: httpx.Client) -> None:
    r = batch_api.post("/search/batch", json={"queries": QUERIES})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["results"]) == len(QUERIES)
    for item, query in zip(body["results"], QUERIES, strict=True):
        single = batch_api.post("/search", json=query).json()
        assert [h["id"] for h in item["results"]] == [h["id"] for h in single["results"]]
        assert [h["score"] for h in item["results"]] == pytest.approx(
            [h["score"] for h in single["results"]], abs=1e-6
        )
        assert item["truncated"] is False
    assert [len(i["results"]) for i in body["results"]] == [3, 1, 5]
    assert {h["lang"] for h in body["results"][1]["results"]} == {"es"}
    assert body["model"].startswith("fake:") and body["index"].startswith("faq_v")


def test_batch_search_limits(batch_api: httpx.Client) -> None:
    five = {"queries": [{"query": f"order {i}"} for i in range(5)]}
    assert_error(batch_api.post("/search/batch", json=five), 422, "validation_error", "at most 4")
    empty = batch_api.post("/search/batch", json={"queries": []})
    assert_error(empty, 422, "validation_error", "queries")
    blank = batch_api.post("/search/batch", json={"queries": [{"query": "ok"}, {"query": " "}]})
    assert_error(blank, 422, "validation_error", "queries.1.query")
    long = "where is my order " * 100  # 400 words > the fake encoder's 128 tokens
    r = batch_api.post("/search/batch", json={"queries": [{"query": "ok"}, {"query": long}]})
    assert [i["truncated"] for i in r.json()["results"]] == [False, True]


def test_metrics_expose_the_batching_histograms(fake_index: Path) -> None:
    app = fake_app(fake_index, FakeEncoder(dim=384))
    with serve(app) as api:
        assert api.post("/search/batch", json={"queries": QUERIES}).status_code == 200
        assert api.post("/search", json=QUERIES[0]).status_code == 200
        assert metric(api, "faq_tokenize_duration_seconds_count") == 2
        assert metric(api, "faq_queue_wait_duration_seconds_count") == 4
        assert metric(api, "faq_inference_duration_seconds_count") >= 2
        assert metric(api, "faq_batch_size_sum") == 4
        assert metric(api, "faq_batch_tokens_count") >= 2
        assert metric(api, 'faq_batch_size_bucket{le="+Inf"}') >= 2
        assert metric(api, "faq_queue_depth") == 0
        assert metric(api, 'faq_rejected_requests_total{reason="queue_full"}') == 0
        assert metric(api, "faq_encode_duration_seconds_count") == 2  # existing metrics stay


# --- real model -----------------------------------------------------------------------------

REAL_QUERIES = [
    "can I cancel mi pedido",
    "barang saya belum sampai, where is my order",
    "wie lange dauert der refund",
    "lupa password akun saya",
]


def test_batching_changes_no_answer_on_the_real_model(
    api: httpx.Client, real_onnx_dir: Path, real_index_path: Path, tmp_path: Path
) -> None:
    # `api` serves with batching off (auto on a CPU); local Qdrant allows one client per
    # directory, so the batching server reads a copy of the same index.
    copy = tmp_path / "qdrant"
    shutil.copytree(real_index_path, copy, ignore=shutil.ignore_patterns(".lock"))
    settings = settings_for(real_onnx_dir, copy, batch_max_wait_ms=20)
    queries = [{"query": q, "top_k": 3} for q in REAL_QUERIES]
    with serve(create_app(settings)) as batched, ThreadPoolExecutor(4) as pool:
        # Concurrent single searches, so the batcher really forms multi-query batches.
        on = list(pool.map(lambda q: batched.post("/search", json=q).json(), queries))
        on_batch = batched.post("/search/batch", json={"queries": queries}).json()
        assert metric(batched, "faq_batch_size_sum") == 2 * len(queries)
    for i, q in enumerate(queries):
        off = api.post("/search", json=q).json()
        ids_off = [h["id"] for h in off["results"]]
        assert [h["id"] for h in on[i]["results"]] == ids_off, q
        assert [h["id"] for h in on_batch["results"][i]["results"]] == ids_off, q
        scores_off = [h["score"] for h in off["results"]]
        # Padding a row differently changes float sums in the last bits only.
        assert [h["score"] for h in on[i]["results"]] == pytest.approx(scores_off, abs=1e-4)


# --- the event-loop path (/search with an in-process index) ---------------------------------


def test_encode_async_gives_the_vectors_the_encoder_gives(encoder: GatedEncoder) -> None:
    encoder.gate.set()
    plain = FakeEncoder(dim=encoder.dim).encode(["cancel my order", "where is it"], "query")
    with running(encoder, max_wait_s=0.0) as batcher:
        awaited = asyncio.run(batcher.encode_async(["cancel my order", "where is it"]))
    assert np.array_equal(awaited.vectors, plain.vectors)
    assert awaited.n_tokens == plain.n_tokens == [3, 3]


def test_encode_async_past_its_deadline_fails_and_is_never_encoded(
    encoder: GatedEncoder,
) -> None:
    with running(encoder, deadline_s=0.2) as batcher:
        block_worker(encoder, batcher)
        start = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"0\.2 s"):
            asyncio.run(batcher.encode_async(["too late"]))
        assert 0.15 <= time.monotonic() - start < 5
        encoder.gate.set()
        asyncio.run(batcher.encode_async(["after"]))
    encoded = [text for batch in encoder.batches for text in batch]
    assert "too late" not in encoded and "after" in encoded
