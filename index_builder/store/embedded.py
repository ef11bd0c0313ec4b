"""The embedded store (the default): the service's own files, searched exactly in process.

    <root>/<alias>.alias          the live collection's name, replaced atomically (os.replace)
    <root>/<alias>_v<N>/meta.json its metadata: build state, model fingerprint, content hash
    <root>/<alias>_v<N>/vectors.npz  question and answer vectors, lexical weights, row order
    <root>/<alias>_v<N>/entries.json the entries (the hits' fields), row order
    <root>/.lock                  held (flock) by whoever writes: build, edit, rollback, cleanup

A `ready` version never changes (an edit writes a new one), so a loaded version is a consistent
copy without locks, shared by any number of processes: docs/design.md, "The store: one
interface, two backends". A serving process searches the live version as a `MatrixSnapshot`
(`matrix.py`) in memory; when the alias moves, the new version is loaded in a search thread
while the old one keeps answering, so no request waits for a load (about a second at 100k
entries), except the very first one.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray
from tqdm import tqdm

from index_builder.encoder import Encoder
from index_builder.faq import FaqItem
from index_builder.lexical import Lexicon, SparseDoc
from index_builder.store.base import (
    BUILDING,
    READY,
    Annotate,
    FaqIndexError,
    Hit,
    IndexInfo,
    IndexMissingError,
    OnBatch,
    Row,
    SearchSpec,
    Store,
    UnknownCollectionError,
    Validate,
    now_iso,
)
from index_builder.store.fusion import Retrieval
from index_builder.store.matrix import LARGE_ROWS, FlatSparse, MatrixSnapshot

log = logging.getLogger(__name__)

# Search threads of a large index: one made the search a serial stage that left a core idle
# under load (100k entries, c=32: two served 1.06x the req/s of one on 2 cores).
SEARCH_THREADS = 2


class StoreBusyError(FaqIndexError):
    """Another process or thread holds the store's write lock."""


