"""What the store hands out and raises: records, errors, the payload <-> point mapping."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from qdrant_client import models

# Point ids must be UUIDs or integers in Qdrant; derive them from the FAQ id so that an upsert
# of the same entry replaces it instead of duplicating it.
_POINT_NAMESPACE = uuid.UUID("6f1d2a52-8e8c-4c33-9d0b-5d9f3b1f6a10")
FILTER_FIELDS = ("lang", "market")


@dataclass(frozen=True)
class CollectionLayout:
    """How a Qdrant server spreads a new collection over its cluster (ignored in local mode).

    `shard_number` shards, each held by `replication_factor` nodes; a write returns once
    `write_consistency_factor` replicas of its shard have it. All 1: one node, as before.
    """

    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1

    def __post_init__(self) -> None:
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.write_consistency_factor > self.replication_factor:
            raise ValueError(
                f"write_consistency_factor {self.write_consistency_factor} exceeds "
                f"replication_factor {self.replication_factor}: no write could ever succeed"
            )


class FaqIndexError(RuntimeError):
    """Base class for index problems the service reports as 503."""


class IndexMissingError(FaqIndexError):
    pass


class IndexModelMismatchError(FaqIndexError):
    pass


class IndexBuildError(FaqIndexError):
    pass


class QdrantLockedError(FaqIndexError):
    """Local mode lets one process hold a data directory."""


class RollbackError(FaqIndexError):
    """There is no collection to roll back to, or the one named cannot serve."""


BUILDING = "building"
READY = "ready"


def point_id(faq_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, faq_id))


class UnknownCollectionError(RollbackError):
    """The collection named is not one of the alias's kept versions."""


@dataclass(frozen=True)
class IndexInfo:
    alias: str
    collection: str
    fingerprint: str
    model: str
    content_hash: str
    points: int
    created_at: str


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    version: int
    points: int
    state: str
    fingerprint: str
    content_hash: str
    created_at: str
    live: bool


# Not frozen: a frozen dataclass sets each field through object.__setattr__, 5x the cost of
# plain slots, and a grouped search builds 40 hits per query (fetch_limit); nothing mutates a
# hit after the search that built it.
@dataclass(slots=True)
class Hit:
    id: str
    question: str
    answer: str
    lang: str
    market: str | None
    tags: list[str]
    score: float
    # FaqItem.topic from the payload; "" for points written before it (then the id's topic).
    topic: str = ""


class SearchSpec(NamedTuple):
    """One search of a batch: how many hits, the filters, and the query's lexical token ids
    (`index_builder.lexical`; empty: no lexical part)."""

    top_k: int
    lang: str | None = None
    market: str | None = None
    lexical: tuple[int, ...] = ()


def qdrant_filter(lang: str | None, market: str | None) -> models.Filter | None:
    conditions: list[models.Condition] = [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in (("lang", lang), ("market", market))
        if value is not None
    ]
    return models.Filter(must=conditions) if conditions else None


def hit_from_point(point: Any) -> Hit:
    # The payload layout FaqItem.payload() writes.
    payload = point.payload or {}
    return Hit(
        id=str(payload.get("id", point.id)),
        question=str(payload.get("question", "")),
        answer=str(payload.get("answer", "")),
        lang=str(payload.get("lang", "")),
        market=payload.get("market"),
        tags=list(payload.get("tags") or []),
        score=float(point.score),
        topic=str(payload.get("topic") or ""),
    )
