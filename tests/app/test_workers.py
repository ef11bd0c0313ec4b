"""Several workers: TCP_NODELAY on the shared socket, and one embedded directory served by many
processes through locked in-memory replicas that follow a rebuild."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from index_builder.local_lock import (
    LocalLockTimeoutError,
    directory_lock,
    local_writer,
    read_generation,
)

from app.main import create_app
from app.server import bind_socket
from index_builder.faq import read_faq
from index_builder.store import FaqIndex, open_client
from tests.app.conftest import REPO, SAMPLE_FAQ, _free_port, serve, settings_for
from tests.fakes import FakeEncoder

INTERVAL_S = 0.3
QUERY = {"query": "where is my order", "top_k": 3}


@pytest.fixture
def small_faq(tmp_path: Path) -> Path:
    """The first ten entries of the sample FAQ: a rebuild that is easy to tell apart."""
    path = tmp_path / "small.jsonl"
    path.write_text("".join(SAMPLE_FAQ.read_text().splitlines(keepends=True)[:10]))
    return path


def _build(path: Path, faq: Path) -> None:
    with local_writer(path, timeout=30) as client:
        FaqIndex(client).build(read_faq(faq), FakeEncoder(dim=384), progress=False)


def _wait_for(api: httpx.Client, collection: str, timeout_s: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.post("/search", json=QUERY)
        if (r.status_code == 200 and r.json()["index"] == collection) or (
            time.monotonic() > deadline
        ):
            return r
        time.sleep(0.05)


def test_accepted_connections_have_tcp_nodelay() -> None:
    """Without it, keep-alive responses wait ~40 ms for the client's delayed ACK."""
    listener = bind_socket("127.0.0.1", 0)
    listener.listen()
    with listener, socket.create_connection(listener.getsockname()[:2]):
        conn, _ = listener.accept()
        with conn:
            assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            # asyncio sets TCP_NODELAY itself only on sockets whose protocol is IPPROTO_TCP.
            assert conn.proto == socket.IPPROTO_TCP


def test_writer_lock_excludes_and_times_out(tmp_path: Path) -> None:
    with (
        directory_lock(tmp_path),
        pytest.raises(LocalLockTimeoutError, match="stayed locked"),
        local_writer(tmp_path, timeout=0.2),
    ):
        pass
    before = read_generation(tmp_path)
    with local_writer(tmp_path, timeout=1):
        pass
    assert read_generation(tmp_path) != before


def test_two_replica_apps_share_one_directory_and_follow_a_rebuild(
    tmp_path: Path, small_faq: Path
) -> None:
    qdrant = tmp_path / "qdrant"
    _build(qdrant, SAMPLE_FAQ)
    settings = settings_for(
        tmp_path / "no-model", qdrant, workers=2, index_check_interval_s=INTERVAL_S
    )
    encoder = FakeEncoder(dim=384)
    with (
        serve(create_app(settings, encoder_factory=lambda _: encoder)) as one,
        serve(create_app(settings, encoder_factory=lambda _: encoder)) as two,
    ):
        for api in (one, two):
            ready = api.get("/health/ready").json()
            assert ready["index"] == "faq_v1" and ready["index_points"] == 141
            r = api.post("/search", json=QUERY)
            assert r.status_code == 200 and r.json()["index"] == "faq_v1"
            assert len(r.json()["results"]) == 3

        # Neither holds the directory: a build gets it while both serve.
        _build(qdrant, small_faq)
        for api in (one, two):
            r = _wait_for(api, "faq_v2")
            assert r.status_code == 200 and r.json()["index"] == "faq_v2", r.text
            assert api.get("/health/ready").json()["index_points"] == 10


def test_a_starting_worker_with_nothing_to_clean_leaves_the_generation_alone(
    tmp_path: Path,
) -> None:
    """Otherwise every worker start would make every other worker reload its replica."""
    qdrant = tmp_path / "qdrant"
    _build(qdrant, SAMPLE_FAQ)
    generation = read_generation(qdrant)
    settings = settings_for(tmp_path / "m", qdrant, workers=2, jobs_dir=tmp_path / "jobs")
    with serve(create_app(settings, encoder_factory=lambda _: FakeEncoder(dim=384))) as api:
        assert api.get("/health/ready").status_code == 200
    assert read_generation(qdrant) == generation


