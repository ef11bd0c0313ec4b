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
            "Query encoding (tokenise + ONNX Runtime) duration.",
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
