"""The Qdrant server backend (`FAQ_QDRANT_URL`): each version a Qdrant collection, the alias
Qdrant's own (`update_collection_aliases` moves it atomically), the fused formula evaluated by
Qdrant's query API (prefetch + formula: `fusion.fused_query`).

Every prefetch is an exact search (`SearchParams(exact=True)`): Qdrant's HNSW found the exact
best hit for only 49-77% of the shopper dev queries on real e5 vectors at 100k entries, even at
m=32 / hnsw_ef 512 (docs/design.md), and the service's quality bar is the exact best hit. A
server scales an exact search by shards (`FAQ_SHARD_NUMBER`).

One synchronous client serves the admin writes and the searches; a batch of searches runs in
the store's own threads, so the service awaits it like the embedded store's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from tqdm import tqdm

from index_builder.encoder import Encoder
from index_builder.faq import FaqItem
from index_builder.lexical import Lexicon, SparseDoc
from index_builder.store.base import (
    FILTER_FIELDS,
    READY,
    Hit,
    IndexBuildError,
    IndexInfo,
    OnBatch,
    SearchSpec,
    Store,
    Validate,
    now_iso,
)
from index_builder.store.fusion import ANSWER, LEXICAL, QUESTION, Retrieval, fused_query

log = logging.getLogger(__name__)

# Point ids must be UUIDs or integers in Qdrant; derive them from the FAQ id so that an upsert
# of the same entry replaces it instead of duplicating it.
_POINT_NAMESPACE = uuid.UUID("6f1d2a52-8e8c-4c33-9d0b-5d9f3b1f6a10")
EXACT = models.SearchParams(exact=True)
# Threads that wait on the server's answers to search batches.
SEARCH_THREADS = 8


@dataclass(frozen=True)
class CollectionLayout:
    """How a Qdrant server spreads a new collection over its cluster.

    `shard_number` shards, each held by `replication_factor` nodes; a write returns once
    `write_consistency_factor` replicas of its shard have it. All 1: one node.
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


def point_id(faq_id: str) -> str:
    return str(uuid.uuid5(_POINT_NAMESPACE, faq_id))


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


