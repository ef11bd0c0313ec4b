"""Versioned FAQ collections in Qdrant behind an alias that moves atomically.

A build writes `<alias>_v<N+1>`, checks it, then moves the alias in one
`update_collection_aliases` call, so readers see either the old or the new collection and a
failed build leaves the previous one serving. The collection's metadata records the model
fingerprint, so a service can refuse vectors made by a different model, and a build state:
`building` until every entry is stored and the caller's checks passed, then `ready`. A
collection still `building` that the alias does not point at is left over from a build that
was killed, and `remove_orphans` deletes it.

In local mode (qdrant-client's embedded `QdrantClient(path=...)`) the collections are plain
Python objects shared by every thread of the process, with no locking of their own: a search
reading a collection while a point is appended to it can see arrays of different lengths.
`FaqIndex` therefore takes a reader-writer lock around each Qdrant call in local mode; a
server does its own concurrency control and gets none.

In local mode, searches do not go through qdrant-client's scan either: they run on a
`MatrixSnapshot` (`matrix.py`) of the collection, a read cache keyed by the collection name and
a counter of this instance's point writes. It follows the alias (resolved per search batch),
is built eagerly by whatever moved the alias (build, rollback) and patched by single-entry
edits, so a search that starts after one of them returns sees its result.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from tqdm import tqdm

from index_builder.encoder import Encoder
from index_builder.faq import FaqItem, content_hash
from index_builder.lexical import Lexicon, SparseDoc
from index_builder.store.client import is_local
from index_builder.store.fusion import (
    ANSWER,
    HYBRID_LAYOUT,
    LEXICAL,
    QUESTION,
    Retrieval,
    fused_query,
)
from index_builder.store.locking import ReadWriteLock
from index_builder.store.matrix import MatrixSnapshot, PointVectors
from index_builder.store.records import (
    BUILDING,
    FILTER_FIELDS,
    READY,
    CollectionInfo,
    CollectionLayout,
    Hit,
    IndexBuildError,
    IndexInfo,
    IndexMissingError,
    IndexModelMismatchError,
    RollbackError,
    SearchSpec,
    UnknownCollectionError,
    hit_from_point,
    point_id,
    qdrant_filter,
)

log = logging.getLogger(__name__)


class FaqIndex:
    """One alias (e.g. `faq`) and the versioned collections behind it."""

    def __init__(
        self,
        client: QdrantClient,
        alias: str = "faq",
        keep: int = 3,
        *,
        matrix: bool = True,
        layout: CollectionLayout | None = None,
        retrieval: Retrieval | None = None,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", alias):
            raise ValueError(f"invalid alias name {alias!r}")
        self.client = client
        self.alias = alias
        self.keep = max(1, keep)
        self.layout = layout or CollectionLayout()
        self.retrieval = retrieval or Retrieval()
        # Collection name -> whether it holds the answer and lexical vectors (metadata, cached:
        # a collection's layout never changes).
        self._hybrid: dict[str, bool] = {}
        self.local = is_local(client)
        self._version_re = re.compile(rf"^{re.escape(alias)}_v(\d+)$")
        self._rw = ReadWriteLock()
        # Local mode only: a server searches with its own index (HNSW), not a Python scan.
        self.matrix = matrix and self.local
        self._snap_lock = threading.Lock()
        self._point_writes: dict[str, int] = {}
        self._snapshots: dict[str, tuple[int, MatrixSnapshot]] = {}
        # Set by the first search: a build or rollback warms the snapshot of the collection it
        # made live only for an instance that serves searches (not for a one-off CLI build).
        self._serving = False
        # Collections whose points live only in their snapshot (a replica): counted from it.
        self._adopted: set[str] = set()

    def _read(self) -> AbstractContextManager[None]:
        return self._rw.read() if self.local else nullcontext()

    def _write(self) -> AbstractContextManager[None]:
        return self._rw.write() if self.local else nullcontext()

    # --- reading -----------------------------------------------------------------------------

    def current_collection(self) -> str | None:
        with self._read():
            aliases = self.client.get_aliases().aliases
        for a in aliases:
            if a.alias_name == self.alias:
                return a.collection_name
        return None

    def _metadata(self, collection: str) -> dict[str, Any]:
        with self._read():
            return dict(self.client.get_collection(collection).config.metadata or {})

    def _count(self, collection: str) -> int:
        if collection in self._adopted:
            return len(self._snapshots[collection][1])
        with self._read():
            return self.client.count(collection, exact=True).count

    def info(self) -> IndexInfo:
        collection = self.current_collection()
        if collection is None:
            raise IndexMissingError(
                f"no index behind alias {self.alias!r}: build one with "
                "`make index` (or `faq-index build --faq data/faq.jsonl`)"
            )
        meta = self._metadata(collection)
        points = self._count(collection)
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
        lexical: tuple[int, ...] = (),
        collection: str | None = None,
    ) -> list[Hit]:
        """The nearest entries in the live collection, or in `collection` when given."""
        target = collection or self.alias
        spec = SearchSpec(top_k, lang, market, lexical)
        if self.matrix:
            snapshot = self._snapshot_of(target)
            if snapshot is not None:
                return snapshot.search_batch(vector[None, :], [spec], self.retrieval)[0]
        request = self._request(vector, spec, self._is_hybrid(target))
        with self._read():
            response = self.client.query_points(
                collection_name=target,
                query=request.query,
                prefetch=request.prefetch,
                using=request.using,
                limit=top_k,
                query_filter=request.filter,
                with_payload=True,
            )
        return [hit_from_point(p) for p in response.points]

    def search_batch(
        self, vectors: NDArray[np.float32], queries: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        """Several searches of the live collection in one call (one matrix product in local
        mode, one `query_batch_points` round trip to a server); `queries[i]` = (top_k, lang,
        market, lexical) of `vectors[i]`."""
        if self.matrix:
            snapshot = self._snapshot_of(self.alias)
            if snapshot is not None:
                return snapshot.search_batch(vectors, queries, self.retrieval)
        # Plain (top_k, lang, market) tuples are accepted too (the snapshot does the same).
        queries = [SearchSpec(*spec) for spec in queries]
        if len(queries) == 1:
            # One query: the plain query endpoint (what every Qdrant version and proxy serves).
            top_k, lang, market, lexical = queries[0]
            return [self.search(vectors[0], top_k, lang=lang, market=market, lexical=lexical)]
        hybrid = self._is_hybrid(self.alias)
        requests = [
            self._request(vector, spec, hybrid)
            for vector, spec in zip(vectors, queries, strict=True)
        ]
        with self._read():
            responses = self.client.query_batch_points(
                collection_name=self.alias, requests=requests
            )
        return [[hit_from_point(p) for p in r.points] for r in responses]

    def _request(
        self, vector: NDArray[np.float32], spec: SearchSpec, hybrid: bool
    ) -> models.QueryRequest:
        """One search as a Qdrant query: the fused formula on a collection with answer and
        lexical vectors (`fusion.py`), the question vector alone on an older one."""
        dense = vector.astype(np.float32).tolist()
        query_filter = qdrant_filter(spec.lang, spec.market)
        if not hybrid:
            return models.QueryRequest(
                query=dense, limit=spec.top_k, filter=query_filter, with_payload=True
            )
        prefetch, formula = fused_query(
            dense, spec.lexical, spec.top_k, query_filter, self.retrieval
        )
        return models.QueryRequest(
            prefetch=prefetch, query=formula, limit=spec.top_k, with_payload=True
        )

    def _is_hybrid(self, name: str) -> bool:
        collection = self.current_collection() if name == self.alias else name
        if collection is None:
            return False
        known = self._hybrid.get(collection)
        if known is None:
            try:
                known = self._metadata(collection).get("vectors") == HYBRID_LAYOUT
            except (ValueError, KeyError, UnexpectedResponse):
                return False  # no such collection: the query then fails the way Qdrant does
            self._hybrid[collection] = known
        return known

    # --- the matrix snapshot (local mode) -------------------------------------------------------

    def _snapshot_of(self, name: str) -> MatrixSnapshot | None:
        """The snapshot of `name` (the alias or a collection), built if missing or outdated;
        None when there is no such collection (the caller then fails the way Qdrant does)."""
        self._serving = True
        collection = self.current_collection() if name == self.alias else name
        if collection is None:
            return None
        cached = self._snapshots.get(collection)
        if cached is not None and cached[0] == self._point_writes.get(collection, 0):
            return cached[1]
        if not self._snap_lock.acquire(blocking=cached is None):
            # Another thread is rebuilding this collection's snapshot after a write: serve the
            # previous one meanwhile rather than queue every search behind the reload.
            return cached[1] if cached is not None else None
        try:
            return self._load_snapshot_locked(collection)
        finally:
            self._snap_lock.release()

    def _load_snapshot_locked(self, collection: str) -> MatrixSnapshot | None:
        writes = self._point_writes.get(collection, 0)
        cached = self._snapshots.get(collection)
        if cached is not None and cached[0] == writes:
            return cached[1]
        if collection not in self._collection_names():
            return None
        started = time.perf_counter()
        with self._read():
            snapshot = MatrixSnapshot.load(
                self.client, collection, answer_weight=self.retrieval.answer_weight
            )
        # Kept only if no write landed meanwhile; else the next search loads again.
        if self._point_writes.get(collection, 0) == writes:
            live = self.current_collection()
            # The live collection and the one just asked for; older ones go.
            self._snapshots = {
                name: entry for name, entry in self._snapshots.items() if name == live
            }
            self._snapshots[collection] = (writes, snapshot)
        log.info(
            "loaded %s into the search matrix: %d entries in %.0f ms",
            collection,
            len(snapshot),
            (time.perf_counter() - started) * 1000.0,
        )
        return snapshot

    def _points_written(
        self,
        collection: str,
        upserts: Sequence[models.PointStruct] = (),
        deletes: Sequence[str] = (),
    ) -> None:
        """Record a write to `collection`'s points; patch its snapshot when one is cached."""
        if not self.matrix:
            return
        with self._snap_lock:
            self._point_writes[collection] = self._point_writes.get(collection, 0) + 1
            cached = self._snapshots.pop(collection, None)
            if cached is None or not (upserts or deletes):
                return
            patched = cached[1].updated(
                [(str(p.id), PointVectors.of(p.vector), p.payload) for p in upserts], deletes
            )
            self._snapshots[collection] = (self._point_writes[collection], patched)

    def topic_entries(self) -> MatrixSnapshot | None:
        """The live collection's matrix snapshot, which finds a topic's entry in a language
        (`MatrixSnapshot.entry_in`); None against a server or with the matrix off."""
        if not self.matrix:
            return None
        return self._snapshot_of(self.alias)

    def warm(self) -> None:
        """Load the live collection's snapshot now (a service start, a replica load), so the
        first search does not pay for it; nothing to do without an alias or a matrix."""
        if not self.matrix:
            return
        self._serving = True
        live = self.current_collection()
        if live is not None:
            self._warm_snapshot(live)

    def adopt(self, snapshot: MatrixSnapshot) -> None:
        """Serve `snapshot` for its collection, whose points this client does not hold (a
        read-only replica: the client keeps only the collection's metadata and the alias)."""
        if not self.matrix:
            raise ValueError("adopt() needs the matrix search (local mode, matrix=True)")
        with self._snap_lock:
            self._serving = True
            self._snapshots[snapshot.collection] = (
                self._point_writes.get(snapshot.collection, 0),
                snapshot,
            )
            self._adopted.add(snapshot.collection)

    def _warm_snapshot(self, collection: str) -> None:
        """Build the snapshot of a collection that just went live, before searches ask."""
        if not (self.matrix and self._serving):
            return
        with self._snap_lock:
            self._load_snapshot_locked(collection)

    # --- writing -----------------------------------------------------------------------------

    def versions(self) -> list[tuple[int, str]]:
        found = []
        for name in self._collection_names():
            m = self._version_re.match(name)
            if m:
                found.append((int(m.group(1)), name))
        return sorted(found)

    def collections(self) -> list[CollectionInfo]:
        """The versioned collections, oldest first, with their state and which one is live."""
        live = self.current_collection()
        out = []
        for version, name in self.versions():
            meta = self._metadata(name)
            out.append(
                CollectionInfo(
                    name=name,
                    version=version,
                    points=self._count(name),
                    # Collections written before build states existed were only kept when whole.
                    state=str(meta.get("state", READY)),
                    fingerprint=str(meta.get("fingerprint", "")),
                    content_hash=str(meta.get("content_hash", "")),
                    created_at=str(meta.get("created_at", "")),
                    live=name == live,
                )
            )
        return out

    def build(
        self,
        items: Sequence[FaqItem],
        encoder: Encoder,
        *,
        batch_size: int = 64,
        skip_if_unchanged: bool = False,
        progress: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
        validate: Callable[[str], None] | None = None,
    ) -> tuple[IndexInfo, bool]:
        """Embed `items` into a new collection and move the alias to it.

        Returns the live index and whether a new collection was built. On any failure the new
        collection is removed and the alias keeps pointing where it did.

        `on_batch(done, total)` is called after each stored batch (raising in it stops the
        build). `validate(collection)` runs once every entry is stored, before the alias moves;
        raising in it refuses the new collection, which is then deleted like any failed build.
        """
        if not items:
            raise IndexBuildError("no FAQ items to index")
        if any(name == self.alias for name in self._collection_names()):
            # A collection named like the alias would shadow it; refuse rather than guess.
            raise IndexBuildError(
                f"a collection is named {self.alias!r} like the alias; rename or delete it"
            )
        digest = content_hash(items)
        if skip_if_unchanged and self.current_collection() is not None:
            live = self.info()
            # A collection from before answers were indexed is rebuilt in the current layout.
            if (
                live.fingerprint == encoder.fingerprint
                and live.content_hash == digest
                and self._is_hybrid(live.collection)
            ):
                log.info(
                    "index %s is up to date (%d entries); nothing to do",
                    live.collection,
                    live.points,
                )
                return live, False

        lexicon = Lexicon.for_encoder(encoder)
        # BM25 weighs a document's tokens against the average length of the collection's.
        sparse, avg_len = lexicon.documents([i.lexical_text for i in items])
        existing = self.versions()
        version = (existing[-1][0] if existing else 0) + 1
        name = f"{self.alias}_v{version}"
        started = time.perf_counter()
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self._write():
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
                # The cluster layout is a server's business; local mode has one shard.
                shard_number=None if self.local else self.layout.shard_number,
                replication_factor=None if self.local else self.layout.replication_factor,
                write_consistency_factor=(
                    None if self.local else self.layout.write_consistency_factor
                ),
                metadata={
                    "fingerprint": encoder.fingerprint,
                    "model": encoder.name,
                    "content_hash": digest,
                    "created_at": created_at,
                    "count": len(items),
                    "vectors": HYBRID_LAYOUT,
                    "lexical": lexicon.name,
                    "lexical_avg_len": avg_len,
                    # Stays `building` if this process dies before the end: see remove_orphans.
                    "state": BUILDING,
                },
            )
        try:
            with warnings.catch_warnings():
                # Local mode scans payloads anyway and warns; a server uses the index.
                warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
                for field in FILTER_FIELDS:
                    with self._write():
                        self.client.create_payload_index(
                            name, field_name=field, field_schema=models.PayloadSchemaType.KEYWORD
                        )
            bar = tqdm(total=len(items), desc=f"indexing {name}", unit="faq", disable=not progress)
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                points = _points(chunk, encoder, sparse[start : start + batch_size])
                with self._write():
                    self.client.upsert(collection_name=name, points=points, wait=True)
                self._points_written(name)
                bar.update(len(chunk))
                if on_batch is not None:
                    on_batch(start + len(chunk), len(items))
            bar.close()
            stored = self._count(name)
            if stored != len(items):
                raise IndexBuildError(f"{name}: wrote {len(items)} entries but {stored} are stored")
            if validate is not None:
                validate(name)
            self._update_metadata(name, {"state": READY})
            self._move_alias(name)
        except BaseException as exc:
            # A refusal (IndexBuildError, e.g. a quality gate) is expected; anything else is a bug
            # or an outage and gets its traceback.
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
        # Outside the try: the alias has moved, a failure here must not delete the live collection.
        self._warm_snapshot(name)
        self._prune()
        return self.info(), True

    def _collection_names(self) -> list[str]:
        with self._read():
            return [c.name for c in self.client.get_collections().collections]

    def _update_metadata(self, collection: str, changes: dict[str, Any]) -> None:
        # Merged into the existing metadata, by the server and by local mode alike.
        with self._write():
            self.client.update_collection(collection, metadata=changes)

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
        with self._write():
            self.client.update_collection_aliases(change_aliases_operations=ops)

    def _delete_collection(self, name: str) -> None:
        with self._write():
            self.client.delete_collection(name)
        self._points_written(name)

    def _prune(self) -> None:
        live = self.current_collection()
        old = [name for _, name in self.versions() if name != live]
        for name in old[: max(0, len(old) - (self.keep - 1))]:
            log.info("removing old collection %s", name)
            self._delete_collection(name)

    # --- recovery and rollback ---------------------------------------------------------------

    def orphans(self, *, min_age_s: float = 0.0) -> list[str]:
        """What killed builds left behind, oldest first.

        An orphan is a collection the alias does not point at that is still marked `building`,
        or, for collections written before build states were recorded, one newer than the
        alias target. A collection that a rollback moved away from is `ready` and is kept, so
        it can be rolled forward to. `min_age_s` spares younger ones, which another process may
        still be writing: possible against a server, never in local mode, where one process
        holds the directory.
        """
        live = self.current_collection()
        versions = self.versions()
        live_version = next((v for v, n in versions if n == live), None)
        now = datetime.now(UTC)
        found = []
        for version, name in versions:
            if name == live:
                continue
            meta = self._metadata(name)
            state = meta.get("state")
            legacy_newer = state is None and live_version is not None and version > live_version
            if state != BUILDING and not legacy_newer:
                continue
            if min_age_s > 0 and _age_s(meta.get("created_at"), now) < min_age_s:
                log.info("%s is still being built, or only just stopped: kept for now", name)
                continue
            found.append(name)
        return found

    def remove_orphans(self, *, min_age_s: float = 0.0) -> list[str]:
        """Delete `orphans(min_age_s=...)`; returns the names removed."""
        removed = self.orphans(min_age_s=min_age_s)
        for name in removed:
            log.warning(
                "removing %s: left half-built by an interrupted build (%d entries stored)",
                name,
                self._count(name),
            )
            self._delete_collection(name)
        return removed

    def rollback(self, to: str | None = None, *, fingerprint: str | None = None) -> tuple[str, str]:
        """Move the alias to `to`, or to the newest kept collection older than the live one.

        Returns (previous alias target, new alias target). Refuses (RollbackError) when there is
        none, when the collection is half-built, or when it was built by another model than
        `fingerprint`; UnknownCollectionError when `to` is not a kept collection.
        """
        live = self.current_collection()
        kept = self.collections()
        if to is None:
            if live is None:
                raise RollbackError(f"nothing to roll back: alias {self.alias!r} points nowhere")
            live_version = next(c.version for c in kept if c.name == live)
            older = [c for c in kept if c.version < live_version and c.state == READY]
            if not older:
                raise RollbackError(
                    f"nothing to roll back to: no kept collection older than {live} "
                    f"(kept: {', '.join(c.name for c in kept)})"
                )
            target = older[-1]
        else:
            found = [c for c in kept if c.name == to]
            if not found:
                raise UnknownCollectionError(
                    f"no collection {to!r} behind alias {self.alias!r}; kept: "
                    f"{', '.join(c.name for c in kept) or 'none'}"
                )
            target = found[0]
            if target.name == live:
                raise RollbackError(f"{to} is already live")
            if target.state != READY:
                raise RollbackError(f"{to} is {target.state}, not a complete index")
        if fingerprint is not None and target.fingerprint != fingerprint:
            raise RollbackError(
                f"{target.name} was built by model {target.fingerprint or 'unknown'!r} but the "
                f"service runs {fingerprint!r}"
            )
        self._move_alias(target.name)
        self._warm_snapshot(target.name)
        log.info("alias %r moved back from %s to %s", self.alias, live, target.name)
        return live or "", target.name

    # --- single-entry edits on the live collection --------------------------------------------

    def upsert(self, items: Sequence[FaqItem], encoder: Encoder) -> tuple[str, list[bool]]:
        """Embed `items` and write them into the live collection, replacing entries by id.

        Returns the live collection and, per item, whether it was new. The collection's
        content hash is cleared, so a later build of an unchanged file is not skipped.
        """
        live = self.check_model(encoder.fingerprint).collection
        ids = [point_id(i.id) for i in items]
        with self._read():
            found = self.client.retrieve(live, ids=ids, with_payload=False, with_vectors=False)
        existing = {str(p.id) for p in found}
        if self._is_hybrid(live):
            lexicon = Lexicon.for_encoder(encoder)
            avg_len = float(self._metadata(live).get("lexical_avg_len") or 0.0) or None
            points = _points(
                items, encoder, lexicon.documents([i.lexical_text for i in items], avg_len)[0]
            )
        else:
            vectors = encoder.encode_passages([i.question for i in items])
            points = [
                models.PointStruct(id=pid, vector=v.tolist(), payload=i.payload())
                for pid, i, v in zip(ids, items, vectors, strict=True)
            ]
        with self._write():
            self.client.upsert(collection_name=live, points=points, wait=True)
        self._points_written(live, upserts=points)
        self._mark_edited(live)
        return live, [pid not in existing for pid in ids]

    def delete(self, faq_id: str) -> str | None:
        """Remove one entry from the live collection; its name, or None if the id is absent."""
        live = self.info().collection
        pid = point_id(faq_id)
        with self._read():
            found = self.client.retrieve(live, ids=[pid], with_payload=False, with_vectors=False)
        if not found:
            return None
        with self._write():
            self.client.delete(
                collection_name=live,
                points_selector=models.PointIdsList(points=[pid]),
                wait=True,
            )
        self._points_written(live, deletes=[pid])
        self._mark_edited(live)
        return live

    def _mark_edited(self, collection: str) -> None:
        self._update_metadata(
            collection,
            {
                "content_hash": "",
                "count": self._count(collection),
                "edited_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )


def _points(
    items: Sequence[FaqItem], encoder: Encoder, sparse: Sequence[SparseDoc]
) -> list[models.PointStruct]:
    """Points of the hybrid layout: question and answer passage vectors, lexical weights."""
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


def _age_s(created_at: object, now: datetime) -> float:
    try:
        created = datetime.fromisoformat(str(created_at))
    except ValueError:
        return float("inf")  # no usable timestamp: old enough to judge
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds()
