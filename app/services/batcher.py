"""One owner of the model: a single inference thread runs every model call, in continuous
batches of one token-length class, bounded by `max_batch_size` and `max_batch_tokens` (counted
with padding). A full queue is a 429; a query whose caller left or whose deadline passed is never
encoded (503). Other model work runs on the same thread as jobs alternating with query batches.
Design and figures: docs/design.md "One owner of the model".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from index_builder.model.encoder import Encoder, EncodeResult, Kind, Tokenized, TokenizingEncoder

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.metrics import Metrics

log = logging.getLogger(__name__)


# Token-length classes: 2**4 = 16 tokens covers nearly every shopper query in one class.
_MIN_BUCKET_BITS = 4


class BatcherError(RuntimeError):
    """The batcher could not encode a query; the message says why."""


class QueueFullError(BatcherError):
    """The queue holds `max_queue_size` queries already: the caller should retry later."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(BatcherError):
    """The query waited longer than its deadline and was dropped without being encoded."""


class BatcherClosedError(BatcherError):
    """The batcher is stopped (the service is shutting down)."""


@dataclass(frozen=True)
class BatcherConfig:
    max_batch_size: int = 32
    max_wait_s: float = 0.0
    # Token budget of a batch, padding included (queries x longest query): 32 queries of the
    # model's 512 tokens. A single query always fits.
    max_batch_tokens: int = 16384
    max_queue_size: int = 256
    deadline_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_batch_tokens < 1 or self.max_queue_size < 1:
            raise ValueError("max_batch_size, max_batch_tokens and max_queue_size must be >= 1")
        if self.max_wait_s < 0 or self.deadline_s <= 0:
            raise ValueError("max_wait_s must be >= 0 and deadline_s > 0")


@dataclass(frozen=True)
class EncodedQuery:
    vector: NDArray[np.float32]
    n_tokens: int
    truncated: bool


@dataclass(eq=False)
class _Pending:
    tokens: Tokenized
    n_tokens: int
    enqueued_at: float
    deadline: float
    future: Future[EncodedQuery]


@dataclass(eq=False)
class _Job:
    run: Callable[[], Any]
    future: Future[Any]


def length_bucket(n_tokens: int) -> int:
    """The length class of a query: ceil(log2(tokens)), with everything up to 16 tokens in one."""
    return max(_MIN_BUCKET_BITS, (max(n_tokens, 1) - 1).bit_length())


def padded_tokens(lengths: Sequence[int]) -> int:
    """What a batch costs the model: every row is padded to the longest one."""
    return len(lengths) * max(lengths, default=0)