@dataclass
class Entries:
    """One version's rows: the entries' payloads and their vectors, in one order."""

    payloads: list[dict[str, Any]]
    question: NDArray[np.float32]
    answer: NDArray[np.float32]
    lexical: FlatSparse

    @property
    def ids(self) -> list[str]:
        return [str(p["id"]) for p in self.payloads]

    @classmethod
    def encode(
        cls,
        items: Sequence[FaqItem],
        encoder: Encoder,
        sparse: Sequence[SparseDoc],
        *,
        batch_size: int = 64,
        on_batch: OnBatch | None = None,
        desc: str | None = None,
    ) -> Entries:
        """Embed `items` (question and answer passage vectors) in batches."""
        questions, answers = [], []
        bar = tqdm(total=len(items), desc=desc, unit="faq", disable=desc is None)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            questions.append(encoder.encode_passages([i.question for i in chunk]))
            answers.append(encoder.encode_passages([i.answer for i in chunk]))
            bar.update(len(chunk))
            if on_batch is not None:
                on_batch(start + len(chunk), len(items))
        bar.close()
        return cls(
            [i.payload() for i in items],
            np.concatenate(questions).astype(np.float32),
            np.concatenate(answers).astype(np.float32),
            FlatSparse.of([(d.indices, d.values) for d in sparse]),
        )

    def snapshot(self, name: str, retrieval: Retrieval) -> MatrixSnapshot:
        ids = self.ids
        rows = [Row.from_payload(pid, p) for pid, p in zip(ids, self.payloads, strict=True)]
        return MatrixSnapshot(
            name,
            ids,
            self.question,
            rows,
            dim=self.question.shape[1],
            answers=self.answer,
            lexical=self.lexical,
            answer_weight=retrieval.answer_weight,
        )

    def save(self, directory: Path) -> None:
        np.savez(
            directory / "vectors.npz",
            question=self.question,
            answer=self.answer,
            lexical_offsets=np.cumsum([0, *self.lexical.lengths.tolist()], dtype=np.int64),
            lexical_tokens=self.lexical.tokens,
            lexical_weights=self.lexical.weights,
        )
        (directory / "entries.json").write_bytes(orjson.dumps(self.payloads))

    @classmethod
    def load(cls, directory: Path) -> Entries:
        with np.load(directory / "vectors.npz") as arrays:
            lexical = FlatSparse(
                np.diff(arrays["lexical_offsets"]).astype(np.intp),
                arrays["lexical_tokens"].astype(np.int64),
                arrays["lexical_weights"].astype(np.float32),
            )
            question, answer = arrays["question"], arrays["answer"]
        payloads = orjson.loads((directory / "entries.json").read_bytes())
        if not (len(payloads) == len(question) == len(answer) == len(lexical)):
            raise FaqIndexError(f"{directory}: its files disagree on the number of entries")
        return cls(payloads, question, answer, lexical)

    def upsert(
        self,
        items: Sequence[FaqItem],
        questions: NDArray[np.float32],
        answers: NDArray[np.float32],
        sparse: Sequence[SparseDoc],
    ) -> list[bool]:
        """Replace entries by id or append them; per item, whether it was new."""
        position = {pid: i for i, pid in enumerate(self.ids)}
        lexical = self.lexical.rows()
        created = []
        extra: list[int] = []
        for k, item in enumerate(items):
            row = position.get(item.id)
            created.append(row is None)
            if row is None:
                extra.append(k)
                continue
            self.payloads[row] = item.payload()
            self.question[row], self.answer[row] = questions[k], answers[k]
            lexical[row] = (sparse[k].indices, sparse[k].values)
        if extra:
            self.payloads += [items[k].payload() for k in extra]
            self.question = np.concatenate([self.question, questions[extra]])
            self.answer = np.concatenate([self.answer, answers[extra]])
            lexical += [(sparse[k].indices, sparse[k].values) for k in extra]
        self.lexical = FlatSparse.of(lexical)
        return created

    def without(self, faq_id: str) -> Entries | None:
        """These entries less `faq_id`, or None when it is not one of them."""
        keep = [i for i, pid in enumerate(self.ids) if pid != faq_id]
        if len(keep) == len(self.payloads):
            return None
        rows = self.lexical.rows()
        return Entries(
            [self.payloads[i] for i in keep],
            self.question[keep],
            self.answer[keep],
            FlatSparse.of([rows[i] for i in keep]),
        )


