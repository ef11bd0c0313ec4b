"""Prometheus metrics, one registry per app so that several apps (tests) never collide.

With `faq-serve --workers N` (N > 1) a scrape reaches one worker, so prometheus_client's
multiprocess mode runs: every worker writes its values to `PROMETHEUS_MULTIPROC_DIR` and
`/metrics` on any of them exports the sum (gauges: the live workers' sum or max), plus every
live worker's process metrics labelled by `pid`. `MetricsMiddleware` times and logs requests.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from prometheus_client import (
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from index_builder.store import IndexInfo

access_log = logging.getLogger("app.access")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Explicit buckets: the interesting range for a CPU/GPU encoder plus a vector search is 1 ms-1 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Tokenisation and queue waits live well below a millisecond when the service is idle.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class InfoGauge:
    """An info metric (`<name>_info{labels} 1`) that works in multiprocess mode too, where
    prometheus_client's `Info` is not shared. Setting new labels drops the previous ones."""

    def __init__(self, gauge: Gauge, labelnames: tuple[str, ...]) -> None:
        self.labelnames = labelnames
        self._gauge = gauge
        self._current: tuple[str, ...] | None = None

    def info(self, values: Mapping[str, str]) -> None:
        key = tuple(str(values.get(label, "")) for label in self.labelnames)
        if key == self._current:
            return
        if self._current is not None:
            # In multiprocess mode a removed series stays in this process's file: zero it first.
            self._gauge.labels(*self._current).set(0)
            self._gauge.remove(*self._current)
        self._gauge.labels(*key).set(1)
        self._current = key


def _file_pids(path: Path) -> set[int]:
    """The pids that wrote values into a multiprocess directory (`<kind>_<pid>.db`)."""
    tails = (file.stem.rsplit("_", 1)[-1] for file in path.glob("*.db"))
    return {int(tail) for tail in tails if tail.isdigit()}


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def forget_dead_workers(path: Path | None) -> None:
    """Drop the live gauges of workers that died without their atexit (SIGKILL, OOM): else a
    dead worker's queue depth or index info would be summed into /metrics forever."""
    if path is not None:
        for pid in _file_pids(path):
            if not _alive(pid):
                mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


