"""A service whose index is missing or was built by another model says so and refuses to search."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.main import create_app
from index_builder.model.encoder import ProviderUnavailableError
from tests.app.conftest import build_index, serve, settings_for
from tests.fakes import FakeEncoder


def _check_unavailable(real_onnx_dir: Path, qdrant_path: Path, needle: str) -> None:
    with serve(create_app(settings_for(real_onnx_dir, qdrant_path))) as api:
        assert api.get("/health/live").status_code == 200
        ready = api.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False
        assert needle in ready.json()["problem"]
        r = api.post("/search", json={"query": "where is my order"})
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["type"] == "service_unavailable"
        assert "faq-index build" in error["message"] and needle in error["message"]


def test_missing_index(real_onnx_dir: Path, tmp_path: Path) -> None:
    _check_unavailable(real_onnx_dir, tmp_path / "empty", "no index behind alias")


def test_index_built_by_another_model(real_onnx_dir: Path, tmp_path: Path) -> None:
    build_index(tmp_path / "other", FakeEncoder(dim=384))
    _check_unavailable(real_onnx_dir, tmp_path / "other", "was built by model")


def test_cuda_requested_without_fallback_refuses_to_start(
    real_onnx_dir: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA; the refusal is about hosts without it")
    settings = settings_for(real_onnx_dir, tmp_path / "q", device="cuda")
    app = create_app(settings)
    with pytest.raises(ProviderUnavailableError):
        app.state.encoder_factory(settings)
    # With the fallback allowed it starts on CPU and says so.
    fallback = settings_for(real_onnx_dir, tmp_path / "q", device="cuda", allow_cpu_fallback=True)
    with serve(create_app(fallback)) as api:
        assert api.get("/health/ready").json()["providers"] == ["CPUExecutionProvider"]


def test_serving_imports_neither_torch_nor_transformers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, app.main, app.cli, app.index_cli, index_builder.model.encoder;"
        "bad = {'torch', 'transformers'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
