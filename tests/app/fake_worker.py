"""A worker app for process-level tests: the real app with the fake encoder, plus `/pid`."""

from __future__ import annotations

import os

from fastapi import FastAPI

from app.core.config import get_settings
from app.main import create_app
from tests.fakes import FakeEncoder


def create() -> FastAPI:
    app = create_app(get_settings(), encoder_factory=lambda _: FakeEncoder(dim=384))

    @app.get("/pid")
    def pid() -> dict[str, int]:
        """Which worker process answered."""
        return {"pid": os.getpid()}

    return app