class InferenceWorker:
    """A bounded queue of tokenised queries and the one thread that runs the model.

    `start()` and `stop()` belong to the app's lifespan; requests await `encode_async()`.
    """

    def __init__(
        self,
        encoder: Encoder,
        config: BatcherConfig,
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(encoder, TokenizingEncoder):
            raise TypeError(
                f"{type(encoder).__name__} cannot be served: the inference worker needs "
                "tokenize() and encode_tokenized()"
            )
        self.encoder = encoder
        # The model step itself (the class's method: start() routes the instance's to this
        # thread, and another worker may have done so for the same encoder object).
        self._run_model: Callable[[Sequence[Tokenized]], EncodeResult] = functools.partial(
            type(encoder).encode_tokenized, encoder
        )
        self._owned: Callable[[Sequence[Tokenized]], EncodeResult] | None = None
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._cond = threading.Condition()
        # Queued texts by (bulk, length class): searches' classes before embeddings' ones.
        self._buckets: dict[tuple[bool, int], deque[_Pending]] = {}
        self._size = 0
        self._bulk = 0  # embedding texts in flight (encode_async's `bulk`)
        self._jobs: deque[_Job] = deque()
        self._job_turn = False
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                raise RuntimeError("the inference worker is already started")
            self._closed = False
            self._thread = threading.Thread(target=self._work, name="faq-inference", daemon=True)
            self._own_model()
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Refuse new work, run what is already queued, then end the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("inference worker did not stop within %.1f s", timeout_s)
        # Whatever is left (a worker that never started or is stuck) fails instead of hanging.
        with self._cond:
            closed = BatcherClosedError("the service is shutting down")
            for pending in (p for queue in self._buckets.values() for p in queue):
                _fail(pending.future, closed)
            while self._jobs:
                _fail(self._jobs.popleft().future, closed)
            self._buckets.clear()
            self._size = 0
            self._set_depth_locked()
            self._thread = None
            self._release_model()

    @property
    def queue_depth(self) -> int:
        with self._cond:
            return self._size

    # --- callers ----------------------------------------------------------------------------

    def submit(
        self, tokens: Sequence[Tokenized], *, bulk: bool = False
    ) -> list[Future[EncodedQuery]]:
        """Queue tokenised queries, all or none; the futures resolve when they are encoded.
        `bulk` texts (embeddings) run only when no search is ready to."""
        now = self._clock()
        deadline = now + self.config.deadline_s
        pending = [_Pending(t, len(t.ids), now, deadline, Future[EncodedQuery]()) for t in tokens]
        with self._cond:
            self._check_open_locked()
            if self._size + len(pending) > self.config.max_queue_size:
                raise QueueFullError(
                    f"the encoder queue is full ({self._size} of {self.config.max_queue_size} "
                    f"queries waiting, {len(pending)} more asked for); retry shortly",
                    retry_after_s=max(1, round(self.config.deadline_s / 2)),
                )
            for p in pending:
                key = (bulk, length_bucket(p.n_tokens))
                self._buckets.setdefault(key, deque()).append(p)
            self._size += len(pending)
            self._set_depth_locked()
            self._cond.notify_all()
        return [p.future for p in pending]

    async def encode_async(
        self, texts: Sequence[str], kind: Kind = "query", *, bulk: bool = False
    ) -> EncodeResult:
        """Tokenise here, encode in the worker's next batches, await the vectors until the
        deadline. `bulk` texts (embeddings) in flight are held to half the queue, so a flood of
        them is refused (429) while searches still find room."""
        if not bulk:
            return await self._encode(texts, kind, bulk)
        with self._cond:
            if self._bulk + len(texts) > self.config.max_queue_size // 2:
                raise QueueFullError(
                    f"{self._bulk} embedding texts are in flight, at most "
                    f"{self.config.max_queue_size // 2} (half of FAQ_BATCH_QUEUE_SIZE); "
                    "retry shortly",
                    retry_after_s=max(1, round(self.config.deadline_s / 2)),
                )
            self._bulk += len(texts)
        try:
            return await self._encode(texts, kind, bulk)
        finally:
            with self._cond:
                self._bulk -= len(texts)

    async def _encode(self, texts: Sequence[str], kind: Kind, bulk: bool) -> EncodeResult:
        t0 = time.perf_counter()
        tokens = self.encoder.tokenize(texts, kind)
        if self.metrics is not None:
            self.metrics.tokenize_duration.observe(time.perf_counter() - t0)
        futures = self.submit(tokens, bulk=bulk)
        waiting = [asyncio.wrap_future(f) for f in futures]
        try:
            _, late = await asyncio.wait(waiting, timeout=self.config.deadline_s)
            if late:
                # A query still queued is dropped; one whose batch is running now ends within
                # one model run and is awaited.
                if any(f.cancel() for f in futures if not f.done()):
                    raise DeadlineExceededError(self._deadline_message())
                await asyncio.wait(late)
            if any(w.cancelled() for w in waiting):
                raise BatcherClosedError("the query was cancelled (service stopping)")
            encoded = [w.result() for w in waiting]
        except BaseException:
            # The request failed as a whole (or its client left): the rest is not encoded.
            for f in futures:
                f.cancel()
            raise
        if not encoded:
            return EncodeResult(np.empty((0, self.encoder.dim), np.float32), [], [])
        return EncodeResult(
            np.stack([e.vector for e in encoded]).astype(np.float32, copy=False),
            [e.n_tokens for e in encoded],
            [e.truncated for e in encoded],
        )

    def _own_model(self) -> None:
        """Route the encoder's model runs through this thread, whoever calls them: other model
        work (reindex, edits, the quality gate) becomes a job, alternating with query batches."""
        run_model = self._run_model

        def owned(encodings: Sequence[Tokenized]) -> EncodeResult:
            if threading.current_thread() is self._thread:
                return run_model(encodings)
            future: Future[EncodeResult] = Future()
            with self._cond:
                self._check_open_locked()
                self._jobs.append(_Job(functools.partial(run_model, encodings), future))
                self._cond.notify_all()
            try:
                return future.result()
            except CancelledError:
                raise BatcherClosedError("the model job was cancelled (service stopping)") from None

        # An instance attribute shadows the class's method; removed again by stop().
        setattr(self.encoder, "encode_tokenized", owned)  # noqa: B010
        self._owned = owned

    def _release_model(self) -> None:
        if self._owned is not None and self.encoder.__dict__.get("encode_tokenized") is self._owned:
            del self.encoder.__dict__["encode_tokenized"]
        self._owned = None

    def _check_open_locked(self) -> None:
        if self._closed or self._thread is None:
            raise BatcherClosedError("the inference worker is not running (service stopping)")

    def _deadline_message(self) -> str:
        return (
            f"the query waited more than {self.config.deadline_s:g} s for the encoder "
            f"(FAQ_BATCH_DEADLINE_S) and was dropped: the service is overloaded; retry shortly"
        )

    # --- worker -----------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                with self._cond:
                    work = self._next_locked()
                if work is None:
                    return
                if isinstance(work, _Job):
                    _run_job(work)
                elif work:
                    self._run(work)
            except Exception:  # pragma: no cover - a bug here must not kill the worker silently
                log.exception("inference worker error")

    def _next_locked(self) -> list[_Pending] | _Job | None:
        """Wait until a batch or a job is ready and take it; None when closed and drained."""
        while True:
            now = self._clock()
            self._drop_dead_locked(now)
            # A waiting job runs after every query batch, so a reindex cannot be starved.
            if self._jobs and (self._job_turn or self._size == 0):
                self._job_turn = False
                return self._jobs.popleft()
            if self._size == 0:
                if self._closed:
                    return None
                self._cond.wait()
                continue
            # (bulk, oldest arrival, bucket, count): a search batch first, then the oldest.
            ready: tuple[bool, float, tuple[bool, int], int] | None = None
            first_due = float("inf")
            for bucket, queue in self._buckets.items():
                if not queue:
                    continue
                count, full = self._fill(queue)
                due = queue[0].enqueued_at + self.config.max_wait_s
                if full or due <= now or self._closed:
                    candidate = (bucket[0], queue[0].enqueued_at, bucket, count)
                    if ready is None or candidate[:2] < ready[:2]:
                        ready = candidate
                else:
                    first_due = min(first_due, due)
            if ready is not None:
                self._job_turn = bool(self._jobs)
                return self._take_locked(ready[2], ready[3], now)
            self._cond.wait(timeout=max(0.0, first_due - now))

    def _fill(self, queue: deque[_Pending]) -> tuple[int, bool]:
        """How many queries from the head of `queue` make one batch, and whether it is full."""
        longest = 0
        for count, p in enumerate(queue):
            if count == self.config.max_batch_size:
                return count, True
            longest = max(longest, p.n_tokens)
            # A single query always fits, even one longer than the whole budget.
            if count and (count + 1) * longest > self.config.max_batch_tokens:
                return count, True
        return len(queue), len(queue) == self.config.max_batch_size

    def _take_locked(self, bucket: tuple[bool, int], count: int, now: float) -> list[_Pending]:
        queue = self._buckets[bucket]
        taken = [queue.popleft() for _ in range(count)]
        if not queue:
            del self._buckets[bucket]
        self._size -= count
        self._set_depth_locked()
        # RUNNING from here on: a caller that gives up now waits for this batch instead.
        live = [p for p in taken if p.future.set_running_or_notify_cancel()]
        if self.metrics is not None:
            for p in live:
                self.metrics.queue_wait_duration.observe(now - p.enqueued_at)
        return live

    def _drop_dead_locked(self, now: float) -> None:
        """Remove cancelled queries and fail the ones whose deadline passed, unencoded."""
        for bucket, queue in list(self._buckets.items()):
            if not any(p.future.cancelled() or p.deadline <= now for p in queue):
                continue
            for p in queue:
                if p.deadline <= now and not p.future.cancelled():
                    _fail(p.future, DeadlineExceededError(self._deadline_message()))
            kept = deque(p for p in queue if not p.future.done())
            self._size -= len(queue) - len(kept)
            if kept:
                self._buckets[bucket] = kept
            else:
                del self._buckets[bucket]
            self._set_depth_locked()

    def _set_depth_locked(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(self._size)

    def _run(self, batch: list[_Pending]) -> None:
        t0 = time.perf_counter()
        try:
            result = self._run_model([p.tokens for p in batch])
        except Exception as exc:
            log.exception("encoding a batch of %d queries failed", len(batch))
            for p in batch:
                p.future.set_exception(exc)
            return
        if self.metrics is not None:
            lengths = [p.n_tokens for p in batch]
            self.metrics.inference_duration.observe(time.perf_counter() - t0)
            self.metrics.batch_size.observe(len(lengths))
            self.metrics.batch_tokens.observe(padded_tokens(lengths))
        rows = zip(batch, result.vectors, result.n_tokens, result.truncated, strict=True)
        for p, vector, n_tokens, truncated in rows:
            p.future.set_result(EncodedQuery(vector, n_tokens, truncated))


def _run_job(job: _Job) -> None:
    if not job.future.set_running_or_notify_cancel():
        return
    try:
        result = job.run()
    except BaseException as exc:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)


def _fail(future: Future[Any], exc: BaseException) -> None:
    # InvalidStateError: the caller cancelled it meanwhile, nobody is waiting for the answer.
    with contextlib.suppress(InvalidStateError):
        future.set_exception(exc)


def build_query_encoding(
    encoder: Encoder, settings: Settings, metrics: Metrics | None = None
) -> InferenceWorker:
    """The inference worker (not yet started) that owns `encoder` from now on."""
    config = BatcherConfig(
        max_batch_size=settings.batch_max_size,
        max_wait_s=settings.batch_max_wait_ms / 1000.0,
        max_queue_size=settings.batch_queue_size,
        deadline_s=settings.batch_deadline_s,
    )
    return InferenceWorker(encoder, config, metrics)
