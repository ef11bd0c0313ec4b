"""Searches: cut the queries, encode them on the inference worker, search them in batches.

The whole query path is batched: a request's queries are tokenised in one call, encoded in the
inference worker's batches (`app/services/batcher.py`), and their vectors searched together
with those of every other request waiting at that moment, in one `search_batch` call (one
matrix product in embedded mode, one round trip to a Qdrant server); each query keeps its own
filters and top_k.

The search batches form by flat combining rather than in another thread: a request that finds
no search running takes everything queued (its own queries included) and runs it; requests
arriving meanwhile queue up and the next one free takes them. A lone request pays no handoff.
"""

from __future__ import annotations

import asyncio
import threading
import time
from asyncio import Future
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from app.metrics import Metrics
from app.services.answering import Answering, Shaped, TopicEntries
from app.services.batcher import QueryEncoding
from app.services.index_guard import QDRANT_ERRORS, IndexGuard, IndexUnavailableError
from index_builder.calibration import AbstainRule
from index_builder.encoder import EncodeResult
from index_builder.store import FaqIndex, Hit, SearchSpec
from index_builder.store.matrix import MatrixSnapshot


@dataclass(frozen=True)
class QuerySpec:
    text: str
    top_k: int
    lang: str | None = None
    market: str | None = None
    group: bool = False
    prefer_lang: str | None = None
    min_score: float | None = None


@dataclass(frozen=True)
class BatchOutcome:
    # What is shown per query: one entry per topic, each language's reason, answered or not.
    shaped: list[Shaped]
    truncated: list[bool]
    collection: str
    took_ms: float


# Searches `vectors[i]` with `specs[i]` = (top_k, lang, market): one call for the whole batch.
BatchSearch = Callable[[NDArray[np.float32], Sequence[SearchSpec]], list[list[Hit]]]


