"""Versioned FAQ collections in Qdrant behind an alias (see `index.py`), split by job:

- `records.py`: what the store hands out and raises, and the payload <-> point mapping;
- `client.py`: opening Qdrant (server or embedded), in one place;
- `locking.py`: the reader-writer lock local mode needs;
- `index.py`: `FaqIndex`, the alias and its versions: build, gate, switch, rollback, edits;
- `matrix.py`: the embedded search: the live collection as one normalised float32 matrix.

Everything is re-exported here, so `from index_builder.store import FaqIndex` keeps working.
"""

from index_builder.store.client import is_local, open_client
from index_builder.store.index import FaqIndex
from index_builder.store.locking import ReadWriteLock
from index_builder.store.records import (
    BUILDING,
    FILTER_FIELDS,
    READY,
    CollectionInfo,
    CollectionLayout,
    FaqIndexError,
    Hit,
    IndexBuildError,
    IndexInfo,
    IndexMissingError,
    IndexModelMismatchError,
    QdrantLockedError,
    RollbackError,
    SearchSpec,
    UnknownCollectionError,
    hit_from_point,
    point_id,
    qdrant_filter,
)

__all__ = [
    "BUILDING",
    "FILTER_FIELDS",
    "READY",
    "CollectionInfo",
    "CollectionLayout",
    "FaqIndex",
    "FaqIndexError",
    "Hit",
    "IndexBuildError",
    "IndexInfo",
    "IndexMissingError",
    "IndexModelMismatchError",
    "QdrantLockedError",
    "ReadWriteLock",
    "RollbackError",
    "SearchSpec",
    "UnknownCollectionError",
    "hit_from_point",
    "is_local",
    "open_client",
    "point_id",
    "qdrant_filter",
]