class QdrantStore(Store):
    """One alias and its versioned collections on a Qdrant server."""

    def __init__(
        self,
        client: QdrantClient,
        alias: str = "faq",
        keep: int = 3,
        *,
        layout: CollectionLayout | None = None,
        retrieval: Retrieval | None = None,
    ) -> None:
        self._init_versions(alias, keep)
        self.client = client
        self.layout = layout or CollectionLayout()
        self.retrieval = retrieval or Retrieval()
        self._pool: ThreadPoolExecutor | None = None
        self.search_concurrency = SEARCH_THREADS

    @classmethod
    def connect(
        cls, url: str, api_key: str | None = None, timeout_s: float = 5.0, **kw: Any
    ) -> QdrantStore:
        # The client does not connect until the first call: a server down at startup only makes
        # the service not ready.
        return cls(
            QdrantClient(url=url, api_key=api_key or None, timeout=int(max(1, timeout_s))), **kw
        )

    # --- primitives --------------------------------------------------------------------------

    def _names(self) -> list[str]:
        return [c.name for c in self.client.get_collections().collections]

    def _metadata(self, collection: str) -> dict[str, Any]:
        return dict(self.client.get_collection(collection).config.metadata or {})

    def _count(self, collection: str) -> int:
        return self.client.count(collection, exact=True).count

    def current_collection(self) -> str | None:
        for a in self.client.get_aliases().aliases:
            if a.alias_name == self.alias:
                return a.collection_name
        return None

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

    def _delete_collection(self, name: str) -> None:
        self.client.delete_collection(name)

    # --- writing -----------------------------------------------------------------------------

    def build(
        self,
        items: Sequence[FaqItem],
        encoder: Encoder,
        *,
        batch_size: int = 64,
        skip_if_unchanged: bool = False,
        progress: bool = True,
        on_batch: OnBatch | None = None,
        validate: Validate | None = None,
    ) -> tuple[IndexInfo, bool]:
        plan = self._plan(items, encoder, skip_if_unchanged)
        if isinstance(plan, IndexInfo):
            return plan, False
        sparse = plan.sparse
        name = self._next_name()
        started = time.perf_counter()
        self.client.create_collection(
            collection_name=name,
            vectors_config={
                part: models.VectorParams(size=encoder.dim, distance=models.Distance.COSINE)
                for part in (QUESTION, ANSWER)
            },
            # Qdrant weighs each token by its IDF at query time: BM25 with the tf weights.
            sparse_vectors_config={
                LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
            shard_number=self.layout.shard_number,
            replication_factor=self.layout.replication_factor,
            write_consistency_factor=self.layout.write_consistency_factor,
            metadata=plan.meta,
        )
        try:
            with warnings.catch_warnings():
                # qdrant-client's local mode (the tests' stand-in server) has no payload index.
                warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
                for field in FILTER_FIELDS:
                    self.client.create_payload_index(
                        name, field_name=field, field_schema=models.PayloadSchemaType.KEYWORD
                    )
            bar = tqdm(total=len(items), desc=f"indexing {name}", unit="faq", disable=not progress)
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                points = _points(chunk, encoder, sparse[start : start + batch_size])
                self.client.upsert(collection_name=name, points=points, wait=True)
                bar.update(len(chunk))
                if on_batch is not None:
                    on_batch(start + len(chunk), len(items))
            bar.close()
            stored = self._count(name)
            if stored != len(items):
                raise IndexBuildError(f"{name}: wrote {len(items)} entries but {stored} are stored")
            if validate is not None:
                validate(name)
            self.client.update_collection(name, metadata={"state": READY})
            self._move_alias(name)
        except BaseException as exc:
            log.error(
                "building %s failed; alias %r left as it was: %s",
                name,
                self.alias,
                exc,
                exc_info=not isinstance(exc, IndexBuildError),
            )
            try:
                self._delete_collection(name)
            except Exception:
                # Keep the original error; the half-built collection is an orphan for later.
                log.exception("could not remove the half-built %s", name)
            raise
        log.info("built %s: %d entries in %.1fs", name, len(items), time.perf_counter() - started)
        self._prune()
        return self.info(), True

    def rollback(self, to: str | None = None, *, fingerprint: str | None = None) -> tuple[str, str]:
        live, target = self._rollback_target(to, fingerprint)
        self._move_alias(target)
        log.info("alias %r moved back from %s to %s", self.alias, live, target)
        return live, target

    def upsert(self, items: Sequence[FaqItem], encoder: Encoder) -> tuple[str, list[bool]]:
        # In place: a server's collection is edited, not copied (rollback returns to the
        # version before the last build).
        live = self.check_model(encoder.fingerprint).collection
        ids = [point_id(i.id) for i in items]
        found = self.client.retrieve(live, ids=ids, with_payload=False, with_vectors=False)
        existing = {str(p.id) for p in found}
        avg_len = float(self._metadata(live).get("lexical_avg_len") or 0.0) or None
        docs, _ = Lexicon.for_encoder(encoder).documents([i.lexical_text for i in items], avg_len)
        self.client.upsert(collection_name=live, points=_points(items, encoder, docs), wait=True)
        self._mark_edited(live)
        return live, [pid not in existing for pid in ids]

    def delete(self, faq_id: str) -> str | None:
        live = self.info().collection
        pid = point_id(faq_id)
        if not self.client.retrieve(live, ids=[pid], with_payload=False, with_vectors=False):
            return None
        self.client.delete(
            collection_name=live, points_selector=models.PointIdsList(points=[pid]), wait=True
        )
        self._mark_edited(live)
        return live

    def _mark_edited(self, collection: str) -> None:
        # Merged into the existing metadata; a later build of an unchanged file is not skipped.
        self.client.update_collection(
            collection,
            metadata={"content_hash": "", "count": self._count(collection), "edited_at": now_iso()},
        )

    # --- searching ---------------------------------------------------------------------------

    def _request(self, vector: NDArray[np.float32], spec: SearchSpec) -> models.QueryRequest:
        prefetch, formula = fused_query(
            vector.astype(np.float32).tolist(),
            spec.lexical,
            spec.limit,
            qdrant_filter(spec.lang, spec.market),
            self.retrieval,
            EXACT,
        )
        return models.QueryRequest(
            prefetch=prefetch, query=formula, limit=spec.limit, with_payload=True
        )

    def search(
        self,
        vector: NDArray[np.float32],
        top_k: int,
        *,
        lang: str | None = None,
        market: str | None = None,
        lexical: tuple[int, ...] = (),
        collection: str | None = None,
    ) -> list[Hit]:
        request = self._request(vector, SearchSpec(top_k, lang, market, lexical))
        response = self.client.query_points(
            collection_name=collection or self.alias,
            query=request.query,
            prefetch=request.prefetch,
            limit=top_k,
            with_payload=True,
        )
        return [hit_from_point(p) for p in response.points]

    def _search_batch(
        self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        requests = [self._request(v, s) for v, s in zip(vectors, specs, strict=True)]
        responses = self.client.query_batch_points(collection_name=self.alias, requests=requests)
        return [[hit_from_point(p) for p in r.points] for r in responses]

    async def search_batch(
        self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="faq-qdrant")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._search_batch, vectors, specs)

    def topic_entries(self) -> None:
        # No copy in process: grouping asks the server for the wanted languages instead.
        return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.client.close()


def _points(
    items: Sequence[FaqItem], encoder: Encoder, sparse: Sequence[SparseDoc]
) -> list[models.PointStruct]:
    """Points: question and answer passage vectors, lexical weights, the entry as payload."""
    questions = encoder.encode_passages([i.question for i in items])
    answers = encoder.encode_passages([i.answer for i in items])
    return [
        models.PointStruct(
            id=point_id(item.id),
            vector={
                QUESTION: q.tolist(),
                ANSWER: a.tolist(),
                LEXICAL: models.SparseVector(indices=list(doc.indices), values=list(doc.values)),
            },
            payload=item.payload(),
        )
        for item, q, a, doc in zip(items, questions, answers, sparse, strict=True)
    ]
