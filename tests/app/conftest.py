"""API fixtures: the real app with its lifespan, served by uvicorn on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from index_builder.faq import read_faq
from index_builder.model.encoder import Encoder, OnnxEncoder
from index_builder.store import EmbeddedStore
from tests.fakes import FakeEncoder

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FAQ = REPO / "data" / "faq.jsonl"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """Run `app` under uvicorn in a thread (lifespan included) and yield a client for it."""
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start (see the log above)")
        if time.monotonic() > deadline:
            raise TimeoutError("server did not start in 60 s")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{config.port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def build_index(path: Path, encoder: Encoder, faq: Path = SAMPLE_FAQ) -> None:
    EmbeddedStore(path).build(read_faq(faq), encoder, progress=False)


def settings_for(model_dir: Path, qdrant_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_dir": model_dir,
        "index_path": qdrant_path,
        "device": "cpu",
    }
    return Settings.model_validate({**values, **overrides})


def fake_app(tmp_path: Path, **overrides: object) -> FastAPI:
    """The real app on the fake encoder (the model beside the point), over an index of the
    sample FAQ built in `tmp_path / "qdrant"`; `overrides` are settings."""
    build_index(tmp_path / "qdrant", FakeEncoder(dim=384))
    settings = settings_for(tmp_path / "unused-model", tmp_path / "qdrant", **overrides)
    return create_app(settings, encoder_factory=lambda s: FakeEncoder(dim=384))


@pytest.fixture(scope="session")
def real_index_path(real_onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qdrant-real")
    build_index(path, OnnxEncoder.load(real_onnx_dir))
    return path


@pytest.fixture(scope="session")
def api(real_onnx_dir: Path, real_index_path: Path) -> Iterator[httpx.Client]:
    """The service on the real exported model and a real embedded Qdrant index."""
    with serve(create_app(settings_for(real_onnx_dir, real_index_path))) as client:
        yield client


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder(dim=384)
