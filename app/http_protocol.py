"""uvicorn's httptools protocol with each response sent in one write.

uvicorn writes a response's status line and headers as soon as the app sends
`http.response.start`, and the body at `http.response.body`: two `send()` calls, and on a
TCP_NODELAY socket (app/server.py) two segments. The client wakes for the headers, then again
for the body, and on a small host that is a context switch between the service and its client
per response. Here the connection's transport holds what is written during one turn of the
event loop and hands it to the socket in one write at the end of that turn (`call_soon`), or
at once when the connection is closed or asked for its buffer size. Starlette sends
the start and the body of a `Response` without yielding to the loop, so they go together; a
streamed body goes out turn by turn as before, each turn one write.

`make ab-serve AB_SERVE_ARGS='--b-tree <the code before>'`, both sides at once on one machine
(docs/bench/2026-11-26-ab-coalesce/): a lone `/search` 7% faster (p50, 17 of 20 pairs at
c=1), and at c=32 4% more requests/s (p50 lower in 10 of 12 pairs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TurnBufferedTransport:
    """A transport whose writes in one loop turn reach the wrapped one as a single write.

    Everything but `write` is the wrapped transport's; the calls that let the pending bytes
    matter (close, write_eof, the buffer size) flush them first; abort drops them.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        # Aborting drops what was not sent: the pending bytes are dropped with it.
        self._pending.clear()
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        self.flush()
        return self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `TurnBufferedTransport` (`uvicorn.Config(http=...)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        buffered = TurnBufferedTransport(transport, self.loop)
        super().connection_made(buffered)  # type: ignore[arg-type]
