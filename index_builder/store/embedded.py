"""The embedded store (the default): the service's own files, searched exactly in process.

    <root>/<alias>.alias          the live collection's name, replaced atomically (os.replace)
    <root>/<alias>_v<N>/meta.json its metadata: build state, model fingerprint, content hash
    <root>/<alias>_v<N>/vectors.npz  question and answer vectors, lexical weights, row order
    <root>/<alias>_v<N>/entries.json the entries (the hits' fields), row order
    <root>/.lock                  held (flock) by whoever writes: build, edit, rollback, cleanup

A `ready` version never changes, so a loaded one is a consistent copy without locks, shared by
any number of processes. A serving process searches the live version in memory (`matrix.py`);
when the alias moves, the new version loads in a search thread while the old one keeps
answering, so only the very first request waits for a load.
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
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from index_builder.faq import FaqItem
from index_builder.model.encoder import Encoder
from index_builder.store.base import (
    READY,
    Chunks,
    FaqIndexError,
    Hit,
    IndexMissingError,
    Row,
    SearchSpec,
    Store,
    UnknownCollectionError,
    edited,
    in_batches,
)
from index_builder.store.fusion import Retrieval
from index_builder.store.lexical import SparseDoc
from index_builder.store.matrix import LARGE_ROWS, FlatSparse, MatrixSnapshot

log = logging.getLogger(__name__)

# Search threads of a large index: one made the search a serial stage that left a core idle.
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
        chunks: Chunks | None = None,
    ) -> Entries:
        """Embed `items` (question and answer passage vectors), batch by batch of `chunks`."""
        questions, answers = [], []
        for _, chunk in chunks or in_batches(items):
            questions.append(encoder.encode_passages([i.question for i in chunk]))
            answers.append(encoder.encode_passages([i.answer for i in chunk]))
        return cls(
            [i.payload() for i in items],
            np.concatenate(questions).astype(np.float32),
            np.concatenate(answers).astype(np.float32),
            FlatSparse.of([(d.indices, d.values) for d in sparse]),
        )

    def snapshot(self, name: str, retrieval: Retrieval) -> MatrixSnapshot:
        rows = [Row.from_payload(p["id"], p) for p in self.payloads]
        return MatrixSnapshot(
            name,
            self.ids,
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
        created = [item.id not in position for item in items]
        extra = [k for k, new in enumerate(created) if new]
        for k, item in enumerate(items):
            if (row := position.get(item.id)) is None:
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

    def _set_metadata(self, collection: str, meta: dict[str, Any]) -> None:
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

    def _create(self, name: str, meta: dict[str, Any], dim: int) -> None:
        (self.root / name).mkdir()
        with self._discarded_on_failure(name):
            self._set_metadata(name, meta)

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

    def _write(
        self,
        name: str,
        items: Sequence[FaqItem],
        encoder: Encoder,
        sparse: list[SparseDoc],
        chunks: Chunks,
    ) -> Mapping[str, Any]:
        return self._save(name, Entries.encode(items, encoder, sparse, chunks))

    def _save(self, name: str, entries: Entries) -> Mapping[str, Any]:
        entries.save(self.root / name)
        return {"count": len(entries.payloads)}

    def _edit(self, live: str, entries: Entries) -> str:
        """Write `entries`, an edit of the live version `live`, as the next version."""
        name = self._next_name()
        save = partial(self._save, name, entries)
        self._new_version(name, edited(self._metadata(live), live), entries.question.shape[1], save)
        return name

    def upsert(self, items: Sequence[FaqItem], encoder: Encoder) -> tuple[str, list[bool]]:
        with self._writing():
            live = self.check_model(encoder.fingerprint).collection
            entries = Entries.load(self.root / live)
            sparse = self._edit_sparse(live, items, encoder)
            questions = encoder.encode_passages([i.question for i in items])
            answers = encoder.encode_passages([i.answer for i in items])
            created = entries.upsert(items, questions, answers, sparse)
            return self._edit(live, entries), created

    def delete(self, faq_id: str) -> str | None:
        with self._writing():
            live = self.info().collection
            rest = Entries.load(self.root / live).without(faq_id)
            return None if rest is None else self._edit(live, rest)

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
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        log.info("loaded %s: %d entries in %.0f ms", name, len(snapshot), elapsed_ms)
        return snapshot

    def _live_name(self) -> str:
        name = self.current_collection()
        if name is None:
            raise IndexMissingError(f"no index behind alias {self.alias!r}: run `make index`")
        return name

    def _live(self) -> MatrixSnapshot:
        self._served = self._snapshot(self._live_name())
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
            # An exact scan of this many rows is cheaper than a hand-off to a thread; the IVF
            # path above it runs in the search threads, so the loop keeps serving HTTP.
            return snapshot.search_batch(vectors, specs, self.retrieval)
        return await loop.run_in_executor(
            self._threads(), snapshot.search_batch, vectors, specs, self.retrieval
        )

    def _ready_snapshot(self) -> MatrixSnapshot | None:
        """The live version if loaded; else, while it loads in a search thread, the one
        served before (None when there is none)."""
        found = self._snapshots.get(self._live_name())
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


def _replace(path: Path, data: bytes) -> None:
    """Write `path` atomically: readers see the old content or the new, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
