"""Runs the app under uvicorn with one or several worker processes on one listening socket.

Why not `uvicorn --workers N`: uvicorn binds that socket with `socket.socket(family)`, whose
protocol number is 0, and asyncio sets TCP_NODELAY only on sockets whose protocol is
IPPROTO_TCP. The workers' connections then run with Nagle's algorithm, and a keep-alive
response written in two parts waits for the client's delayed ACK: about 40 ms per request
with the asyncio loop (uvloop sets TCP_NODELAY itself). Here the socket is created with
IPPROTO_TCP, so asyncio's accepted sockets get TCP_NODELAY, and TCP_NODELAY is also set on
the listening socket, which Linux copies to every accepted socket, whatever the loop.
"""

from __future__ import annotations

import errno
import socket

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.metrics import multiprocess_metrics

APP = "app.server:create_worker_app"


def create_worker_app() -> FastAPI:
    """The app of one worker: spawned workers start from a fresh interpreter, so the logging
    set up by `faq-serve` in the supervisor has to be set up again here."""
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)


class ListenError(Exception):
    """The listening socket could not be bound (port in use, address not local, no permission):
    `faq-serve` prints it as one line, without a traceback."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        if cause.errno == errno.EADDRINUSE:
            message = f"{host}:{port} is already in use (FAQ_PORT / --port to choose another)"
        else:
            message = f"cannot listen on {host}:{port}: {cause.strerror or cause}"
        super().__init__(message)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections have TCP_NODELAY set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    # Workers are spawned processes: they receive the socket, they do not bind their own.
    sock.set_inheritable(True)
    return sock


def uvicorn_config(settings: Settings, app: str = APP) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # Our logging setup stays in place, and app.access writes one line per request with
        # its request id, so uvicorn's own access log would only repeat it.
        log_config=None,
        access_log=False,
    )


def serve(settings: Settings, app: str = APP) -> None:
    """Serve until interrupted: in this process for one worker, else under uvicorn's supervisor
    (which restarts a worker that dies and stops them all on SIGINT/SIGTERM).

    `app` is the import string of an app factory that every worker calls (tests pass one with
    a fake encoder). Raises `ListenError` when the socket cannot be bound, before any worker
    or the app (model, index) starts.
    """
    config = uvicorn_config(settings, app)
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        raise ListenError(settings.host, settings.port, exc) from None
    try:
        if settings.workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            # Metrics summed over the workers (app/metrics.py): set up before they start.
            with multiprocess_metrics(settings.workers):
                Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
