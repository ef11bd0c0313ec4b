"""The FastAPI application: `create_app()` builds it, `lifespan` owns the heavy objects."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import Counter

from app.api.errors import install_error_handlers
from app.api.openapi import build_openapi
from app.api.responses import OrjsonResponse
from app.api.routes import admin, analytics, feedback, health, info, openai, search
from app.core.config import Settings, get_settings
from app.core.heap import freeze_long_lived, thaw
from app.core.security import ApiKeys
from app.metrics import Metrics, MetricsMiddleware
from app.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from app.services.answering import Answering, build_answering, served_calibration
from app.services.batcher import build_query_encoding
from app.services.index_guard import IndexUnavailableError, open_index_guard, retrieval
from app.services.reindex import create_admin
from app.services.search import SearchService
from index_builder.indexing.quality_gate import load_golden
from index_builder.model.encoder import Encoder

log = logging.getLogger("app")

EncoderFactory = Callable[[Settings], Encoder]


def load_onnx_encoder(settings: Settings) -> Encoder:
    # Imported here so that importing the app (and its tests with a fake encoder) stays cheap.
    from index_builder.model.encoder import OnnxEncoder, resolve_providers

    encoder = OnnxEncoder.load(
        settings.model_dir,
        variant=settings.model_variant,
        providers=resolve_providers(settings.device),
        allow_cpu_fallback=settings.allow_cpu_fallback,
        intra_op_threads=settings.intra_op_threads,
        spinning=False,  # see OnnxEncoder.load
    )
    log.info("model %s running on %s", encoder.fingerprint, ", ".join(encoder.providers))
    return encoder


def served_answering(
    settings: Settings, encoder: Encoder, abstained: Counter | None = None
) -> Answering:
    """What the service does with a query's hits (fusion's lexicon, grouping, the answer's
    language, abstain), as `settings` configure it; `faq-bench`'s raw measure runs the same."""
    return build_answering(
        encoder,
        served_calibration(settings.model_dir, encoder.fingerprint, settings.model_variant),
        min_score=settings.min_score,
        query_languages=settings.query_languages,
        low_accuracy=settings.query_lang_low_accuracy,
        abstained=abstained,
        retrieval=retrieval(settings),
        collection_thresholds=settings.recalibrate,
    )


def limit_threads() -> None:
    """Cap the BLAS and tokenizer pools of this process (each worker runs its own lifespan):
    OpenBLAS's idle threads spin after every small matrix product, and the tokenizers' pool,
    like them, takes the cores that ONNX Runtime and the request threads need."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    limit_threads()
    # Failing here (model missing, CUDA asked for and absent) stops the server from starting.
    encoder = app.state.encoder_factory(settings)
    warmup = getattr(encoder, "warmup", None)
    if callable(warmup):
        warmup()
    else:
        encoder.encode_queries(["warm up"])
    metrics.model_info.info(
        {"fingerprint": encoder.fingerprint, "name": encoder.name, "dim": str(encoder.dim)}
    )
    guard = open_index_guard(settings, encoder.fingerprint, on_check=metrics.set_index)
    try:
        info = guard.current()
        log.info(
            "serving %s (%d entries) behind alias %r", info.collection, info.points, info.alias
        )
    except IndexUnavailableError as exc:
        # Start anyway: /health/ready says why, and the service recovers once the index appears.
        log.warning("not ready: %s", exc)
    app.state.encoder = encoder
    app.state.guard = guard
    # Grouping, answer language, abstain: the off-topic anchors are encoded here, once.
    answering = served_answering(settings, encoder, metrics.abstained)
    # From here on the inference worker owns the model (the admin's model calls included); it
    # is stopped before the encoder closes.
    queries = app.state.queries = build_query_encoding(encoder, settings, metrics)
    queries.start()
    app.state.search = SearchService(
        guard,
        metrics,
        settings.max_query_chars,
        queries,
        answering=answering,
        deadline_s=settings.batch_deadline_s,
    )
    app.state.query_log = None
    if settings.query_log != "off":  # imported only when on: it loads SQLAlchemy
        from app.services.querylog import QueryLog

        app.state.query_log = QueryLog.from_settings(settings, answering.detector, metrics)
    # Reindex, rollback, edits; also fails the jobs a killed process left running.
    app.state.admin = create_admin(settings, encoder, guard, app.state.golden)
    freeze_long_lived("service loaded")
    try:
        yield
    finally:
        if app.state.query_log is not None:
            app.state.query_log.close()
        app.state.admin.shutdown()
        queries.stop()
        guard.close()
        close = getattr(encoder, "close", None)
        if callable(close):
            close()
        thaw()


def create_app(
    settings: Settings | None = None, encoder_factory: EncoderFactory | None = None
) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Code-switched FAQ search",
        version="0.1.0",
        summary="Answers mixed-language shopper questions with the right FAQ entry.",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.encoder_factory = encoder_factory or load_onnx_encoder
    # Resolved here so that an unreadable key file or golden queries file stops the service
    # before it listens.
    app.state.api_keys = ApiKeys.from_settings(settings)
    app.state.golden = load_golden(settings.golden_queries) if settings.golden_queries else None
    # Middlewares, innermost first: the 500 handler, the body limit (its 413 and 408 are then
    # timed and logged like any answer), metrics and the access log, CORS, the request id
    # (outermost: every response, a 413 included, carries it).
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.body_read_timeout_s,
    )
    app.add_middleware(
        MetricsMiddleware, metrics=app.state.metrics, sample=settings.access_log_sample
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestIdMiddleware)
    for module in (search, feedback, openai, info, health, admin, analytics):
        app.include_router(module.router)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