def test_admin_writes_with_replicas_reach_every_worker(tmp_path: Path) -> None:
    """With replicas the admin routes write the directory itself, under the lock."""
    qdrant = tmp_path / "qdrant"
    _build(qdrant, SAMPLE_FAQ)
    settings = settings_for(
        tmp_path / "no-model",
        qdrant,
        workers=2,
        index_check_interval_s=INTERVAL_S,
        admin_api_key="k",
        jobs_dir=tmp_path / "jobs",
    )
    encoder = FakeEncoder(dim=384)
    auth = {"X-API-Key": "k"}
    item = {"question": "Can I gift-wrap my zebra order?", "answer": "Yes.", "lang": "en"}
    zebra = {"query": "gift-wrap zebra order", "top_k": 1}
    with (
        serve(create_app(settings, encoder_factory=lambda _: encoder)) as one,
        serve(create_app(settings, encoder_factory=lambda _: encoder)) as two,
    ):
        generation = read_generation(qdrant)
        assert one.put("/admin/faq/gift-zebra", json=item, headers=auth).status_code == 201
        assert read_generation(qdrant) != generation
        for api in (one, two):
            deadline = time.monotonic() + 10
            while api.post("/search", json=zebra).json()["results"][0]["id"] != "gift-zebra":
                assert time.monotonic() < deadline, "the edit never reached this worker"
                time.sleep(0.05)
        listed = two.get("/admin/collections", headers=auth).json()
        assert [(c["name"], c["live"], c["points"]) for c in listed] == [("faq_v1", True, 142)]
        assert two.delete("/admin/faq/gift-zebra", headers=auth).status_code == 200
    # The write went to the directory: a fresh reader sees the entry gone and the rest intact.
    with local_writer(qdrant, timeout=5) as client:
        assert client.count("faq", exact=True).count == 141


def test_replica_refuses_a_directory_held_by_a_single_process_service(tmp_path: Path) -> None:
    qdrant = tmp_path / "qdrant"
    _build(qdrant, SAMPLE_FAQ)
    holder = open_client(path=qdrant)  # what a one-worker service does
    try:
        settings = settings_for(tmp_path / "m", qdrant, workers=2, replica_lock_timeout_s=0.5)
        with serve(create_app(settings, encoder_factory=lambda _: FakeEncoder(dim=384))) as api:
            ready = api.get("/health/ready")
            assert ready.status_code == 503
            assert "held by another process" in ready.json()["problem"]
    finally:
        holder.close()


Running = tuple[httpx.Client, Path, subprocess.Popen[bytes]]


@pytest.fixture
def two_worker_server(tmp_path: Path) -> Iterator[Running]:
    qdrant = tmp_path / "qdrant"
    _build(qdrant, SAMPLE_FAQ)
    port = _free_port()
    env = {
        **os.environ,
        "FAQ_WORKERS": "2",
        "FAQ_PORT": str(port),
        "FAQ_QDRANT_PATH": str(qdrant),
        "FAQ_INDEX_CHECK_INTERVAL_S": str(INTERVAL_S),
        "FAQ_LOOP": "asyncio",
        "FAQ_LOG_LEVEL": "warning",
    }
    code = (
        "from app.core.config import get_settings; from app.server import serve; "
        "serve(get_settings(), 'tests.app.fake_worker:create')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if api.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, "faq-serve exited"
                assert time.monotonic() < deadline, "workers not ready in 60 s"
                time.sleep(0.1)
            yield api, qdrant, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _per_worker(port_base: str, pids: int = 2, tries: int = 400) -> dict[int, dict[str, object]]:
    """One answer from each worker: fresh connections until two different pids answered."""
    seen: dict[int, dict[str, object]] = {}
    for _ in range(tries):
        with httpx.Client(base_url=port_base, timeout=10) as fresh:
            pid = fresh.get("/pid").json()["pid"]
            if pid not in seen:
                r = fresh.post("/search", json=QUERY)
                seen[pid] = {"status": r.status_code, **r.json()}
        if len(seen) == pids:
            break
    return seen


def test_worker_processes_share_the_directory_and_reload_after_a_rebuild(
    two_worker_server: Running, small_faq: Path
) -> None:
    api, qdrant, proc = two_worker_server
    base = str(api.base_url)
    answers = _per_worker(base)
    assert len(answers) == 2, f"only {list(answers)} answered"
    assert proc.pid not in answers  # workers, not the supervisor
    assert all(a["status"] == 200 and a["index"] == "faq_v1" for a in answers.values())

    _build(qdrant, small_faq)
    time.sleep(INTERVAL_S * 2)
    deadline = time.monotonic() + 10
    while True:
        answers = _per_worker(base)
        if all(a.get("index") == "faq_v2" for a in answers.values()) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)
    assert len(answers) == 2
    assert all(a["status"] == 200 and a["index"] == "faq_v2" for a in answers.values()), answers


