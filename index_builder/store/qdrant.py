"""The Qdrant server backend (`FAQ_QDRANT_URL`): each version a Qdrant collection, the alias
Qdrant's own (`update_collection_aliases` moves it atomically), the fused formula evaluated by
Qdrant's query API (prefetch + formula: `fusion.fused_query`).

Every prefetch is an exact search (`SearchParams(exact=True)`): HNSW misses the exact best hit
too often on these vectors, and a server scales an exact search by shards. An edit copies the
live collection into the next version with the change, in the points' first order (`_row`).
Every call waits at most `timeout_s`; reads are tried again once within that deadline (`_read`).
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import math
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from index_builder.faq import FaqItem
from index_builder.model.encoder import Encoder
from index_builder.store.base import (
    FILTER_FIELDS,
    Chunks,
    Hit,
    IndexBuildError,
    Row,
    SearchSpec,
    Store,
    edited,
)
from index_builder.store.fusion import ANSWER, LEXICAL, QUESTION, Retrieval, fused_query
from index_builder.store.lexical import SparseDoc

log = logging.getLogger(__name__)

# Point ids must be UUIDs or integers in Qdrant; derive them from the FAQ id so that an upsert
# of the same entry replaces it instead of duplicating it.
_POINT_NAMESPACE = uuid.UUID("6f1d2a52-8e8c-4c33-9d0b-5d9f3b1f6a10")
EXACT = models.SearchParams(exact=True)
# Threads that wait on the server's answers to search batches.
SEARCH_THREADS = 8
# A read is tried at most this often, the second try after a short pause: a dropped connection,
# a restarting node's 503 or a proxy's 502 is often gone by then.
READ_TRIES = 2
RETRY_PAUSE_S = 0.05
# A second try with less time than this left could not get an answer: not started.
MIN_TRY_S = 0.05

T = TypeVar("T")

# Each point's place in its version's order (payload): the build's order, an edit's new entries
# after it, as the embedded store's rows; the metadata's `next_row` is the next free one.
ROW = "_row"
# Points read and written per call when an edit copies the live version (held in memory at once).
COPY_PAGE = 256

# When the read under way in this thread must end; the client's middleware
# (`_timeout_middleware`) gives each request what is left of it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "qdrant_read_deadline", default=None
)
# Hosts already warned about receiving the API key over plain http: once per process.
_warned_plain_http: set[str] = set()


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
    return Row.from_payload(point.id, point.payload).hit(float(point.score))


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
        timeout_s: float = 5.0,
    ) -> None:
        self._init_versions(alias, keep)
        self.client = client
        self.layout = layout or CollectionLayout()
        self.retrieval = retrieval or Retrieval()
        self._pool: ThreadPoolExecutor | None = None
        self.search_concurrency = SEARCH_THREADS
        self.timeout_s = timeout_s

    @classmethod
    def connect(
        cls, url: str, api_key: str | None = None, timeout_s: float = 5.0, **kw: Any
    ) -> QdrantStore:
        # The client does not connect until the first call: a server down at startup only makes
        # the service not ready.
        if api_key:
            _warn_plain_http(url)
        with warnings.catch_warnings():
            # Said once, in the log, and only for a remote host (`_warn_plain_http`).
            warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
            # qdrant-client takes whole seconds (it rounds 0.5 up to 1); the middleware sets
            # every REST request's own timeout instead, fractions kept.
            client = QdrantClient(url=url, api_key=api_key or None, timeout=math.ceil(timeout_s))
        client.http.client.add_middleware(_timeout_middleware(timeout_s))
        return cls(client, timeout_s=timeout_s, **kw)

    def _read(self, call: Callable[[], T]) -> T:
        """`call`, a read (safe to repeat), tried again after a connection error, a timeout or
        a 5xx while time is left: every try shares one deadline, `timeout_s` from now (or the
        enclosing read's), so a slow server costs one timeout, never one per try."""
        outer = _DEADLINE.get()
        deadline = time.monotonic() + self.timeout_s
        token = _DEADLINE.set(deadline if outer is None else min(outer, deadline))
        try:
            tries = 1
            while True:
                try:
                    return call()
                except (ResponseHandlingException, UnexpectedResponse) as exc:
                    left = deadline - time.monotonic() - RETRY_PAUSE_S
                    if tries >= READ_TRIES or left < MIN_TRY_S or not _transient(exc):
                        raise
                    log.warning("Qdrant read failed, trying again: %s", _describe(exc))
                time.sleep(RETRY_PAUSE_S)
                tries += 1
        finally:
            _DEADLINE.reset(token)

    # --- primitives --------------------------------------------------------------------------

    def _names(self) -> list[str]:
        return [c.name for c in self._read(self.client.get_collections).collections]

    def _metadata(self, collection: str) -> dict[str, Any]:
        info = self._read(lambda: self.client.get_collection(collection))
        return dict(info.config.metadata or {})

    def _set_metadata(self, collection: str, meta: dict[str, Any]) -> None:
        self.client.update_collection(collection, metadata=meta)

    def _count(self, collection: str) -> int:
        return self._read(lambda: self.client.count(collection, exact=True)).count

    def current_collection(self) -> str | None:
        for a in self._read(self.client.get_aliases).aliases:
            if a.alias_name == self.alias:
                return a.collection_name
        return None

    def _move_alias(self, collection: str) -> None:
        create = models.CreateAlias(collection_name=collection, alias_name=self.alias)
        ops: list[Any] = [models.CreateAliasOperation(create_alias=create)]
        if self.current_collection() is not None:
            delete = models.DeleteAlias(alias_name=self.alias)
            ops.insert(0, models.DeleteAliasOperation(delete_alias=delete))
        # One call: Qdrant applies the delete and the create atomically.
        self.client.update_collection_aliases(change_aliases_operations=ops)

    def _delete_collection(self, name: str) -> None:
        self.client.delete_collection(name)

    # --- writing -----------------------------------------------------------------------------

    def _write(
        self,
        name: str,
        items: Sequence[FaqItem],
        encoder: Encoder,
        sparse: list[SparseDoc],
        chunks: Chunks,
    ) -> Mapping[str, Any]:
        for start, chunk in chunks:
            points = _points(chunk, encoder, sparse[start : start + len(chunk)], start)
            self.client.upsert(collection_name=name, points=points, wait=True)
        self._check_stored(name, len(items))
        return {"next_row": len(items)}

    def _check_stored(self, name: str, written: int) -> int:
        stored = self._count(name)
        if stored != written:
            raise IndexBuildError(f"{name}: wrote {written} entries but {stored} are stored")
        return stored

    def _create(self, name: str, meta: dict[str, Any], dim: int) -> None:
        """An empty collection with this service's vectors, layout, metadata and payload
        indexes."""
        self.client.create_collection(
            collection_name=name,
            vectors_config={
                part: models.VectorParams(size=dim, distance=models.Distance.COSINE)
                for part in (QUESTION, ANSWER)
            },
            # Qdrant weighs each token by its IDF at query time: BM25 with the tf weights.
            sparse_vectors_config={
                LEXICAL: models.SparseVectorParams(modifier=models.Modifier.IDF)
            },
            shard_number=self.layout.shard_number,
            replication_factor=self.layout.replication_factor,
            write_consistency_factor=self.layout.write_consistency_factor,
            metadata=meta,
        )
        with self._discarded_on_failure(name), warnings.catch_warnings():
            # qdrant-client's local mode (the tests' stand-in server) has no payload index.
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for field in FILTER_FIELDS:
                self.client.create_payload_index(
                    name, field_name=field, field_schema=models.PayloadSchemaType.KEYWORD
                )
            # A server scrolls by a payload field only when it has a range index.
            self.client.create_payload_index(
                name, field_name=ROW, field_schema=models.PayloadSchemaType.INTEGER
            )

    def _edited_copy(
        self,
        live: str,
        changed: Sequence[models.PointStruct],
        dropped: frozenset[str] = frozenset(),
    ) -> str:
        """An edit as a new version: the live version's points copied into the next one in
        their order, each point of `changed` in its entry's place (a new entry after the rest),
        `dropped` left out; then the alias moves. Every point is read and written once, a page
        of COPY_PAGE at a time: a change to many entries is a reindex."""
        info = self._read(lambda: self.client.get_collection(live))
        vectors = info.config.params.vectors
        if not isinstance(vectors, dict) or QUESTION not in vectors:
            raise IndexBuildError(f"{live} has no {QUESTION!r} vector: rebuild it")
        meta = dict(info.config.metadata or {})
        name = self._next_name()
        copy = partial(self._copy, live, name, meta.get("next_row"), changed, dropped)
        self._new_version(name, edited(meta, live), vectors[QUESTION].size, copy)
        return name

    def _copy(
        self,
        live: str,
        name: str,
        next_row: object,
        changed: Sequence[models.PointStruct],
        dropped: frozenset[str],
    ) -> Mapping[str, Any]:
        """Copy `live` into `name` with the edit (`_edited_copy`); metadata to add."""
        # A version written before `_row` existed has no `next_row`: its points numbered as read.
        ordered = isinstance(next_row, int)
        by_id = {str(p.id): p for p in changed}
        written = row_end = 0
        for records in self._pages(live, ordered):
            points = []
            for record in records:
                payload = dict(record.payload or {})
                row = int(payload[ROW]) if ordered else row_end
                row_end = max(row_end, row + 1)
                if str(record.id) in dropped:
                    continue
                point = by_id.pop(str(record.id), None) or models.PointStruct(
                    id=record.id, vector=record.vector or {}, payload=payload
                )
                points.append(_at_row(point, row))
            if points:
                self.client.upsert(collection_name=name, points=points, wait=True)
                written += len(points)
        if isinstance(next_row, int):
            row_end = max(row_end, next_row)
        added = [_at_row(p, row_end + k) for k, p in enumerate(by_id.values())]
        if added:
            self.client.upsert(collection_name=name, points=added, wait=True)
        stored = self._check_stored(name, written + len(added))
        return {"count": stored, "next_row": row_end + len(added)}

    def _pages(self, collection: str, ordered: bool) -> Iterator[list[models.Record]]:
        """Every point of `collection` with payload and vectors, a page at a time: by `_row`
        when it has one (a scroll by value pages by its start, `_row` being unique), else by
        id (the only order a version written before `_row` can give)."""
        scroll = partial(
            self.client.scroll, collection, limit=COPY_PAGE, with_payload=True, with_vectors=True
        )
        start, offset = 0, None
        while True:
            if ordered:
                by_row = models.OrderBy(key=ROW, start_from=start)
                records, _ = self._read(partial(scroll, order_by=by_row))
            else:
                records, offset = self._read(partial(scroll, offset=offset))
            if records:
                yield records
            if ordered and len(records) == COPY_PAGE:
                start = int((records[-1].payload or {})[ROW]) + 1
            elif ordered or offset is None:
                return

    def upsert(self, items: Sequence[FaqItem], encoder: Encoder) -> tuple[str, list[bool]]:
        live = self.check_model(encoder.fingerprint).collection
        ids = [point_id(i.id) for i in items]
        found = self._read(
            lambda: self.client.retrieve(live, ids=ids, with_payload=False, with_vectors=False)
        )
        existing = {str(p.id) for p in found}
        points = _points(items, encoder, self._edit_sparse(live, items, encoder))
        return self._edited_copy(live, points), [pid not in existing for pid in ids]

    def delete(self, faq_id: str) -> str | None:
        live = self.info().collection
        pid = point_id(faq_id)
        found = self._read(
            lambda: self.client.retrieve(live, ids=[pid], with_payload=False, with_vectors=False)
        )
        return self._edited_copy(live, [], frozenset({pid})) if found else None

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

    def _search_batch(
        self,
        vectors: NDArray[np.float32],
        specs: Sequence[SearchSpec],
        collection: str | None = None,
    ) -> list[list[Hit]]:
        requests = [self._request(v, s) for v, s in zip(vectors, specs, strict=True)]
        responses = self._read(
            lambda: self.client.query_batch_points(
                collection_name=collection or self.alias, requests=requests
            )
        )
        return [[hit_from_point(p) for p in r.points] for r in responses]

    def search_many(
        self,
        vectors: NDArray[np.float32],
        specs: Sequence[SearchSpec],
        collection: str | None = None,
    ) -> list[list[Hit]]:
        # In requests of at most this many queries: one round trip each, none too large.
        step = 256
        return [
            hits
            for start in range(0, len(specs), step)
            for hits in self._search_batch(
                vectors[start : start + step], specs[start : start + step], collection
            )
        ]

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


def _transient(exc: ResponseHandlingException | UnexpectedResponse) -> bool:
    """Whether a second try may succeed: the connection failed or timed out (not an answer
    that could not be parsed), or the server or a proxy in front of it answered 5xx."""
    if isinstance(exc, UnexpectedResponse):
        return (exc.status_code or 0) >= 500
    return isinstance(exc.source, httpx.TransportError)


def _describe(exc: ResponseHandlingException | UnexpectedResponse) -> str:
    if isinstance(exc, UnexpectedResponse):
        return f"HTTP {exc.status_code}"
    return f"{type(exc.source).__name__}: {exc.source}"


Send = Callable[[httpx.Request], httpx.Response]


def _timeout_middleware(timeout_s: float) -> Callable[[httpx.Request, Send], httpx.Response]:
    """Sets each REST request's timeout (httpx's `timeout` request extension, applied to each
    phase): what is left of the read under way (`_DEADLINE`), else `timeout_s`."""

    def middleware(request: httpx.Request, call_next: Send) -> httpx.Response:
        deadline = _DEADLINE.get()
        budget = timeout_s if deadline is None else max(deadline - time.monotonic(), MIN_TRY_S)
        request.extensions["timeout"] = httpx.Timeout(budget).as_dict()
        return call_next(request)

    return middleware


def _warn_plain_http(url: str) -> None:
    """Log once per host when the API key would cross the network unencrypted: plain http
    (qdrant-client's default without a scheme) to a host other than this machine."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or ""
    if parts.scheme != "http" or _is_local(host) or host in _warned_plain_http:
        return
    _warned_plain_http.add(host)
    log.warning(
        "the Qdrant API key is sent to %s over plain http, readable on the network: "
        "use an https:// URL",
        host,
    )


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _at_row(point: models.PointStruct, row: int) -> models.PointStruct:
    return point.model_copy(update={"payload": {**(point.payload or {}), ROW: row}})


def _points(
    items: Sequence[FaqItem], encoder: Encoder, sparse: Sequence[SparseDoc], first_row: int = 0
) -> list[models.PointStruct]:
    """Points: passage vectors, lexical weights, the entry as payload, and from `first_row` on
    each one's place in the version's order (an edit's are placed by the copy)."""
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
            payload={**item.payload(), ROW: first_row + k},
        )
        for k, (item, q, a, doc) in enumerate(zip(items, questions, answers, sparse, strict=True))
    ]
