"""Several workers: TCP_NODELAY on the shared socket, and one embedded store served by many
processes, each loading the live version and following the alias when another process moves
it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.server import bind_socket
from index_builder.faq import read_faq
from index_builder.store import EmbeddedStore
from tests.app.conftest import REPO, SAMPLE_FAQ, _free_port
from tests.fakes import FakeEncoder

QUERY = {"query": "where is my order", "top_k": 3}


@pytest.fixture
def small_faq(tmp_path: Path) -> Path:
    """The first ten entries of the sample FAQ: a rebuild that is easy to tell apart."""
    path = tmp_path / "small.jsonl"
    path.write_text("".join(SAMPLE_FAQ.read_text().splitlines(keepends=True)[:10]))
    return path


def _build(path: Path, faq: Path) -> None:
    EmbeddedStore(path).build(read_faq(faq), FakeEncoder(dim=384), progress=False)


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
        "FAQ_INDEX_PATH": str(qdrant),
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

    _build(qdrant, small_faq)  # by another process, as `faq-index build` would
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


def test_a_killed_workers_gauges_go_and_every_worker_reports_the_live_index(
    two_worker_server: Running, small_faq: Path
) -> None:
    """A SIGKILLed worker runs no atexit: its live gauges (queue depth, index info) must not
    stay summed into /metrics; and each worker sets the index gauges on its own checks, not
    only the one a readiness probe reached, so after a rebuild one collection reads 1."""
    api, qdrant, _ = two_worker_server
    base = str(api.base_url)
    victim = next(iter(_per_worker(base)))
    os.kill(victim, signal.SIGKILL)
    _build(qdrant, small_faq)  # faq_v2, by another process
    deadline = time.monotonic() + 20
    while True:
        answers = _per_worker(base, pids=2, tries=40)
        live = {pid: a for pid, a in answers.items() if pid != victim}
        if live and all(a.get("index") == "faq_v2" for a in live.values()):
            break
        assert time.monotonic() < deadline, answers
        time.sleep(0.2)
    for _ in range(4):  # whichever worker answers the scrape
        with httpx.Client(base_url=base, timeout=10) as fresh:
            info = _samples(fresh.get("/metrics").text, "faq_index_info")
        shown = {k for k, v in info.items() if v == 1}
        assert len(shown) == 1 and 'collection="faq_v2"' in next(iter(shown)), info
