"""Dependencies as `Annotated` aliases; the heavy objects live on `app.state`, set by lifespan."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from app.core.config import Settings
from app.metrics import Metrics
from app.services.index_guard import IndexGuard
from app.services.reindex import AdminService
from app.services.search import SearchService
from index_builder.encoder import Encoder


def _settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def _metrics(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


def _encoder(request: Request) -> Encoder:
    return cast(Encoder, request.app.state.encoder)


def _guard(request: Request) -> IndexGuard:
    return cast(IndexGuard, request.app.state.guard)


def _search_service(request: Request) -> SearchService:
    return cast(SearchService, request.app.state.search)


def _admin(request: Request) -> AdminService:
    return cast(AdminService, request.app.state.admin)


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
EncoderDep = Annotated[Encoder, Depends(_encoder)]
GuardDep = Annotated[IndexGuard, Depends(_guard)]
SearchServiceDep = Annotated[SearchService, Depends(_search_service)]
AdminDep = Annotated[AdminService, Depends(_admin)]
