"""A worker app for the chaos suite's process-level faults: the real app on the fake encoder,
each model run taking `CHAOS_MODEL_S` seconds (so a reindex is slow enough to be killed in
the middle)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from fastapi import FastAPI

from app.core.config import get_settings
from app.main import create_app
from index_builder.model.encoder import EncodeResult, Tokenized
from tests.fakes import FakeEncoder


class SlowEncoder(FakeEncoder):
    def __init__(self, seconds: float) -> None:
        super().__init__(dim=384)
        self.seconds = seconds

    def encode_tokenized(self, encodings: Sequence[Tokenized]) -> EncodeResult:
        time.sleep(self.seconds)
        return super().encode_tokenized(encodings)


def create() -> FastAPI:
    seconds = float(os.environ.get("CHAOS_MODEL_S", "0"))
    return create_app(get_settings(), encoder_factory=lambda _: SlowEncoder(seconds))
