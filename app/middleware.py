"""ASGI middleware: request ids and the request body limit.

Plain ASGI (not BaseHTTPMiddleware), so the body limit counts bytes as they stream in and
refuses before more than the limit is held in memory.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# A client-supplied id is echoed into logs and headers, so keep it short and printable.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Takes `X-Request-ID` from the request (or makes one) and returns it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Answers 413 when Content-Length, or the bytes actually received, pass `max_bytes`, and
    408 when the whole body has not arrived within `read_timeout_s` (a slowloris client would
    otherwise hold a connection and its buffer for as long as it likes).

    The body is read here and replayed to the app because FastAPI turns any error raised while
    it reads a body into a 400; bodies are small, so buffering costs nothing.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float = 10.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def _reject(self, scope: Scope, receive: Receive, send: Send, status: int = 413) -> None:
        if status == 408:
            message = f"the request body did not arrive within {self.read_timeout_s:g} s"
            response = error_response(408, message, headers={"Connection": "close"})
        else:
            message = f"request body larger than {self.max_bytes} bytes"
            response = error_response(413, message)
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        chunks: list[bytes] = []
        received = 0
        deadline = time.monotonic() + self.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                await self._reject(scope, receive, send, 408)
                return
            if message["type"] != "http.request":
                return  # the client went away before sending its body: nothing to answer
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
