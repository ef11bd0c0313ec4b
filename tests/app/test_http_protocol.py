"""Each response in one write (app/http_protocol.py): the transport and the served app."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import uvicorn
from starlette.responses import JSONResponse
from uvicorn.server import ServerState

from app.http_protocol import CoalescingHttpToolsProtocol, TurnBufferedTransport
from app.main import create_app
from app.server import uvicorn_config
from index_builder.encoder import FakeEncoder
from tests.app.conftest import serve, settings_for


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.writes))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def test_writes_of_one_turn_reach_the_socket_as_one() -> None:
    async def run() -> RecordingTransport:
        real = RecordingTransport()
        buffered = TurnBufferedTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        buffered.write(b"HTTP/1.1 200 OK\r\n\r\n")
        buffered.write(b"")
        buffered.write(memoryview(b"body"))
        assert real.writes == []  # held until the end of this turn
        await asyncio.sleep(0)
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        buffered.write(b"next")  # a later turn: a write of its own
        await asyncio.sleep(0)
        assert buffered.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the real one's
        return real

    assert asyncio.run(run()).writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_close_and_the_buffer_size_send_what_is_held_first_and_abort_drops_it() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        real = RecordingTransport()
        buffered = TurnBufferedTransport(real, loop)  # type: ignore[arg-type]
        buffered.write(b"head")
        assert buffered.get_write_buffer_size() == 4 and real.writes == [b"head"]
        buffered.write(b"last")
        buffered.close()
        assert real.writes == [b"head", b"last"] and real.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        assert real.writes == [b"head", b"last"]

        dropped = RecordingTransport()
        buffered = TurnBufferedTransport(dropped, loop)  # type: ignore[arg-type]
        buffered.write(b"never sent")
        buffered.abort()
        await asyncio.sleep(0)
        assert dropped.writes == [] and dropped.aborted

    asyncio.run(run())


def test_faq_serve_uses_it() -> None:
    assert uvicorn_config(settings_for(Path("m"), Path("q"))).http is CoalescingHttpToolsProtocol


def test_uvicorn_sends_a_starlette_response_in_one_write() -> None:
    """The protocol as uvicorn runs it, on a recording transport: a keep-alive response's
    headers and body leave in one write (uvicorn alone writes them apart)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await JSONResponse({"status": "ok"})(scope, receive, send)

    async def run() -> list[bytes]:
        config = uvicorn.Config(app, http=CoalescingHttpToolsProtocol, log_level="warning")
        protocol = CoalescingHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}
        )
        real = RecordingTransport()
        protocol.connection_made(real)  # type: ignore[arg-type]
        for _ in range(3):
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(20):  # the app's task, then the end of its turn
                await asyncio.sleep(0)
        protocol.connection_lost(None)
        return real.writes

    writes = asyncio.run(run())
    assert len(writes) == 3, writes
    for data in writes:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == b'{"status":"ok"}', data


def test_connection_close_still_sends_the_whole_response(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    settings = settings_for(tmp_path / "no-model", tmp_path / "qdrant")
    with serve(create_app(settings, encoder_factory=lambda _: encoder)) as api:
        host, port = api.base_url.host, api.base_url.port
        assert port is not None
        with socket.create_connection((host, port)) as sock:
            request = b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(1 << 16):
                received += chunk
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"status":"ok"}')
    assert b"connection: close" in received
