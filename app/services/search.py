"""Searches, one async path for every store: cut the queries, encode them on the inference
worker, search them in one `search_batch` call with every other request's queries ready in the
same turn of the event loop (each keeps its own filters and top_k), shape the answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from starlette.concurrency import run_in_threadpool

from app.metrics import Metrics
from app.services.answering import Answering, QuerySpec, Shaped
from app.services.batcher import DeadlineExceededError, InferenceWorker
from app.services.index_guard import QDRANT_ERRORS, IndexGuard, IndexUnavailableError
from index_builder.store import FaqIndexError, Hit, SearchSpec

log = logging.getLogger(__name__)

# Most queued queries searched together in one store call (a request's queries stay together).
MAX_SEARCH_BATCH = 64


@dataclass(frozen=True)
class BatchOutcome:
    # What is shown per query: one entry per topic, each language's reason, answered or not.
    shaped: list[Shaped]
    truncated: list[bool]
    collection: str
    took_ms: float


AnswerBatch = Callable[[Sequence[QuerySpec], NDArray[np.float32]], Awaitable[list[Shaped]]]
_Pending = tuple[Sequence[QuerySpec], NDArray[np.float32], "asyncio.Future[list[Shaped]]"]


class SearchCombiner:
    """Batches the searches of coroutines on one event loop: the requests whose vectors are
    ready in the same turn of the loop (typically one model batch) are answered by one
    `answer(specs, vectors)` call; up to `concurrency` calls run at once."""

    def __init__(self, answer: AnswerBatch, max_batch: int, concurrency: int) -> None:
        if max_batch < 1 or concurrency < 1:
            raise ValueError("max_batch and concurrency must be >= 1")
        self._answer = answer
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(
        self, specs: Sequence[QuerySpec], vectors: NDArray[np.float32]
    ) -> list[Shaped]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Shaped]] = loop.create_future()
        self._pending.append((specs, vectors, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled and self._running < self.concurrency:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batches = self._batches()
        for batch in batches[: self.concurrency - self._running]:
            self._running += 1
            task = loop.create_task(self._run(loop, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # What did not fit waits for a running batch to finish.
        self._pending = [item for batch in batches[self.concurrency :] for item in batch]

    def _batches(self) -> list[list[_Pending]]:
        """The live requests (a client that left is skipped) in calls of at most max_batch
        queries; a request's queries stay in one call, even alone above max_batch."""
        pending, self._pending = self._pending, []
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

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        try:
            result: list[Shaped] | BaseException = await self._answer(
                [s for specs, _, _ in batch for s in specs],
                np.concatenate([v for _, v, _ in batch]),
            )
        except Exception as exc:  # every request of the batch gets it; none waits forever
            result = exc
        finally:
            self._running -= 1
        start = 0
        for specs, _, future in batch:
            if not future.done():  # a client may have left while the batch ran
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result[start : start + len(specs)])
            start += len(specs)
        if self._pending:
            self._schedule(loop)


class SearchService:
    def __init__(
        self,
        guard: IndexGuard,
        metrics: Metrics,
        max_query_chars: int,
        queries: InferenceWorker,
        *,
        answering: Answering,
        deadline_s: float,
    ) -> None:
        """`deadline_s`: longest wait for the store's answer to one batch (then a 503)."""
        self.answering = answering
        self.guard = guard
        self.metrics = metrics
        self.max_query_chars = max_query_chars
        self.queries = queries
        self.deadline_s = deadline_s
        self._combiner = SearchCombiner(
            self._answer_batch, MAX_SEARCH_BATCH, guard.store.search_concurrency
        )

    async def answer(self, specs: Sequence[QuerySpec]) -> BatchOutcome:
        start = time.perf_counter()
        # A check that has to look (a server round trip, files) runs off the loop.
        info = self.guard.cached()
        if info is None:
            info = await run_in_threadpool(self.guard.current)

        # A request without min_score gets the threshold in force for the live collection.
        # `info` may trail an alias move by the guard's check interval (a local reindex: not).
        default = self.answering.threshold(info).min_score
        if default is not None:
            specs = [s if s.min_score is not None else replace(s, min_score=default) for s in specs]
        texts = [s.text for s in specs]
        t0 = time.perf_counter()
        # Cut absurdly long input before tokenising: the model keeps max_length tokens anyway.
        encoded = await self.queries.encode_async([t[: self.max_query_chars] for t in texts])
        self.metrics.encode_duration.observe(time.perf_counter() - t0)
        truncated = [
            len(text) > self.max_query_chars or cut
            for text, cut in zip(texts, encoded.truncated, strict=True)
        ]
        if any(truncated):
            self.metrics.truncated.inc(sum(truncated))
        shaped = await self._combiner.answer(specs, encoded.vectors)
        took_ms = (time.perf_counter() - start) * 1000.0
        return BatchOutcome(shaped, truncated, info.collection, took_ms)

    async def _answer_batch(
        self, specs: Sequence[QuerySpec], vectors: NDArray[np.float32]
    ) -> list[Shaped]:
        entries = self.guard.store.topic_entries()
        return await self.answering.answer_batch(
            specs, vectors, self._search, self.max_query_chars, topic_entries=entries
        )

    async def _search(
        self, vectors: NDArray[np.float32], specs: Sequence[SearchSpec]
    ) -> list[list[Hit]]:
        """One batched search of the live index, timed; an unreachable Qdrant is a 503."""
        t0 = time.perf_counter()
        budget = asyncio.timeout(self.deadline_s)
        try:
            async with budget:
                result = await self.guard.store.search_batch(vectors, specs)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and budget.expired():
                self.metrics.rejected.labels("deadline").inc()
                raise DeadlineExceededError(
                    f"the index did not answer within {self.deadline_s:g} s "
                    "(FAQ_BATCH_DEADLINE_S): retry shortly"
                ) from exc
            # Re-checked on the next request, so the service recovers once the index answers.
            self.guard.invalidate()
            if isinstance(exc, QDRANT_ERRORS):  # the client's own timeout included
                raise IndexUnavailableError(f"Qdrant is unreachable: {exc}") from exc
            if isinstance(exc, FaqIndexError):
                raise IndexUnavailableError(str(exc)) from exc
            # Anything else (a MemoryError loading a version, a collection deleted under a
            # search, a bug): a 503 like an outage, and the traceback for the operator.

            log.exception("the store failed a search of %d queries", len(specs))
            raise IndexUnavailableError(f"the index failed: {type(exc).__name__}") from exc
        self.metrics.search_duration.observe(time.perf_counter() - t0)
        self.metrics.search_batch_size.observe(len(specs))
        return result