def _samples(text: str, name: str) -> dict[str, float]:
    """`{labels: value}` of one metric in a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, value = line.rsplit(" ", 1)
            out[series[len(name) :]] = float(value)
    return out


def test_metrics_from_two_workers_add_up(two_worker_server: Running) -> None:
    api, _, proc = two_worker_server
    base = str(api.base_url)
    served: dict[int, int] = {}
    sent = 0
    # Fresh connections until both workers answered searches (and at least 30 were sent).
    while len(served) < 2 or sent < 30:
        assert sent < 400, f"only {list(served)} answered"
        with httpx.Client(base_url=base, timeout=10) as fresh:
            pid = fresh.get("/pid").json()["pid"]
            assert fresh.post("/search", json=QUERY).status_code == 200
        served[pid] = served.get(pid, 0) + 1
        sent += 1
    # Whichever worker answers the scrape, it reports what both served.
    for _ in range(4):
        with httpx.Client(base_url=base, timeout=10) as fresh:
            text = fresh.get("/metrics").text
        counts = _samples(text, "faq_http_request_duration_seconds_count")
        searched = sum(v for k, v in counts.items() if 'route="/search"' in k)
        assert searched == sent, (served, counts)
        assert _samples(text, "faq_encode_duration_seconds_count") == {"": float(sent)}
        # Process metrics of each live worker, by pid; not of the supervisor.
        pids = {
            k.split('pid="')[1].split('"')[0]
            for k in _samples(text, "process_resident_memory_bytes")
        }
        assert pids == {str(p) for p in served} and str(proc.pid) not in pids


@pytest.mark.parametrize("matrix", [True, False])
def test_a_replica_answers_like_the_directory(tmp_path: Path, matrix: bool) -> None:
    from app.services.replica import load_replica

    qdrant = tmp_path / "qdrant"
    _build(qdrant, SAMPLE_FAQ)
    encoder = FakeEncoder(dim=384)
    vectors = encoder.encode_queries(["where is my order", "refund", "cancel mi pedido"])
    specs: list[tuple[int, str | None, str | None]] = [
        (3, None, None),
        (5, "es", None),
        (2, None, "mx"),
    ]
    client = open_client(path=qdrant)
    try:
        directory = FaqIndex(client, matrix=False)
        expected_info = directory.info()
        expected = directory.search_batch(vectors, specs)
    finally:
        client.close()
    replica, _ = load_replica(qdrant, "faq", timeout=10, matrix=matrix)
    assert replica.matrix is matrix
    assert replica.info() == expected_info  # the same collection, metadata and point count
    got = replica.search_batch(vectors, specs)
    # The fake encoder ties many scores: the same scores, and the same entries above the last.
    for g, e in zip(got, expected, strict=True):
        assert [h.score for h in g] == pytest.approx([h.score for h in e], abs=1e-5)
        last = e[-1].score + 1e-5
        assert {h.id for h in g if h.score > last} == {h.id for h in e if h.score > last}
    assert got[0][0].id == expected[0][0].id
