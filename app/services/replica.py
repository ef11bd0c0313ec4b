"""Read-only in-memory replicas of the embedded index, for several workers on one directory.

The data directory stays the source of truth. A worker opens it under the access lock
(`index_builder.local_lock`), copies the collection behind the alias into memory, closes it and
releases the lock; searches then run on the copy: the collection's metadata and the alias in
`QdrantClient(":memory:")`, its points as a `MatrixSnapshot` (with `FAQ_LOCAL_SEARCH=qdrant`,
the points in the in-memory client instead). When a writer has bumped the directory's
generation, the next index check loads a fresh copy and swaps it in; searches already running
finish on the old one.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from qdrant_client import QdrantClient, models

from index_builder.local_lock import local_reader, read_generation
from index_builder.store import FaqIndex, FaqIndexError
from index_builder.store.fusion import Retrieval
from index_builder.store.matrix import MatrixSnapshot

log = logging.getLogger(__name__)

_SCROLL_BATCH = 1024
# Once a replica serves, a reload does not wait long for the lock: a build may hold it for
# minutes, and the current replica stays correct for the generation it was loaded from.
_RELOAD_LOCK_WAIT_S = 0.5


def copy_alias_target(
    source: QdrantClient,
    alias: str,
    *,
    points: bool = True,
    answer_weight: float = Retrieval.answer_weight,
) -> tuple[QdrantClient, MatrixSnapshot | None]:
    """An in-memory client holding the collection `alias` points to, under the same names.

    With `points`, every point is copied into it (for qdrant-client's own search); without,
    only the collection (config, metadata) and the alias are, and the points come back as a
    `MatrixSnapshot` read straight from the source's arrays: at 100k entries a fraction of a
    second under the directory's lock instead of a scroll and an upsert of every point.

    Without an alias the copy is empty, so `FaqIndex.info()` reports the missing index exactly
    as it would on the directory itself.
    """
    replica = QdrantClient(":memory:")
    target = FaqIndex(source, alias, matrix=False).current_collection()
    if target is None:
        return replica, None
    config = source.get_collection(target).config
    replica.create_collection(
        collection_name=target,
        vectors_config=config.params.vectors,
        sparse_vectors_config=config.params.sparse_vectors,
        metadata=config.metadata,
    )
    snapshot = None
    if points:
        _copy_points(source, replica, target)
    else:
        # The fused search's index is built for the weight the replica will search with.
        snapshot = MatrixSnapshot.load(source, target, answer_weight=answer_weight)
    replica.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=target, alias_name=alias)
            )
        ]
    )
    return replica, snapshot


def _copy_points(source: QdrantClient, replica: QdrantClient, target: str) -> None:
    offset: models.ExtendedPointId | None = None
    while True:
        points, offset = source.scroll(
            target, limit=_SCROLL_BATCH, offset=offset, with_payload=True, with_vectors=True
        )
        if points:
            replica.upsert(
                target,
                points=[
                    models.PointStruct(id=p.id, vector=p.vector or [], payload=p.payload)
                    for p in points
                ],
                wait=True,
            )
        if offset is None:
            break


def load_replica(
    path: Path,
    alias: str,
    *,
    timeout: float | None,
    matrix: bool = True,
    retrieval: Retrieval | None = None,
) -> tuple[FaqIndex, str]:
    """Copy the live collection of the directory; returns the replica and its generation."""
    started = time.perf_counter()
    retrieval = retrieval or Retrieval()
    with local_reader(path, timeout=timeout) as access:
        client, snapshot = copy_alias_target(
            access.client, alias, points=not matrix, answer_weight=retrieval.answer_weight
        )
    index = FaqIndex(client, alias=alias, matrix=matrix, retrieval=retrieval)
    if snapshot is not None:
        index.adopt(snapshot)
    log.info(
        "loaded replica of %s (alias %r -> %s, generation %s) in %.0f ms",
        path,
        alias,
        index.current_collection(),
        access.generation or "-",
        (time.perf_counter() - started) * 1000.0,
    )
    return index, access.generation


class ReplicaSource:
    """Hands the index guard a fresh replica whenever the directory's generation moved."""

    def __init__(
        self,
        path: Path,
        alias: str,
        *,
        lock_timeout_s: float,
        matrix: bool = True,
        retrieval: Retrieval | None = None,
    ) -> None:
        self.path = path
        self.matrix = matrix
        self.retrieval = retrieval
        self.alias = alias
        self.lock_timeout_s = lock_timeout_s
        self._loading = threading.Lock()
        self._generation: str | None = None

    def empty_index(self) -> FaqIndex:
        """What the guard starts with: no alias, so "no index" until the first load."""
        return FaqIndex(QdrantClient(":memory:"), alias=self.alias)

    @property
    def generation(self) -> str | None:
        """The generation of the replica now serving (None before the first load)."""
        return self._generation

    def refresh(self) -> FaqIndex | None:
        """A new replica if the directory changed since the last load, else None.

        Raises `FaqIndexError` (lock timeout, directory held by a single-process service) only
        while no replica has been loaded; later failures keep the current replica serving and
        are retried at the next check.
        """
        loaded = self._generation is not None
        # The generation file is replaced atomically, so peeking without the lock is safe.
        if loaded and read_generation(self.path) == self._generation:
            return None
        with self._loading:
            try:
                index, generation = load_replica(
                    self.path,
                    self.alias,
                    timeout=_RELOAD_LOCK_WAIT_S if loaded else self.lock_timeout_s,
                    matrix=self.matrix,
                    retrieval=self.retrieval,
                )
            except FaqIndexError as exc:
                if not loaded:
                    raise
                log.info("replica reload postponed (%s); serving the current one", exc)
                return None
            self._generation = generation
            return index