class WorkerProcessCollector(Collector):
    """Process metrics of every live worker writing to a multiprocess directory, by `pid`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for pid in sorted(p for p in _file_pids(self.path) if _alive(p)):
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in collector.collect():
                out = merged.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for s in family.samples:
                    out.add_sample(s.name, {**s.labels, "pid": str(pid)}, s.value)
        yield from merged.values()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # what /metrics exports
        value = os.environ.get(MULTIPROC_ENV)
        self.multiprocess_dir = Path(value) if value else None
        registry: CollectorRegistry | None = self.registry
        if self.multiprocess_dir is not None:
            # Values live in the directory's files; the metric objects need no registry.
            path = str(self.multiprocess_dir)
            MultiProcessCollector(self.registry, path=path)  # type: ignore[no-untyped-call]
            self.registry.register(WorkerProcessCollector(self.multiprocess_dir))
            registry = None
            atexit.register(mark_process_dead, os.getpid(), path)
        else:
            ProcessCollector(registry=self.registry)
        self.registry.register(PLATFORM_COLLECTOR)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        def gauge(
            name: str, doc: str, mode: Literal["livemax", "livesum"], labels: tuple[str, ...] = ()
        ) -> Gauge:
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

        def counter(name: str, doc: str, reasons: tuple[str, ...]) -> Counter:
            found = Counter(name, doc, ["reason"], registry=registry)
            for reason in reasons:
                # Exported at 0 from the start, so rate() and alerts see the series before a spike.
                found.labels(reason)
            return found

        self.request_duration = histogram(
            "faq_http_request_duration_seconds",
            "HTTP request duration by route template, method and status.",
            LATENCY_BUCKETS,
            ("route", "method", "status"),
        )
        self.encode_duration = histogram(
            "faq_encode_duration_seconds",
            "Query encoding per request (tokenise + queue wait + ONNX Runtime).",
            LATENCY_BUCKETS,
        )
        self.search_duration = histogram(
            "faq_qdrant_search_duration_seconds",
            "One vector search call (a batch of queries).",
            FAST_BUCKETS,
        )
        self.search_batch_size = histogram(
            "faq_search_batch_size", "Queries per vector search call.", BATCH_SIZE_BUCKETS
        )
        self.errors = Counter("faq_errors", "Errors by kind.", ["kind"], registry=registry)
        self.truncated = Counter(
            "faq_truncated_queries", "Queries cut to the model's limit.", registry=registry
        )
        self.abstained = Counter(
            "faq_search_abstained",
            "Searches answered with answered=false: the best answer scored below min_score.",
            registry=registry,
        )
        self.index_points = gauge("faq_index_points", "Entries in the live collection.", "livemax")
        model_labels, index_labels = ("fingerprint", "name", "dim"), ("collection", "fingerprint")
        self.model_info = InfoGauge(
            gauge("faq_model_info", "The served model.", "livemax", model_labels), model_labels
        )
        self.index_info = InfoGauge(
            gauge("faq_index_info", "The live collection.", "livemax", index_labels), index_labels
        )

        # --- the inference worker: where a query's encoding time goes ---
        self.tokenize_duration = histogram(
            "faq_tokenize_duration_seconds",
            "Tokenisation of the queries of one request (in the request thread).",
            FAST_BUCKETS,
        )
        self.queue_wait_duration = histogram(
            "faq_queue_wait_duration_seconds",
            "Time a query waited in the inference queue before its batch started.",
            FAST_BUCKETS,
        )
        self.inference_duration = histogram(
            "faq_inference_duration_seconds",
            "One ONNX Runtime run over a batch of tokenised queries.",
            FAST_BUCKETS,
        )
        self.batch_size = histogram("faq_batch_size", "Queries per model run.", BATCH_SIZE_BUCKETS)
        self.batch_tokens = histogram(
            "faq_batch_tokens",
            "Tokens per model run, padding included (queries x longest query).",
            BATCH_TOKEN_BUCKETS,
        )
        self.queue_depth = gauge(
            "faq_queue_depth", "Queries waiting in the inference queue.", "livesum"
        )
        self.rejected = counter(
            "faq_rejected_requests",
            "Queries refused by the inference queue, by reason (queue_full, deadline).",
            ("queue_full", "deadline"),
        )
        self.querylog_dropped = counter(
            "faq_querylog_dropped",
            "Searches the query log did not keep, by reason: queue_full (the writer is behind; "
            "the search was answered), write_failed (the database refused a batch).",
            ("queue_full", "write_failed"),
        )

    def set_index(self, info: IndexInfo) -> None:
        """The live index as this worker last checked it (every worker, every check)."""
        self.index_points.set(info.points)
        self.index_info.info({"collection": info.collection, "fingerprint": info.fingerprint})


@contextmanager
def multiprocess_metrics() -> Iterator[Path]:
    """For the launcher of several workers: an empty multiprocess directory, named in the
    environment the workers inherit, for as long as they run. A directory given in
    `PROMETHEUS_MULTIPROC_DIR` is emptied of earlier runs' files; otherwise a temporary one is
    made and removed afterwards."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="faq-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


class MetricsMiddleware:
    """Times every HTTP request by route template, method and status, and writes the access
    log line (all 4xx/5xx, a share `sample` of the rest). Plain ASGI: no extra task and stream
    per request as with BaseHTTPMiddleware."""

    def __init__(self, app: ASGIApp, metrics: Metrics, sample: float = 1.0) -> None:
        self.app = app
        self.metrics = metrics
        self.sample = sample
        self._children: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - start
            # The template, not the raw path, so label cardinality stays bounded.
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            key = (route, method, status)
            if key not in self._children:
                labels = (route, method, str(status))
                self._children[key] = self.metrics.request_duration.labels(*labels)
            self._children[key].observe(elapsed)
            sampled = status >= 400 or self.sample >= 1.0 or random.random() < self.sample
            if sampled and access_log.isEnabledFor(logging.INFO):
                extra: dict[str, object] = {"method": method, "route": route, "status": status}
                extra["duration_ms"] = round(elapsed * 1000, 3)
                access_log.info("%s %s %d", method, route, status, extra=extra)
