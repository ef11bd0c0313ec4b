"""Runs the app under uvicorn with one or several worker processes on one listening socket.

The socket is made here, not by `uvicorn --workers N`: uvicorn's has protocol 0, so asyncio
never sets TCP_NODELAY and each keep-alive response waits for the client's delayed ACK
(docs/design.md). Ours is IPPROTO_TCP with TCP_NODELAY, which accepted sockets inherit.
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
    """The app of one worker: a spawned worker is a fresh interpreter, so it sets up the
    logging that `faq-serve` set up in the supervisor again."""
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)


class ListenError(Exception):
    """The listening socket could not be bound: `faq-serve` prints it as one line."""

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
    sock.set_inheritable(True)  # spawned workers receive it rather than bind their own
    return sock


def serve(settings: Settings, app: str = APP) -> None:
    """Serve until interrupted: in this process for one worker, else under uvicorn's supervisor
    (which restarts a dead worker and stops them all on SIGINT/SIGTERM). `app` is the import
    string of the app factory every worker calls. Raises `ListenError` before anything starts.
    """
    # log_config=None keeps our logging; app.access already logs each request with its id.
    config = uvicorn.Config(
        app,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=None,
        access_log=False,
    )
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        raise ListenError(settings.host, settings.port, exc) from None
    try:
        if settings.workers == 1:
            uvicorn.Server(config).run(sockets=[sock])
        else:
            with multiprocess_metrics():  # set up before the workers start
                Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
