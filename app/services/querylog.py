"""The query log's writer: off the request path, in batches, never in a search's way.

A search hands `record` one tuple per query, put on a bounded queue without waiting (a full
queue drops and counts it). One writer thread per process takes up to `BATCH` entries or what
`LINGER_S` gathers, scrubs them, reads their language and writes them in one INSERT; it deletes
rows past the retention at start and hourly. Imported only when FAQ_QUERY_LOG is on (SQLAlchemy).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import Counter
from sqlalchemy import exc, insert, select
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.metrics import Metrics
from app.services.answering import Shaped
from index_builder.answers.query_lang import QueryLanguageDetector
from index_builder.querylog import connect, database_url, feedback, purge, searches

log = logging.getLogger(__name__)

BATCH = 512
# Searches waiting for the writer; beyond it they are not logged (faq_querylog_dropped_total) and
# the search never waits. Many seconds of one worker's traffic: a writer further behind is down,
# and a larger queue would only hold more memory.
QUEUE_SIZE = 10_000
# How long the writer gathers entries before it writes them: a transaction per search costs
# several times the row, on the searches' cores. A flush (POST /feedback) or close writes at once.
LINGER_S = 0.2
PURGE_EVERY_S = 3600.0
# How long POST /feedback waits for this process's queued searches to be written.
FLUSH_TIMEOUT_S = 2.0

# Before and after a match: no ASCII letter or digit. Not \w: Japanese, Chinese and Thai write a
# number right after a word ("注文番号12345678").
_START = r"(?<![0-9A-Za-z_+#-])"
_END = r"(?![0-9A-Za-z_])"
# An ISO date (2024-05-12) has the digits of a phone or an order number and hides nothing.
_NOT_DATE = r"(?!\d{4}-\d\d-\d\d(?!\w))"
# (pattern, placeholder, least digits in a match), applied in this order: a card number is
# also a run of digits the phone and order patterns would take.
_SCRUB: tuple[tuple[re.Pattern[str], str, int], ...] = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>", 0),
    (re.compile(_START + r"\+\d[\d ().-]{5,18}\d" + _END), "<phone>", 7),
    # 13-19 digits, alone or in groups split by a space or a dash, as card numbers are typed.
    (re.compile(_START + r"\d(?:[ -]?\d){12,18}" + _END), "<card>", 13),
    # A local number: an area code in parentheses or followed by a separator, 7 digits or more.
    (
        re.compile(_START + _NOT_DATE + r"(?:\(\d{2,5}\) ?|\d{2,5}[ .-])\d[\d .-]{3,14}\d" + _END),
        "<phone>",
        7,
    ),
    # Order, tracking and invoice numbers: # and 4 digits or more ("#10234"), or a token with
    # 5 digits or more ("123456789", "ORD-2024-55812", "1Z999AA10123456784").
    (re.compile(r"(?<![0-9A-Za-z_#])#\d{4,}" + _END), "<order>", 4),
    (re.compile(_START + _NOT_DATE + r"[0-9A-Za-z][0-9A-Za-z_-]*(?![0-9A-Za-z_-])"), "<order>", 5),
)


_PLACEHOLDER = re.compile("|".join(sorted({p for _, p, _ in _SCRUB})))


def scrub(text: str) -> str:
    """`text` with e-mail addresses, phone, card and order numbers replaced by placeholders."""
    for pattern, placeholder, least in _SCRUB:
        text = pattern.sub(partial(_hide, placeholder, least), text)
    return text


def _hide(placeholder: str, least: int, match: re.Match[str]) -> str:
    return placeholder if sum(c.isdigit() for c in match[0]) >= least else match[0]


# One query as a search leaves it: created (Unix time), request id, position, text, shaped
# answer, latency in ms, collection, model. Turned into a row by the writer thread.
Entry = tuple[float, str, int, str, Shaped, float, str, str]


class QueryLog:
    def __init__(
        self,
        url: str,
        retention_days: int,
        *,
        detector: QueryLanguageDetector | None,
        max_query_chars: int,
        queue_size: int,
        dropped: Counter,
        purge_every_s: float = PURGE_EVERY_S,
        linger_s: float = LINGER_S,
    ) -> None:
        self.engine = connect(url)
        self.retention_days = retention_days
        self.detector = detector
        self.max_query_chars = max_query_chars
        self.dropped = dropped
        self.purge_every_s = purge_every_s
        self.linger_s = linger_s
        # Entries out of the queue and not yet written count against its size as well, so a
        # writer that is behind holds at most twice the queue.
        self._batch = min(BATCH, queue_size)
        self._queue: queue.Queue[Entry | threading.Event | None] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._run, name="querylog-writer", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(
        cls, settings: Settings, detector: QueryLanguageDetector | None, metrics: Metrics
    ) -> QueryLog:
        url = database_url(settings.query_log)
        assert url is not None, "the query log is off"
        query_log = cls(
            url,
            settings.query_log_retention_days,
            detector=detector,
            max_query_chars=settings.max_query_chars,
            queue_size=QUEUE_SIZE,
            dropped=metrics.querylog_dropped,
        )
        shown = make_url(url).render_as_string(hide_password=True)
        log.info("query log on: %s, %d days kept", shown, settings.query_log_retention_days)
        return query_log

    def record(
        self,
        request_id: str,
        texts: Sequence[str],
        shaped: Sequence[Shaped],
        took_ms: float,
        collection: str,
        model: str,
    ) -> None:
        """Queues a request's queries; never waits (a full queue drops and counts them)."""
        now = time.time()
        for position, (text, answer) in enumerate(zip(texts, shaped, strict=True)):
            entry = (now, request_id, position, text, answer, took_ms, collection, model)
            try:
                self._queue.put_nowait(entry)
            except queue.Full:
                self.dropped.labels("queue_full").inc()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Waits until what this process queued before now is written (False: not in time)."""
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def add_feedback(
        self, request_id: str, position: int, clicked_id: str | None, helpful: bool | None
    ) -> bool:
        """Ties a click or a vote to the latest logged search with this request id and
        position; False when there is none. Blocking: call from a thread; ConnectionError when
        the database cannot be reached."""
        self.flush()
        latest = (
            select(searches.c.id)
            .where(searches.c.request_id == request_id, searches.c.position == position)
            .order_by(searches.c.id.desc())
            .limit(1)
        )
        try:
            with self.engine.begin() as conn:
                search_id = conn.execute(latest).scalar()
                if search_id is None:
                    return False
                row = {"search_id": search_id, "clicked_id": clicked_id, "helpful": helpful}
                conn.execute(insert(feedback), {**row, "created_at": datetime.now(UTC)})
        except exc.OperationalError as error:
            message = f"the query log's database cannot be reached: {error.orig}"
            raise ConnectionError(message) from error
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Writes what is queued (within `timeout`), stops the thread, closes the connections."""
        try:
            self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        except queue.Full:
            log.warning("query log: the writer did not drain its queue in %.0f s", timeout)
        self.engine.dispose()

    # --- the writer thread ---

    def _run(self) -> None:
        next_purge = 0.0
        while True:
            if time.monotonic() >= next_purge:
                self._purge()
                next_purge = time.monotonic() + self.purge_every_s
            try:
                item = self._queue.get(timeout=max(0.0, next_purge - time.monotonic()))
            except queue.Empty:
                continue
            entries: list[Entry] = []
            markers: list[threading.Event] = []
            gathered_by = time.monotonic() + self.linger_s
            while item is not None:
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    entries.append(item)
                if markers or len(entries) >= self._batch:
                    break
                wait = gathered_by - time.monotonic()
                try:
                    item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
            if entries:
                try:
                    self._write(entries)
                except Exception:  # the database may be down for a while; the service goes on
                    log.exception("query log: %d searches not written", len(entries))
                    self.dropped.labels("write_failed").inc(len(entries))
            for marker in markers:
                marker.set()
            if item is None:
                return

    def _purge(self) -> None:
        try:
            deleted = purge(self.engine, self.retention_days)
        except Exception:
            log.exception("query log: old rows not deleted")
            return
        if deleted:
            days = self.retention_days
            log.info("query log: %d searches older than %d days deleted", deleted, days)

    def _row(self, entry: Entry) -> dict[str, Any]:
        created, request_id, position, text, answer, took_ms, collection, model = entry
        raw = text[: self.max_query_chars]
        query = scrub(raw)
        # Read without the placeholders: "<email>" is no English word in a Spanish query. When
        # nothing was scrubbed the search has read this very text already: its language (one
        # of the FAQ's) is not read again.
        bare = _PLACEHOLDER.sub(" ", query)
        known = answer.query_lang if query == raw else None
        lang, mixed = (
            self.detector.read(bare, known=known) if self.detector is not None else (None, False)
        )
        hits = [
            {"id": h.id, "topic": topic, "score": round(score, 6)}
            for h, topic, score in zip(answer.hits, answer.topics, answer.scores, strict=True)
        ]
        top = hits[0] if hits else {}
        return {
            "created_at": datetime.fromtimestamp(created, UTC),
            "request_id": request_id,
            "position": position,
            "query": query,
            "lang": lang,
            "code_mixed": mixed,
            "answered": answer.answered,
            "answer_score": answer.answer_score,
            "top_id": top.get("id"),
            "top_topic": top.get("topic"),
            "top_score": top.get("score"),
            "hits": hits,
            "latency_ms": round(took_ms, 3),
            "collection": collection,
            "model": model,
        }

    def _write(self, entries: list[Entry]) -> None:
        rows = [self._row(e) for e in entries]
        with self.engine.begin() as conn:
            conn.execute(insert(searches), rows)
