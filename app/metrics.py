"""Prometheus metrics, one registry per app so that several apps (tests) never collide."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

access_log = logging.getLogger("app.access")

# Explicit buckets: the interesting range for a CPU/GPU encoder plus a vector search is 1 ms-1 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Tokenisation and queue waits live well below a millisecond when the service is idle.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.request_duration = Histogram(
            "faq_http_request_duration_seconds",
            "HTTP request duration by route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.encode_duration = Histogram(
            "faq_encode_duration_seconds",
            "Query encoding per request (tokenise + batcher queue wait + ONNX Runtime).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_duration = Histogram(
            "faq_qdrant_search_duration_seconds",
            "Qdrant search duration.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter("faq_errors", "Errors by kind.", ["kind"], registry=self.registry)
        self.truncated = Counter(
            "faq_truncated_queries", "Queries cut to the model's limit.", registry=self.registry
        )
        self.index_points = Gauge(
            "faq_index_points", "Entries in the live collection.", registry=self.registry
        )
        self.model_info = Info("faq_model", "The served model.", registry=self.registry)
        self.index_info = Info("faq_index", "The live collection.", registry=self.registry)

        # --- micro-batching: where a query's encoding time goes ---
        self.tokenize_duration = Histogram(
            "faq_tokenize_duration_seconds",
            "Tokenisation of the queries of one request (in the request thread).",
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait_duration = Histogram(
            "faq_queue_wait_duration_seconds",
            "Time a query waited in the batcher's queue before its batch started.",
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "faq_inference_duration_seconds",
            "One ONNX Runtime run over a batch of tokenised queries.",
            buckets=FAST_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "faq_batch_size",
            "Queries per model run.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            "faq_batch_tokens",
            "Tokens per model run, padding included (queries x longest query).",
            buckets=BATCH_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "faq_queue_depth", "Queries waiting in the batcher's queue.", registry=self.registry
        )
        self.rejected = Counter(
            "faq_rejected_requests",
            "Queries refused by the batcher, by reason (queue_full, deadline).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("queue_full", "deadline"):
            # Exported at 0 from the start, so rate() and alerts see the series before a spike.
            self.rejected.labels(reason)


def install_metrics_middleware(app: FastAPI, metrics: Metrics) -> None:
    @app.middleware("http")
    async def _observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            # The template, not the raw path, so label cardinality stays bounded.
            template = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - start
            metrics.request_duration.labels(template, request.method, str(status)).observe(elapsed)
            access_log.info(
                "%s %s %d",
                request.method,
                template,
                status,
                extra={
                    "method": request.method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