@dataclass(eq=False)
class _Item:
    vector: NDArray[np.float32]
    spec: SearchSpec
    hits: list[Hit] | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class SearchCombiner:
    """Batches concurrent searches into one `search` call by flat combining (no thread)."""

    def __init__(self, search: BatchSearch, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._search = search
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._busy = False

    def search(self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        items = [_Item(v, s) for v, s in zip(vectors, specs, strict=True)]
        with self._cond:
            self._queue.extend(items)
        while True:
            with self._cond:
                while not all(i.done for i in items) and self._busy:
                    self._cond.wait()
                if all(i.done for i in items):
                    break
                # Nobody is searching and some of ours are still queued: run the queue's head.
                self._busy = True
                batch = [
                    self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
                ]
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        for i in items:
            if i.error is not None:
                raise i.error
        return [i.hits or [] for i in items]

    def _run(self, batch: list[_Item]) -> None:
        try:
            results = self._search(np.stack([i.vector for i in batch]), [i.spec for i in batch])
        except BaseException as exc:
            for i in batch:
                i.error, i.done = exc, True
            return
        for i, hits in zip(batch, results, strict=True):
            i.hits, i.done = hits, True


_Pending = tuple[Sequence[QuerySpec], NDArray[np.float32], "Future[list[Shaped]]"]


class LoopCombiner:
    """Batches the searches of coroutines on one event loop: every request whose vectors are
    ready in the same turn of the loop (typically one model batch) is answered by one
    `answer(specs, vectors)` call, run on the loop after those requests have queued.

    When `offload()` says so (a large index, whose searches take milliseconds each), the calls
    run in threads of their own instead: the loop goes on reading and answering HTTP
    meanwhile (faiss and numpy release the GIL). Up to `threads` batches run at once; the
    requests that arrive while that many run form the next one. One thread made the search a
    serial stage that left a core idle under load: two served a 100k-entry index 1.06x the
    req/s at c=32 (`tools.ab_serve`, README "Measured")."""

    def __init__(
        self,
        answer: Callable[[Sequence[QuerySpec], NDArray[np.float32]], list[Shaped]],
        max_batch: int = 64,
        offload: Callable[[], bool] | None = None,
        threads: int = 1,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self._answer = answer
        self.max_batch = max_batch
        self._offload = offload
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._threads = threads
        self._running = 0  # batches running in the search threads
        self._thread: ThreadPoolExecutor | None = None

    async def answer(
        self, specs: Sequence[QuerySpec], vectors: NDArray[np.float32]
    ) -> list[Shaped]:
        loop = asyncio.get_running_loop()
        future: Future[list[Shaped]] = loop.create_future()
        self._pending.append((specs, vectors, future))
        self._schedule(loop)
        return await future

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._running < self._threads:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        batches = self._batches(pending)
        if not batches:
            return
        if self._offload is None or not self._offload():
            for batch in batches:
                self._settle(batch, self._call(batch))
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(self._threads, thread_name_prefix="faq-search")
        self._running += 1
        running = loop.run_in_executor(
            self._thread, lambda: [self._call(batch) for batch in batches]
        )
        running.add_done_callback(lambda done: self._finished(loop, batches, done))

    def _finished(
        self,
        loop: asyncio.AbstractEventLoop,
        batches: list[list[_Pending]],
        done: asyncio.Future[list[list[Shaped] | Exception]],
    ) -> None:
        self._running -= 1
        for batch, result in zip(batches, done.result(), strict=True):
            self._settle(batch, result)
        if self._pending:
            self._schedule(loop)

    def _batches(self, pending: list[_Pending]) -> list[list[_Pending]]:
        """The live requests (a client that left is skipped) in calls of at most max_batch
        queries; a request's queries stay in one call, even alone above max_batch."""
        batches: list[list[_Pending]] = []
        size = 0
        for item in pending:
            if item[2].done():
                continue
            if not batches or size + len(item[0]) > self.max_batch:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += len(item[0])
        return batches

    def _call(self, batch: list[_Pending]) -> list[Shaped] | Exception:
        try:
            return self._answer(
                [s for specs, _, _ in batch for s in specs],
                np.concatenate([v for _, v, _ in batch]),
            )
        except Exception as exc:  # each request of the batch gets it
            return exc

    @staticmethod
    def _settle(batch: list[_Pending], result: list[Shaped] | Exception) -> None:
        start = 0
        for specs, _, future in batch:
            if not future.done():  # a client may have left while the batch ran
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result[start : start + len(specs)])
            start += len(specs)


class SearchService:
    def __init__(
        self,
        guard: IndexGuard,
        metrics: Metrics,
        max_query_chars: int,
        queries: QueryEncoding,
        *,
        max_search_batch: int = 64,
        answering: Answering | None = None,
        inline: bool = False,
        search_threads: int,
    ) -> None:
        # Grouping, the answer's language and abstain (app/services/answering.py); without
        # one, every hit as ranked and never an abstention.
        self.answering = answering or Answering(AbstainRule(None))
        self.guard = guard
        self.metrics = metrics
        self.max_query_chars = max_query_chars
        self.queries = queries
        self._combiner = SearchCombiner(self._search_live, max_search_batch)
        # In-process index (embedded, replica): searches run on the event loop, batched by
        # turn of the loop; a server's round trips stay in the threadpool (`answer`).
        self.inline = inline
        self._large = False  # what the last `_large_index` found
        self._loop_combiner = LoopCombiner(
            self._answer_live, max_search_batch, offload=self._large_index, threads=search_threads
        )

    def close(self) -> None:
        """Stop the search threads of a large index (waits for their batches)."""
        self._loop_combiner.close()

    def _large_index(self) -> bool:
        """Whether the live in-process index is large enough that its searches leave the
        event loop for a thread (`LoopCombiner`): above the snapshot's own IVF row threshold,
        a grouped search takes milliseconds (`make bench-100k`)."""
        snapshot = self._topic_entries()
        self._large = snapshot is not None and len(snapshot) > snapshot.ann_threshold
        return self._large

    def searching_large_index(self) -> bool:
        """What the last batch of searches found `_large_index` to be, without looking again:
        the inference thread asks per model batch (`OnnxEncoder.run_lean_when`), and looking
        means an alias lookup, or a snapshot load after a write, on the model's thread."""
        return self._large

    def _encode(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], list[bool]]:
        t0 = time.perf_counter()
        encoded = self.queries.encode(self._cut(texts))
        return encoded.vectors, self._truncated(texts, encoded, t0)

    def _cut(self, texts: Sequence[str]) -> list[str]:
        # Cut absurdly long input before tokenising: the model keeps max_length tokens anyway.
        return [t[: self.max_query_chars] for t in texts]

    def _truncated(self, texts: Sequence[str], encoded: EncodeResult, t0: float) -> list[bool]:
        self.metrics.encode_duration.observe(time.perf_counter() - t0)
        truncated = [
            len(text) > self.max_query_chars or cut
            for text, cut in zip(texts, encoded.truncated, strict=True)
        ]
        if any(truncated):
            self.metrics.truncated.inc(sum(truncated))
        return truncated

    def _topic_entries(self) -> MatrixSnapshot | None:
        # The live snapshot (a reindex between the search and this can at worst serve one
        # answer from the new one, which is what the next request gets anyway).
        return self.guard.index.topic_entries()

    @property
    def _lookup(self) -> Callable[[], TopicEntries | None] | None:
        return topic_lookup(self.guard.index, self._topic_entries)

    def _answer_live(
        self, specs: Sequence[QuerySpec], vectors: NDArray[np.float32]
    ) -> list[Shaped]:
        return self.answering.answer_batch(
            specs,
            vectors,
            self._search_live,
            self.max_query_chars,
            topic_entries=self._lookup,
        )

    def _search_live(
        self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        """One batched search of the live index, timed; an unreachable Qdrant is a 503."""
        t0 = time.perf_counter()
        try:
            # Read per batch: the guard swaps in a reloaded replica between batches.
            result = self.guard.index.search_batch(vectors, specs)
        except QDRANT_ERRORS as exc:
            # Re-checked on the next request, so the service recovers once Qdrant answers.
            self.guard.invalidate()
            raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
        self.metrics.search_duration.observe(time.perf_counter() - t0)
        self.metrics.search_batch_size.observe(len(specs))
        return result

    async def answer(self, specs: Sequence[QuerySpec]) -> BatchOutcome:
        """`search_batch` for a route on the event loop: inline with an in-process index,
        else in the threadpool."""
        if not self.inline:
            return await run_in_threadpool(self.search_batch, specs)
        start = time.perf_counter()
        # A check that has to look (a server, a replica reload) runs off the loop.
        info = self.guard.cached()
        if info is None:
            info = await run_in_threadpool(self.guard.current)
        texts = [s.text for s in specs]
        t0 = time.perf_counter()
        encoded = await self.queries.encode_async(self._cut(texts))
        truncated = self._truncated(texts, encoded, t0)
        shaped = await self._loop_combiner.answer(specs, encoded.vectors)
        return BatchOutcome(shaped, truncated, info.collection, _ms_since(start))

    def search_batch(self, specs: Sequence[QuerySpec]) -> BatchOutcome:
        """Several searches: encoded together, searched together with other requests' queries."""
        start = time.perf_counter()
        info = self.guard.current()
        vectors, truncated = self._encode([s.text for s in specs])
        # One batched search call, then one answer per topic in the wanted language, or none.
        shaped = self.answering.answer_batch(
            specs,
            vectors,
            self._combiner.search,
            self.max_query_chars,
            topic_entries=self._lookup,
        )
        return BatchOutcome(shaped, truncated, info.collection, _ms_since(start))


def topic_lookup(
    index: FaqIndex, entries: Callable[[], TopicEntries | None]
) -> Callable[[], TopicEntries | None] | None:
    """How grouping finds an entry that was not fetched: `entries` (the in-process snapshot),
    or (None) searches restricted to the wanted languages (a server, or the matrix off)."""
    return entries if index.matrix else None


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0
