"""Versioned FAQ collections behind an alias, in one of two backends behind one interface
(`base.Store`): the embedded default (`embedded.py`, the service's own files) or a Qdrant server
(`qdrant.py`). `open_store` makes the one decision of which; `lexical.py` makes the sparse
vectors of the lexical part that `fusion.py` weighs with the dense ones."""

from __future__ import annotations

from pathlib import Path

from index_builder.store.base import (
    CollectionInfo,
    FaqIndexError,
    Hit,
    IndexBuildError,
    IndexInfo,
    IndexMissingError,
    IndexModelMismatchError,
    RollbackError,
    SearchSpec,
    Store,
    UnknownCollectionError,
)
from index_builder.store.embedded import EmbeddedStore
from index_builder.store.fusion import Retrieval
from index_builder.store.qdrant import CollectionLayout, QdrantStore


def open_store(
    *,
    url: str | None = None,
    api_key: str | None = None,
    path: Path | None = None,
    alias: str = "faq",
    keep: int = 3,
    timeout_s: float = 5.0,
    layout: CollectionLayout | None = None,
    retrieval: Retrieval | None = None,
    lock_timeout_s: float = 30.0,
) -> EmbeddedStore | QdrantStore:
    """A Qdrant server's store when `url` is set, else the embedded one in `path` (its writers
    wait up to `lock_timeout_s` for another's build or edit)."""
    if url:
        return QdrantStore.connect(
            url, api_key, timeout_s, alias=alias, keep=keep, layout=layout, retrieval=retrieval
        )
    if path is None:
        raise ValueError("either a Qdrant URL or a local data path is required")
    return EmbeddedStore(path, alias, keep, retrieval=retrieval, lock_timeout_s=lock_timeout_s)


__all__ = [
    "CollectionInfo",
    "CollectionLayout",
    "EmbeddedStore",
    "FaqIndexError",
    "Hit",
    "IndexBuildError",
    "IndexInfo",
    "IndexMissingError",
    "IndexModelMismatchError",
    "QdrantStore",
    "RollbackError",
    "SearchSpec",
    "Store",
    "UnknownCollectionError",
    "open_store",
]
