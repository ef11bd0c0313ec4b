"""The store's interface (`Store`), what it hands out and raises, and the version rules both
backends share.

An index is an alias (e.g. `faq`) over versioned collections (`faq_v1`, `faq_v2`, ...). A build
writes `<alias>_v<N+1>` as `building`, checks it, marks it `ready` and moves the alias in one
atomic step, so a failed build leaves the previous version serving. A `building` version the
alias does not point at was left by a killed build (an orphan). An edit is a version too, so a
`ready` version never changes and a rollback undoes exactly the last build or edit.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from index_builder.faq import FaqItem, content_hash
from index_builder.store.lexical import Lexicon, SparseDoc

if TYPE_CHECKING:
    from index_builder.model.encoder import Encoder
    from index_builder.store.matrix import MatrixSnapshot

log = logging.getLogger(__name__)

FILTER_FIELDS = ("lang", "market")


class FaqIndexError(RuntimeError):
    """Base class for index problems the service reports as 503."""


class IndexMissingError(FaqIndexError):
    pass


class IndexModelMismatchError(FaqIndexError):
    pass


class IndexBuildError(FaqIndexError):
    pass


class RollbackError(FaqIndexError):
    """There is no collection to roll back to, or the one named cannot serve."""


BUILDING = "building"
READY = "ready"


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
    # The abstain threshold picked for this FAQ at build time
    # (`index_builder.indexing.faq_calibration`).
    abstain: dict[str, Any] | None = None


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


# Not frozen: a frozen dataclass sets each field through object.__setattr__, several times the
# cost, and a search builds dozens of hits per query.
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


@dataclass(frozen=True)
class Row:
    """The hit fields of one entry (everything but the score), read once from its payload."""

    id: str
    question: str
    answer: str
    lang: str
    market: str | None
    tags: tuple[str, ...]
    topic: str

    @classmethod
    def from_payload(cls, point_id: object, payload: dict[str, Any] | None) -> Row:
        # The payload layout FaqItem.payload() writes (both backends read it here).
        p = payload or {}
        market = p.get("market")
        return cls(
            id=str(p.get("id", point_id)),
            question=str(p.get("question", "")),
            answer=str(p.get("answer", "")),
            lang=str(p.get("lang", "")),
            market=None if market is None else str(market),
            tags=tuple(p.get("tags") or ()),
            topic=str(p.get("topic") or ""),
        )

    def hit(self, score: float) -> Hit:
        return Hit(
            id=self.id,
            question=self.question,
            answer=self.answer,
            lang=self.lang,
            market=self.market,
            tags=list(self.tags),
            score=score,
            topic=self.topic,
        )


class SearchSpec(NamedTuple):
    """One search of a batch: how many hits (`limit`), the filters, and the query's lexical
    token ids (`index_builder.store.lexical`; empty: no lexical part)."""

    limit: int
    lang: str | None = None
    market: str | None = None
    lexical: tuple[int, ...] = ()


# `validate(collection)` runs once every entry is stored, before the alias moves; raising refuses
# the collection. What `annotate(collection)` returns is added to the collection's metadata.
# `on_batch(done, total)` runs after each stored batch; raising stops the build.
Validate = Callable[[str], None]
Annotate = Callable[[str], Mapping[str, Any]]
OnBatch = Callable[[int, int], None]
# A build's entries in batches: (position of the first, the batch).
Chunks = Iterator[tuple[int, Sequence[FaqItem]]]


class Store(ABC):
    """One alias and its versioned collections, whichever backend holds them: the version rules
    (naming, building, rollback, pruning, orphans) over a backend's primitives."""

    alias: str
    keep: int
    # Search batches worth running at once (threads of an in-process scan, server round trips).
    search_concurrency: int
    # Half-built collections younger than this are spared by a startup cleanup: another process
    # may still be writing them (a backend that knows better sets 0).
    orphan_min_age_s: float = 600.0

    def _init_versions(self, alias: str, keep: int) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", alias):
            raise ValueError(f"invalid alias name {alias!r}")
        self.alias = alias
        self.keep = max(1, keep)
        self._version_re = re.compile(rf"^{re.escape(alias)}_v(\d+)$")

    # --- primitives ------------------------------------------------------------------------------

    @abstractmethod
    def _names(self) -> list[str]: ...

    @abstractmethod
    def _metadata(self, collection: str) -> dict[str, Any]: ...

    @abstractmethod
    def _set_metadata(self, collection: str, meta: dict[str, Any]) -> None: ...

    @abstractmethod
    def _count(self, collection: str) -> int: ...

    @abstractmethod
    def current_collection(self) -> str | None: ...

    @abstractmethod
    def _move_alias(self, collection: str) -> None: ...

    @abstractmethod
    def _create(self, name: str, meta: dict[str, Any], dim: int) -> None:
        """A new empty version with metadata `meta`; fails, leaving nothing, when `name` exists
        (another writer's)."""

    @abstractmethod
    def _write(
        self,
        name: str,
        items: Sequence[FaqItem],
        encoder: Encoder,
        sparse: list[SparseDoc],
        chunks: Chunks,
    ) -> Mapping[str, Any]:
        """Embed and store a build's entries in the new version `name`; metadata to add."""

    @abstractmethod
    def _delete_collection(self, name: str) -> None: ...

    def _writing(self) -> AbstractContextManager[None]:
        """The write lock, where the backend has one."""
        return nullcontext()

    def _warm(self, name: str) -> None:
        """Load `name`, just made live, where the backend serves from memory."""
        return None

    @abstractmethod
    def upsert(self, items: Sequence[FaqItem], encoder: Encoder) -> tuple[str, list[bool]]:
        """Replace entries by id or add them, as a new version: the live one with the change,
        entries in its order (a replaced one in its place, a new one after the rest), then the
        alias moved; the version before is left as it was, so a rollback undoes the edit.
        (The new live collection, per item whether new.)"""

    @abstractmethod
    def delete(self, faq_id: str) -> str | None:
        """Remove one entry, as a new version (as `upsert`); the new live collection, or None
        when the id is absent (nothing written)."""

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
        """The best entries of the live collection (or `collection`), blocking."""
        spec = SearchSpec(top_k, lang, market, lexical)
        return self.search_many(vector[None, :], [spec], collection)[0]

    @abstractmethod
    def search_many(
        self,
        vectors: NDArray[np.float32],
        specs: Sequence[SearchSpec],
        collection: str | None = None,
    ) -> list[list[Hit]]:
        """Several searches of the live collection or `collection` (a version not live yet,
        too), blocking: what a build's checks score the new version with."""

    @abstractmethod
    async def search_batch(
        self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        """Several searches of the live collection, awaited by the request path."""

    @abstractmethod
    def topic_entries(self) -> MatrixSnapshot | None:
        """The loaded live version for grouping's lookups; None for a server."""

    @abstractmethod
    def close(self) -> None: ...

    def warm(self) -> None:
        """Load what searches need before the first one asks (nothing for a server)."""
        return None

    # --- shared rules ----------------------------------------------------------------------------

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
        annotate: Annotate | None = None,
    ) -> tuple[IndexInfo, bool]:
        """Embed `items` into a new version and move the alias to it; (live index, whether a
        version was built: not when `skip_if_unchanged` and the live one has the same model and
        content). On any failure the new version is removed and the alias stays."""
        if not items:
            raise IndexBuildError("no FAQ items to index")
        digest = content_hash(items)
        with self._writing():
            if skip_if_unchanged and self.current_collection() is not None:
                live = self.info()
                if live.fingerprint == encoder.fingerprint and live.content_hash == digest:
                    log.info("index %s is up to date (%d entries)", live.collection, live.points)
                    return live, False
            started = time.perf_counter()
            lexicon = Lexicon.for_encoder(encoder)
            # BM25 weighs a document's tokens against the average length of the collection's.
            sparse, avg_len = lexicon.documents([i.lexical_text for i in items])
            meta = {
                "fingerprint": encoder.fingerprint,
                "model": encoder.name,
                "content_hash": digest,
                "count": len(items),
                "lexical": lexicon.name,
                "lexical_avg_len": avg_len,
            }
            name = self._next_name()
            desc = f"indexing {name}" if progress else None
            chunks = in_batches(items, batch_size, on_batch, desc)
            write = partial(self._write, name, items, encoder, sparse, chunks)
            self._new_version(name, meta, encoder.dim, write, validate, annotate)
        log.info("built %s: %d entries in %.1fs", name, len(items), time.perf_counter() - started)
        return self.info(), True

    def _new_version(
        self,
        name: str,
        meta: Mapping[str, Any],
        dim: int,
        write: Callable[[], Mapping[str, Any]],
        validate: Validate | None = None,
        annotate: Annotate | None = None,
    ) -> None:
        """Create version `name` (`building` until it is complete: see `orphans`), `write` its
        entries, check it, mark it `ready`, move the alias to it and prune; on any failure the
        new version is removed and the alias stays."""
        meta = {**meta, "created_at": now_iso(), "state": BUILDING}
        self._create(name, meta, dim)
        with self._discarded_on_failure(name):
            meta.update(write())
            if validate is not None:
                validate(name)
            if annotate is not None:
                meta.update(annotate(name))
            self._set_metadata(name, {**meta, "state": READY})
            self._move_alias(name)
        self._prune()
        self._warm(name)

    def _edit_sparse(
        self, live: str, items: Sequence[FaqItem], encoder: Encoder
    ) -> list[SparseDoc]:
        """The lexical vectors of an edit's entries, weighed against the live version's length."""
        avg_len = float(self._metadata(live).get("lexical_avg_len") or 0.0) or None
        return Lexicon.for_encoder(encoder).documents([i.lexical_text for i in items], avg_len)[0]

    @contextmanager
    def _discarded_on_failure(self, name: str) -> Iterator[None]:
        """Remove the new version `name` when the block fails (the alias stays where it was),
        and re-raise the block's error."""
        try:
            yield
        except BaseException as exc:
            log.error(
                "writing %s failed; alias %r left as it was: %s",
                name,
                self.alias,
                exc,
                exc_info=not isinstance(exc, IndexBuildError),
            )
            try:
                self._delete_collection(name)
            except Exception:
                # Keep the original error; the half-built version is an orphan for later.
                log.exception("could not remove the half-built %s", name)
            raise

    def info(self) -> IndexInfo:
        collection = self.current_collection()
        if collection is None:
            raise IndexMissingError(
                f"no index behind alias {self.alias!r}: build one with "
                "`make index` (or `faq-index build --faq data/faq.jsonl`)"
            )
        meta = self._metadata(collection)
        return IndexInfo(
            alias=self.alias,
            collection=collection,
            fingerprint=str(meta.get("fingerprint", "")),
            model=str(meta.get("model", "")),
            content_hash=str(meta.get("content_hash", "")),
            points=self._count(collection),
            created_at=str(meta.get("created_at", "")),
            abstain=abstain if isinstance(abstain := meta.get("abstain"), dict) else None,
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

    def versions(self) -> list[tuple[int, str]]:
        matches = (self._version_re.match(name) for name in self._names())
        return sorted((int(m.group(1)), m.group(0)) for m in matches if m)

    def _next_name(self) -> str:
        if self.alias in self._names():
            # A collection named like the alias would shadow it; refuse rather than guess.
            raise IndexBuildError(
                f"a collection is named {self.alias!r} like the alias; rename or delete it"
            )
        existing = self.versions()
        return f"{self.alias}_v{(existing[-1][0] if existing else 0) + 1}"

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
                    state=str(meta.get("state", READY)),
                    fingerprint=str(meta.get("fingerprint", "")),
                    content_hash=str(meta.get("content_hash", "")),
                    created_at=str(meta.get("created_at", "")),
                    live=name == live,
                )
            )
        return out

    def _prune(self) -> None:
        live = self.current_collection()
        old = [name for _, name in self.versions() if name != live]
        for name in old[: max(0, len(old) - (self.keep - 1))]:
            log.info("removing old collection %s", name)
            self._delete_collection(name)

    def orphans(self, *, min_age_s: float = 0.0) -> list[str]:
        """What killed builds left behind, oldest first: collections the alias does not point
        at that are still `building` (a version a rollback moved away from is `ready`, kept to
        roll forward to). `min_age_s` spares younger ones, which another process may still be
        writing."""
        live = self.current_collection()
        now = datetime.now(UTC)
        found = []
        for _, name in self.versions():
            if name == live:
                continue
            meta = self._metadata(name)
            if meta.get("state") != BUILDING:
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
            log.warning("removing %s: left half-built by an interrupted build", name)
            self._delete_collection(name)
        return removed

    def rollback(self, to: str | None = None, *, fingerprint: str | None = None) -> tuple[str, str]:
        """Move the alias to `to`, or to the newest kept version older than the live one;
        (live before, live now). Refuses (RollbackError) when there is none, when the version is
        half-built, or when another model than `fingerprint` built it; UnknownCollectionError
        when `to` is not a kept version."""
        with self._writing():
            live = self.current_collection()
            kept = self.collections()
            if to is None:
                if live is None:
                    raise RollbackError(
                        f"nothing to roll back: alias {self.alias!r} points nowhere"
                    )
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
                    f"{target.name} was built by model {target.fingerprint or 'unknown'!r} but "
                    f"the service runs {fingerprint!r}"
                )
            self._move_alias(target.name)
        self._warm(target.name)
        log.info("alias %r moved back from %s to %s", self.alias, live or "", target.name)
        return live or "", target.name


def edited(meta: Mapping[str, Any], source: str) -> dict[str, Any]:
    """An edited version's metadata: its content no longer matches a FAQ file (so a later
    build of an unchanged file is not skipped), and where it came from."""
    return {**meta, "content_hash": "", "edited_at": now_iso(), "edited_from": source}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def in_batches(
    items: Sequence[FaqItem],
    batch_size: int = 64,
    on_batch: OnBatch | None = None,
    desc: str | None = None,
) -> Chunks:
    """`items` in batches, shown in a progress bar unless `desc` is None, `on_batch` called
    after each one is stored."""
    with tqdm(total=len(items), desc=desc, unit="faq", disable=desc is None) as bar:
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            yield start, chunk
            bar.update(len(chunk))
            if on_batch is not None:
                on_batch(start + len(chunk), len(items))


def _age_s(created_at: object, now: datetime) -> float:
    try:
        created = datetime.fromisoformat(str(created_at))
    except ValueError:
        return float("inf")  # no usable timestamp: old enough to judge
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now - created).total_seconds()
