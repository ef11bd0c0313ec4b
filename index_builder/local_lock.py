"""Shared access to an embedded (local-mode) Qdrant directory by several processes.

qdrant-client's local mode lets one process hold a data directory at a time (it takes an
exclusive file lock for as long as the client is open). So that several service workers, an
index build and an admin write can share one directory, every one of them opens it only
briefly, under a second lock of ours (`.faq-access.lock` in the directory), and closes it
before releasing that lock:

- writers (`faq-index build`, admin writes) use `local_writer(path)`; on leaving it they
  write a new generation (`.faq-generation`, replaced atomically),
- multi-worker services keep an in-memory replica (`app/services/replica.py`) loaded under
  `local_reader(path)` and reload it when the generation differs from the one they loaded.

The lock is `fcntl.flock` (POSIX): it is per open file, so two holders in one process exclude
each other too, and the kernel releases it when a holder dies.
"""

from __future__ import annotations

import fcntl
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient

from index_builder.store import FaqIndexError, open_client

LOCK_FILE = ".faq-access.lock"
GENERATION_FILE = ".faq-generation"
_POLL_S = 0.02


class LocalLockTimeoutError(FaqIndexError):
    """The directory stayed locked (a build or a loading worker) for longer than allowed."""


@dataclass(frozen=True)
class LocalAccess:
    """An open local-mode client plus the generation the directory had when it was opened."""

    client: QdrantClient
    generation: str


def read_generation(path: Path) -> str:
    """The directory's current generation ("" before any writer bumped it)."""
    try:
        return (path / GENERATION_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def bump_generation(path: Path) -> str:
    """Write a new generation; readers see either the old or the new file, never half of one."""
    generation = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
    tmp = path / f"{GENERATION_FILE}.{os.getpid()}.tmp"
    tmp.write_text(generation + "\n", encoding="utf-8")
    os.replace(tmp, path / GENERATION_FILE)
    return generation


@contextmanager
def directory_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the directory's access lock; `timeout=None` waits as long as it takes."""
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise LocalLockTimeoutError(
                        f"the embedded Qdrant directory {path} stayed locked for {timeout:.1f} s "
                        "(an index build or a worker loading it); try again shortly"
                    ) from None
                time.sleep(_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def local_reader(path: Path, *, timeout: float | None = None) -> Iterator[LocalAccess]:
    """Open the directory under the lock to read it; closed (and unlocked) on leaving."""
    with directory_lock(path, timeout):
        generation = read_generation(path)
        client = open_client(path=path)
        try:
            yield LocalAccess(client, generation)
        finally:
            client.close()


@contextmanager
def local_writer(path: Path, *, timeout: float | None = None) -> Iterator[QdrantClient]:
    """Open the directory under the lock to change it; bumps the generation on leaving.

    The generation is bumped even when the block fails: a failed write may have changed
    something (a build removes its half-built collection, but an admin batch may stop half
    way), and a reader reloading an unchanged directory costs only the reload.
    """
    with directory_lock(path, timeout):
        client = open_client(path=path)
        try:
            yield client
        finally:
            client.close()
            bump_generation(path)
