"""Tools of the chaos suite: a tally per fault, a load driver, a delaying TCP proxy and a
service in a process of its own (to be killed)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.app.conftest import REPO, _free_port

# The service's promise under every fault: an answer (good or a clear refusal) within the
# encoder's deadline plus the store's (FAQ_BATCH_DEADLINE_S = 1 s each here) plus 0.5 s.
DEADLINE_S = 1.0
ANSWER_LIMIT_S = 2 * DEADLINE_S + 0.5
COLUMNS = ("name", "sent", "2xx", "4xx", "5xx", "lost_writes", "past_deadline", "recovery_s")
QUERY = {"query": "where is my order", "top_k": 3}
ADMIN_KEY = "chaos-admin"
ADMIN = {"X-API-Key": ADMIN_KEY}


@dataclass
class Tally:
    name: str
    sent: int = 0
    ok: int = 0
    client_errors: int = 0
    server_errors: int = 0
    lost_writes: int = 0
    past_deadline: int = 0
    recovery_s: float | None = None
    statuses: dict[int, int] = field(default_factory=dict)
    notes: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, took_s: float) -> None:
        """One answer; status 0 = no HTTP answer at all (connection dropped), counted as 5xx."""
        with self._lock:
            self.sent += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                self.ok += 1
            elif 400 <= status < 500:
                self.client_errors += 1
            else:
                self.server_errors += 1
            if took_s > ANSWER_LIMIT_S:
                self.past_deadline += 1

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sent": self.sent,
            "2xx": self.ok,
            "4xx": self.client_errors,
            "5xx": self.server_errors,
            "lost_writes": self.lost_writes,
            "past_deadline": self.past_deadline,
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "notes": self.notes,
        }

    def check(self, allowed: set[int]) -> None:
        """The suite's bar: nothing lost, nobody past the deadline, no status but `allowed`."""
        assert self.lost_writes == 0, self.row()
        assert self.past_deadline == 0, self.row()
        assert set(self.statuses) <= allowed, self.row()


def timed(tally: Tally | None, call: Callable[[], httpx.Response]) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        response: httpx.Response | None = call()
    except httpx.TransportError:
        response = None
    if tally is not None:
        tally.record(0 if response is None else response.status_code, time.perf_counter() - t0)
    return response


def hammer(
    tally: Tally, call: Callable[[], httpx.Response], n: int, concurrency: int
) -> list[float]:
    """`n` calls, `concurrency` at a time; their latencies."""
    latencies: list[float] = []

    def one(_: int) -> None:
        t0 = time.perf_counter()
        timed(tally, call)
        latencies.append(time.perf_counter() - t0)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return latencies


def recover(tally: Tally, client: httpx.Client, timeout_s: float = 30.0) -> None:
    """Time from now (the fault's end) until a search is answered 200."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        r = timed(None, lambda: client.post("/search", json=QUERY))
        if r is not None and r.status_code == 200:
            tally.recovery_s = time.perf_counter() - t0
            return
        time.sleep(0.05)
    raise AssertionError(f"{tally.name}: no good answer within {timeout_s} s of the fault's end")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


class DelayProxy:
    """A TCP proxy on a loopback port that holds every chunk from the client for `delay`
    seconds before passing it on: a slow or hanging server behind a working network."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = _free_port()
        self.delay = 0.0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delayed and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False)
        )

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        ).result(10)
        self._server = server
        return self

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass
class Process:
    """`faq-serve` on the slow fake encoder in a process of its own."""

    index: Path
    jobs: Path
    model_s: float
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> float:
        """Start it and wait until it answers a search; the seconds that took."""
        env = {
            **os.environ,
            "FAQ_PORT": str(self.port),
            "FAQ_INDEX_PATH": str(self.index),
            "FAQ_JOBS_DIR": str(self.jobs),
            "FAQ_ADMIN_API_KEY": ADMIN_KEY,
            "FAQ_LOG_LEVEL": "warning",
            "FAQ_BATCH_DEADLINE_S": str(DEADLINE_S),
            "CHAOS_MODEL_S": str(self.model_s),
        }
        code = (
            "from app.core.config import get_settings; from app.server import serve; "
            "serve(get_settings(), 'tests.chaos.slow_worker:create')"
        )
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while True:
                assert self.proc.poll() is None, "the service exited"
                assert time.perf_counter() - t0 < timeout_s, "the service did not start"
                try:
                    if client.post("/search", json=QUERY).status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown, no atexit
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@contextmanager
def process(index: Path, jobs: Path, model_s: float) -> Iterator[Process]:
    running = Process(index, jobs, model_s)
    try:
        yield running
    finally:
        running.stop()
