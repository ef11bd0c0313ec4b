"""Under pressure: probes answer beside blocking work, a 500 keeps its request id and CORS,
refusals are counted, slow bodies time out, admin writes are one at a time across workers,
and the service says when it is open to anyone (issue "Holds under pressure")."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.cli import banner, open_to_others
from app.core.config import Settings
from app.services.index_guard import IndexGuard
from app.services.jobs_store import JobStore
from app.services.reindex import AdminConflictError, AdminService, ReindexRunningError
from index_builder.faq import FaqItem, read_faq
from index_builder.store import EmbeddedStore
from tests.app.conftest import SAMPLE_FAQ, build_index, fake_app, serve
from tests.fakes import FakeEncoder

DIM = 384
KEY = "s3arch"
ORIGIN = "https://shop.example"


def _app(tmp_path: Path, **overrides: object) -> FastAPI:
    return fake_app(tmp_path, **overrides)


def test_probes_answer_while_the_thread_pool_is_full(tmp_path: Path) -> None:
    """80 one-second sync requests fill FastAPI's 40-thread pool; the probes do not wait."""
    app = _app(tmp_path)

    @app.get("/slow")
    def slow() -> dict[str, bool]:
        time.sleep(1.0)
        return {"slept": True}

    with serve(app) as client, ThreadPoolExecutor(80) as pool:
        busy = [pool.submit(client.get, "/slow") for _ in range(80)]
        time.sleep(0.3)  # the pool is full now
        for path in ("/health/live", "/health/ready", "/metrics"):
            t0 = time.perf_counter()
            r = client.get(path)
            took = time.perf_counter() - t0
            assert r.status_code == 200 and took < 0.5, (path, took)
        assert all(f.result().status_code == 200 for f in busy)


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[httpx.Client]:
    app = _app(tmp_path, cors_origins=[ORIGIN], max_body_bytes=2048, body_read_timeout_s=0.5)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with serve(app) as client:
        yield client


def test_an_unexpected_error_keeps_the_request_id_cors_and_the_error_shape(
    failing: httpx.Client,
) -> None:
    r = failing.get("/boom", headers={"X-Request-ID": "req-500", "Origin": ORIGIN})
    assert r.status_code == 500
    assert r.json() == {"error": {"type": "internal_error", "message": "internal server error"}}
    assert r.headers["x-request-id"] == "req-500"
    assert r.headers["access-control-allow-origin"] == ORIGIN


def _count(text: str, status: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("faq_http_request_duration_seconds_count")
        and f'status="{status}"' in line
    )


def test_413_and_500_are_timed_and_counted(failing: httpx.Client) -> None:
    big = b'{"query": "' + b"x" * 5000 + b'"}'
    r = failing.post("/search", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["x-request-id"]
    failing.get("/boom")
    text = failing.get("/metrics").text
    assert _count(text, "413") >= 1 and _count(text, "500") >= 1


def test_a_body_that_does_not_arrive_in_time_is_408(failing: httpx.Client) -> None:
    """A slowloris client: headers, then a trickle that never completes the body."""
    host, port = str(failing.base_url.host), int(failing.base_url.port or 80)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"query": '
        )
        t0 = time.perf_counter()
        answer = sock.recv(4096)
        took = time.perf_counter() - t0
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b"request_timeout" in answer and took < 3.0


def test_ready_shows_its_details_only_to_a_key_holder(tmp_path: Path) -> None:
    with serve(_app(tmp_path, search_api_key=KEY)) as client:
        anonymous = client.get("/health/ready")
        assert anonymous.status_code == 200
        assert anonymous.json() == {"ready": True, "problem": None}
        keyed = client.get("/health/ready", headers={"X-API-Key": KEY}).json()
        assert keyed["ready"] and keyed["model"] and keyed["index"] == "faq_v1"


def test_the_banner_shows_the_key_header_and_an_open_service_is_named() -> None:
    keyed = Settings.model_validate({"search_api_key": "s3cret", "host": "0.0.0.0"})
    assert "X-API-Key: $FAQ_SEARCH_API_KEY" in banner(keyed) and "s3cret" not in banner(keyed)
    assert not open_to_others(keyed)
    open_ = Settings.model_validate({"host": "0.0.0.0"})
    assert "X-API-Key" not in banner(open_) and open_to_others(open_)
    assert not open_to_others(Settings.model_validate({"host": "127.0.0.1"}))


# --- admin writes across workers -------------------------------------------------------------


class SlowEncoder(FakeEncoder):
    def encode_passages(self, texts: Sequence[str]):  # type: ignore[no-untyped-def]
        time.sleep(0.15)
        return super().encode_passages(texts)


def _worker_admin(tmp_path: Path) -> AdminService:
    """One worker's admin service: its own objects over the shared directories."""
    encoder = SlowEncoder(dim=DIM)
    index = EmbeddedStore(tmp_path / "index")
    guard = IndexGuard(index, encoder.fingerprint, 5.0)
    return AdminService(
        encoder, guard, JobStore(tmp_path / "jobs"), batch_size=4, lock_timeout_s=0.2
    )


def _items() -> list[FaqItem]:
    return [i.model_copy(update={"answer": "new " + i.answer}) for i in read_faq(SAMPLE_FAQ)[:16]]


def test_a_reindex_waits_for_a_lock_that_no_job_holds(tmp_path: Path) -> None:
    """An edit of another worker, or a job that has recorded its end and is letting go of the
    lock: a reindex submitted meanwhile waits for it (up to lock_timeout_s), as an edit does,
    instead of a 409 to a client that saw the job end and submitted again at once."""
    build_index(tmp_path / "index", FakeEncoder(dim=DIM))
    first, second = _worker_admin(tmp_path), _worker_admin(tmp_path)
    assert first._write_lock.acquire(0.0)
    releaser = threading.Timer(0.1, first._write_lock.release)
    releaser.start()
    job = second.submit(_items()[:4], source="inline")
    assert job.state in ("queued", "running")
    releaser.join()
    second.shutdown()


def test_a_second_workers_reindex_edit_or_recovery_meets_the_running_job(tmp_path: Path) -> None:
    build_index(tmp_path / "index", FakeEncoder(dim=DIM))
    first, second = _worker_admin(tmp_path), _worker_admin(tmp_path)
    job = first.submit(_items(), source="inline")
    with pytest.raises(ReindexRunningError) as refused:
        second.submit(_items(), source="inline")
    assert refused.value.job_id == job.id
    with pytest.raises(AdminConflictError):
        second.rollback()
    # A worker (re)starting meanwhile leaves the live job alone.
    second.recover()
    assert (second.job(job.id) or job).state in ("queued", "running")
    deadline = time.monotonic() + 30
    while (first.job(job.id) or job).state not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (first.job(job.id) or job).state == "succeeded"
    # Once it is done, the other worker may write.
    again = second.submit(_items()[:4], source="inline")
    assert again.id != job.id
    second.shutdown()