class EmbeddedStore(Store):
    """One alias and its versions in a directory of this service's own files."""

    def __init__(
        self,
        root: Path,
        alias: str = "faq",
        keep: int = 3,
        *,
        retrieval: Retrieval | None = None,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self._init_versions(alias, keep)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.retrieval = retrieval or Retrieval()
        self.lock_timeout_s = lock_timeout_s
        self._alias_file = self.root / f"{alias}.alias"
        self._alias_seen: tuple[tuple[int, int], str | None] | None = None
        # Loaded versions by name (immutable, so never stale): the live one and the last other
        # one asked for (a quality gate's candidate).
        self._snapshots: dict[str, MatrixSnapshot] = {}
        self._load_lock = threading.Lock()
        self._served: MatrixSnapshot | None = None
        self._loading: Future[MatrixSnapshot | None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.search_concurrency = SEARCH_THREADS
        # Its write lock tells whether a build is running, so no half-built version is spared.
        self.orphan_min_age_s = 0.0
        # Metadata of `ready` versions, which never change: the model check reads it every few
        # seconds.
        self._ready_meta: dict[str, dict[str, Any]] = {}

    # --- the files ---------------------------------------------------------------------------

    def _names(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob("*/meta.json"))

    def _metadata(self, collection: str) -> dict[str, Any]:
        cached = self._ready_meta.get(collection)
        if cached is not None:
            return cached
        try:
            meta: dict[str, Any] = json.loads((self.root / collection / "meta.json").read_text())
        except FileNotFoundError:
            raise UnknownCollectionError(f"no collection {collection!r} in {self.root}") from None
        if meta.get("state") == READY:
            self._ready_meta[collection] = meta
        return meta

    def _write_metadata(self, collection: str, meta: dict[str, Any]) -> None:
        _replace(self.root / collection / "meta.json", json.dumps(meta, indent=1).encode())

    def _count(self, collection: str) -> int:
        return int(self._metadata(collection).get("count", 0))

    def current_collection(self) -> str | None:
        try:
            stat = self._alias_file.stat()
        except FileNotFoundError:
            return None
        key = (stat.st_ino, stat.st_mtime_ns)
        seen = self._alias_seen
        if seen is not None and seen[0] == key:
            return seen[1]
        name = self._alias_file.read_text().strip() or None
        self._alias_seen = (key, name)
        return name

    def _move_alias(self, collection: str) -> None:
        _replace(self._alias_file, collection.encode())

    def _delete_collection(self, name: str) -> None:
        shutil.rmtree(self.root / name, ignore_errors=True)
        self._snapshots.pop(name, None)
        self._ready_meta.pop(name, None)

    @contextmanager
    def _writing(self, timeout_s: float | None = None) -> Iterator[None]:
        """The write lock, across threads and processes (flock on a file of its own)."""
        wait = self.lock_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + wait
        with open(self.root / ".lock", "a+b") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"{self.root} is being written by another build or edit: "
                            "try again when it is done"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
        annotate: Annotate | None = None,
    ) -> tuple[IndexInfo, bool]:
        with self._writing():
            plan = self._plan(items, encoder, skip_if_unchanged)
            if isinstance(plan, IndexInfo):
                return plan, False
            started = time.perf_counter()
            name = self._commit(
                plan.meta,
                lambda name: Entries.encode(
                    items,
                    encoder,
                    plan.sparse,
                    batch_size=batch_size,
                    on_batch=on_batch,
                    desc=f"indexing {name}" if progress else None,
                ),
                validate,
                annotate,
            )
        log.info("built %s: %d entries in %.1fs", name, len(items), time.perf_counter() - started)
        return self.info(), True

    def _commit(
        self,
        meta: dict[str, Any],
        make: Callable[[str], Entries],
        validate: Validate | None = None,
        annotate: Annotate | None = None,
    ) -> str:
        """Write a new version (`make(name)` gives its entries), check it, move the alias to
        it, prune; the new version is deleted when anything fails. Under the write lock."""
        name = self._next_name()
        directory = self.root / name
        directory.mkdir()
        meta = {**meta, "state": BUILDING, "created_at": now_iso()}
        with self._discarded_on_failure(name, "writing"):
            self._write_metadata(name, meta)
            entries = make(name)
            entries.save(directory)
            if validate is not None:
                validate(name)
            if annotate is not None:
                meta = {**meta, **annotate(name)}
            self._write_metadata(name, {**meta, "count": len(entries.payloads), "state": READY})
            self._move_alias(name)
        self._prune()
        self._warm(name)
        return name

    def rollback(self, to: str | None = None, *, fingerprint: str | None = None) -> tuple[str, str]:
        with self._writing():
            live, target = self._rollback_target(to, fingerprint)
            self._move_alias(target)
        self._warm(target)
        log.info("alias %r moved back from %s to %s", self.alias, live, target)
        return live, target

    def upsert(self, items: Sequence[FaqItem], encoder: Encoder) -> tuple[str, list[bool]]:
        """A new version: the live one with `items` replaced by id or added. Returns it and,
        per item, whether it was new."""
        with self._writing():
            live = self.check_model(encoder.fingerprint).collection
            meta = self._metadata(live)
            entries = Entries.load(self.root / live)
            avg_len = float(meta.get("lexical_avg_len") or 0.0) or None
            sparse, _ = Lexicon.for_encoder(encoder).documents(
                [i.lexical_text for i in items], avg_len
            )
            questions = encoder.encode_passages([i.question for i in items])
            answers = encoder.encode_passages([i.answer for i in items])
            created = entries.upsert(items, questions, answers, sparse)
            name = self._commit(_edited(meta, live), lambda _: entries)
        return name, created

    def delete(self, faq_id: str) -> str | None:
        """A new version: the live one less `faq_id`; its name, or None if the id is absent."""
        with self._writing():
            live = self.info().collection
            rest = Entries.load(self.root / live).without(faq_id)
            if rest is None:
                return None
            return self._commit(_edited(self._metadata(live), live), lambda _: rest)

    def remove_orphans(self, *, min_age_s: float = 0.0) -> list[str]:
        # Under the write lock no build is running, so every `building` version is an orphan;
        # a build running elsewhere holds it, and then it is not the time (StoreBusyError).
        with self._writing(timeout_s=0.0):
            return super().remove_orphans()

    # --- searching ---------------------------------------------------------------------------

    def _snapshot(self, name: str) -> MatrixSnapshot:
        """The loaded version `name`, loading it if needed (blocking)."""
        found = self._snapshots.get(name)
        if found is not None:
            return found
        with self._load_lock:
            found = self._snapshots.get(name)
            if found is not None:
                return found
            if not (self.root / name / "meta.json").exists():
                raise UnknownCollectionError(f"no collection {name!r} in {self.root}")
            started = time.perf_counter()
            snapshot = Entries.load(self.root / name).snapshot(name, self.retrieval)
            live = self.current_collection()
            self._snapshots = {k: v for k, v in self._snapshots.items() if k == live}
            self._snapshots[name] = snapshot
        log.info(
            "loaded %s: %d entries in %.0f ms",
            name,
            len(snapshot),
            (time.perf_counter() - started) * 1000.0,
        )
        return snapshot

    def _live(self) -> MatrixSnapshot:
        name = self.current_collection()
        if name is None:
            raise IndexMissingError(f"no index behind alias {self.alias!r}: run `make index`")
        self._served = self._snapshot(name)
        return self._served

    def warm(self) -> None:
        """Load the live version now, before the first search asks."""
        self._live()

    def _warm(self, name: str) -> None:
        # A serving process loads what just went live before its next search; a CLI does not.
        if self._served is not None and name == self.current_collection():
            self._live()

    def search_many(
        self,
        vectors: NDArray[np.float32],
        specs: Sequence[SearchSpec],
        collection: str | None = None,
    ) -> list[list[Hit]]:
        snapshot = self._live() if collection is None else self._snapshot(collection)
        return snapshot.search_batch(vectors, specs, self.retrieval)

    async def search_batch(
        self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        loop = asyncio.get_running_loop()
        snapshot = self._ready_snapshot()
        if snapshot is None:  # nothing loaded yet: the first search waits for the load
            snapshot = await loop.run_in_executor(self._threads(), self._live)
        if len(snapshot) <= LARGE_ROWS:
            # An exact scan of this many rows takes well under a millisecond, less than a
            # hand-off to a thread; the IVF path above it runs in the search threads, so the
            # loop keeps serving HTTP.
            return snapshot.search_batch(vectors, specs, self.retrieval)
        return await loop.run_in_executor(
            self._threads(), snapshot.search_batch, vectors, specs, self.retrieval
        )

    def _ready_snapshot(self) -> MatrixSnapshot | None:
        """The live version if loaded; else, while it loads in a search thread, the one
        served before (None when there is none)."""
        name = self.current_collection()
        if name is None:
            raise IndexMissingError(f"no index behind alias {self.alias!r}: run `make index`")
        found = self._snapshots.get(name)
        if found is not None:
            self._served = found
            return found
        if self._served is None:
            return None
        if self._loading is None or self._loading.done():
            self._loading = self._threads().submit(self._load_quietly)
        return self._served

    def _load_quietly(self) -> MatrixSnapshot | None:
        try:
            return self._live()
        except (FaqIndexError, OSError, ValueError) as exc:
            # The old version keeps serving; the next search tries again.
            log.warning("could not load the live version: %s", exc)
            return None

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SEARCH_THREADS, thread_name_prefix="faq-search")
        return self._pool

    def topic_entries(self) -> MatrixSnapshot | None:
        return self._served

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _edited(meta: dict[str, Any], source: str) -> dict[str, Any]:
    """An edited version's metadata: its content no longer matches a FAQ file (so a later
    build of an unchanged file is not skipped), and where it came from."""
    return {**meta, "content_hash": "", "edited_at": now_iso(), "edited_from": source}


def _replace(path: Path, data: bytes) -> None:
    """Write `path` atomically: readers see the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
