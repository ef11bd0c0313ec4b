"""Versioned FAQ collections in Qdrant behind an alias that moves atomically.

A build writes `<alias>_v<N+1>`, checks it, then moves the alias in one
`update_collection_aliases` call, so readers see either the old or the new collection and a
failed build leaves the previous one serving. The collection's metadata records the model
fingerprint, so a service can refuse vectors made by a different model.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from tqdm import tqdm

from index_builder.encoder import Encoder
from index_builder.faq import FaqItem, content_hash

log = logging.getLogger(__name__)

# Point ids must be UUIDs or integers in Qdrant; derive them from the FAQ id so that an upsert
# of the same entry replaces it instead of duplicating it.
_POINT_NAMESPACE = uuid.UUID("6f1d2a52-8e8c-4c33-9d0b-5d9f3b1f6a10")
FILTER_FIELDS = ("lang", "market")


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


def point_id(faq_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, faq_id))


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
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" not in str(exc):
            raise
        raise QdrantLockedError(
            f"the embedded Qdrant directory {path} is held by another process (a running "
            "service?): stop it, or run Qdrant as a server and set FAQ_QDRANT_URL"
        ) from exc


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
class Hit:
    id: str
    question: str
    answer: str
    lang: str
    market: str | None
    tags: list[str]
    score: float


class FaqIndex:
    """One alias (e.g. `faq`) and the versioned collections behind it."""

    def __init__(self, client: QdrantClient, alias: str = "faq", keep: int = 3) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", alias):
            raise ValueError(f"invalid alias name {alias!r}")
        self.client = client
        self.alias = alias
        self.keep = max(1, keep)
        self._version_re = re.compile(rf"^{re.escape(alias)}_v(\d+)$")

    # --- reading -----------------------------------------------------------------------------

    def current_collection(self) -> str | None:
        for a in self.client.get_aliases().aliases:
            if a.alias_name == self.alias:
                return a.collection_name
        return None

    def info(self) -> IndexInfo:
        collection = self.current_collection()
        if collection is None:
            raise IndexMissingError(
                f"no index behind alias {self.alias!r}: build one with "
                "`make index` (or `faq-index build --faq data/faq.jsonl`)"
            )
        meta: dict[str, Any] = self.client.get_collection(collection).config.metadata or {}
        points = self.client.count(collection, exact=True).count
        return IndexInfo(
            alias=self.alias,
            collection=collection,
            fingerprint=str(meta.get("fingerprint", "")),
            model=str(meta.get("model", "")),
            content_hash=str(meta.get("content_hash", "")),
            points=points,
            created_at=str(meta.get("created_at", "")),
        )

    def check_model(self, fingerprint: str) -> IndexInfo:
        info = self.info()
        if info.fingerprint != fingerprint:
            raise IndexModelMismatchError(
                f"index {info.collection!r} was built by model {info.fingerprint or 'unknown'!r}"
                f" but the service runs {fingerprint!r}: rebuild it with `make index` "
                "(or `faq-index build --faq <file>`) using the served model"
            )
        return info

    def search(
        self,
        vector: NDArray[np.float32],
        top_k: int,
        *,
        lang: str | None = None,
        market: str | None = None,
    ) -> list[Hit]:
        conditions: list[models.Condition] = [
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in (("lang", lang), ("market", market))
            if value is not None
        ]
        response = self.client.query_points(
            collection_name=self.alias,
            query=vector.astype(np.float32).tolist(),
            limit=top_k,
            query_filter=models.Filter(must=conditions) if conditions else None,
            with_payload=True,
        )
        hits = []
        for p in response.points:
            payload = p.payload or {}
            hits.append(
                Hit(
                    id=str(payload.get("id", p.id)),
                    question=str(payload.get("question", "")),
                    answer=str(payload.get("answer", "")),
                    lang=str(payload.get("lang", "")),
                    market=payload.get("market"),
                    tags=list(payload.get("tags") or []),
                    score=float(p.score),
                )
            )
        return hits

    # --- writing -----------------------------------------------------------------------------

    def versions(self) -> list[tuple[int, str]]:
        found = []
        for c in self.client.get_collections().collections:
            m = self._version_re.match(c.name)
            if m:
                found.append((int(m.group(1)), c.name))
        return sorted(found)

    def build(
        self,
        items: Sequence[FaqItem],
        encoder: Encoder,
        *,
        batch_size: int = 64,
        skip_if_unchanged: bool = False,
        progress: bool = True,
    ) -> tuple[IndexInfo, bool]:
        """Embed `items` into a new collection and move the alias to it.

        Returns the live index and whether a new collection was built. On any failure the new
        collection is removed and the alias keeps pointing where it did.
        """
        if not items:
            raise IndexBuildError("no FAQ items to index")
        if any(c.name == self.alias for c in self.client.get_collections().collections):
            # A collection named like the alias would shadow it; refuse rather than guess.
            raise IndexBuildError(
                f"a collection is named {self.alias!r} like the alias; rename or delete it"
            )
        digest = content_hash(items)
        if skip_if_unchanged and self.current_collection() is not None:
            live = self.info()
            if live.fingerprint == encoder.fingerprint and live.content_hash == digest:
                log.info(
                    "index %s is up to date (%d entries); nothing to do",
                    live.collection,
                    live.points,
                )
                return live, False

        existing = self.versions()
        version = (existing[-1][0] if existing else 0) + 1
        name = f"{self.alias}_v{version}"
        started = time.perf_counter()
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.client.create_collection(
            collection_name=name,
            vectors_config=models.VectorParams(size=encoder.dim, distance=models.Distance.COSINE),
            metadata={
                "fingerprint": encoder.fingerprint,
                "model": encoder.name,
                "content_hash": digest,
                "created_at": created_at,
                "count": len(items),
            },
        )
        try:
            with warnings.catch_warnings():
                # Local mode scans payloads anyway and warns; a server uses the index.
                warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
                for field in FILTER_FIELDS:
                    self.client.create_payload_index(
                        name, field_name=field, field_schema=models.PayloadSchemaType.KEYWORD
                    )
            bar = tqdm(total=len(items), desc=f"indexing {name}", unit="faq", disable=not progress)
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                vectors = encoder.encode_passages([i.question for i in chunk])
                self.client.upsert(
                    collection_name=name,
                    points=[
                        models.PointStruct(
                            id=point_id(i.id), vector=v.tolist(), payload=i.payload()
                        )
                        for i, v in zip(chunk, vectors, strict=True)
                    ],
                    wait=True,
                )
                bar.update(len(chunk))
            bar.close()
            stored = self.client.count(name, exact=True).count
            if stored != len(items):
                raise IndexBuildError(f"{name}: wrote {len(items)} entries but {stored} are stored")
            self._move_alias(name)
        except BaseException:
            log.exception("building %s failed; alias %r left as it was", name, self.alias)
            self.client.delete_collection(name)
            raise
        log.info("built %s: %d entries in %.1fs", name, len(items), time.perf_counter() - started)
        self._prune()
        return self.info(), True

    def _move_alias(self, collection: str) -> None:
        ops: list[models.CreateAliasOperation | models.DeleteAliasOperation] = []
        if self.current_collection() is not None:
            ops.append(
                models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias))
            )
        ops.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=self.alias)
            )
        )
        # One call: Qdrant applies the delete and the create atomically.
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def _prune(self) -> None:
        live = self.current_collection()
        old = [name for _, name in self.versions() if name != live]
        for name in old[: max(0, len(old) - (self.keep - 1))]:
            log.info("removing old collection %s", name)
            self.client.delete_collection(name)
