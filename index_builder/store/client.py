"""Opening Qdrant: a server when a URL is given, else qdrant-client's embedded local mode."""

from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient

from index_builder.store.records import QdrantLockedError


def open_client(
    *,
    url: str | None = None,
    api_key: str | None = None,
    path: Path | None = None,
    timeout: float = 5.0,
) -> QdrantClient:
    """A server client when `url` is set, else qdrant-client's embedded local mode on `path`."""
    if url:
        return QdrantClient(url=url, api_key=api_key or None, timeout=int(max(1, timeout)))
    if path is None:
        raise ValueError("either a Qdrant URL or a local data path is required")
    path.mkdir(parents=True, exist_ok=True)
    try:
        # The service writes (admin reindex, edits) from other threads than the one that opened
        # the client; FaqIndex serialises them, so sqlite's same-thread check is only in the way
        # (it is on where sqlite is built THREADSAFE=2, e.g. macOS).
        return QdrantClient(path=str(path), force_disable_check_same_thread=True)
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise QdrantLockedError(
            f"the embedded Qdrant directory {path} is held by another process (a running "
            "service?): stop it, or run Qdrant as a server and set FAQ_QDRANT_URL"
        ) from exc


def is_local(client: QdrantClient) -> bool:
    """Whether `client` is qdrant-client's in-process local mode (a path or `:memory:`)."""
    options = client.init_options
    return options.get("path") is not None or options.get("location") == ":memory:"
