"""Serving on CUDA: the real model's fp16 variant, micro-batching on, answers like fp32.

Runs wherever onnxruntime's CUDA execution provider is installed (onnxruntime-gpu with its
CUDA libraries); skipped only when it is absent, never because a check failed.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import onnxruntime as ort
import pytest

from app.main import create_app
from index_builder.model.encoder import CPU, CUDA, OnnxEncoder
from tests.app.conftest import build_index, serve, settings_for

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        CUDA not in ort.get_available_providers(),
        reason="onnxruntime's CUDAExecutionProvider is not available in this install",
    ),
]

QUERIES = [
    "can I cancel mi pedido",
    "barang saya belum sampai, where is my order",
    "wie lange dauert der refund",
    "je veux changer my shipping address",
    "quero devolver this item",
    "lupa password akun saya",
    "how much cuesta el envío to Mexico",
    "paket saya hilang, can you send a replacement?",
]


@pytest.fixture(scope="module")
def fp16_index(real_onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # fp16 vectors have their own fingerprint: the service refuses an index built by fp32.
    path = tmp_path_factory.mktemp("qdrant-fp16")
    build_index(path, OnnxEncoder.load(real_onnx_dir, variant="fp16", providers=[CUDA, CPU]))
    return path


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not exported")


def test_fp16_on_cuda_batches_and_matches_fp32_top3(
    api: httpx.Client, real_onnx_dir: Path, fp16_index: Path
) -> None:
    # device=cuda refuses to start without CUDA; batching is left on auto, which must turn on.
    settings = settings_for(real_onnx_dir, fp16_index, device="cuda", model_variant="fp16")
    with serve(create_app(settings)) as gpu, ThreadPoolExecutor(len(QUERIES)) as pool:
        ready = gpu.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert CUDA in ready.json()["providers"]
        assert ":fp16:" in ready.json()["model"]

        def top3(query: str) -> list[tuple[str, float]]:
            r = gpu.post("/search", json={"query": query, "top_k": 3})
            assert r.status_code == 200, r.text
            return [(h["id"], h["score"]) for h in r.json()["results"]]

        # Concurrent requests, so that the batcher has company to batch.
        on_gpu = list(pool.map(top3, QUERIES))
        assert _metric(gpu, "faq_queue_wait_duration_seconds_count") == len(QUERIES)
        assert _metric(gpu, "faq_batch_size_sum") == len(QUERIES)

    for query, half in zip(QUERIES, on_gpu, strict=True):
        r = api.post("/search", json={"query": query, "top_k": 10})
        full = [(h["id"], h["score"]) for h in r.json()["results"]]
        fp32_score = dict(full)
        # Same top 3 in the same order, except where fp32 itself scores two entries within
        # 0.005 of each other (fp16 moves scores by about 1e-3): rank by rank, the entry fp16
        # puts at rank i scores, in fp32, within 0.005 of fp32's own rank-i entry.
        for rank, (faq_id, score) in enumerate(half):
            assert faq_id in fp32_score, (query, half, full[:3])
            assert fp32_score[faq_id] >= full[rank][1] - 0.005, (query, half, full[:3])
            assert score == pytest.approx(fp32_score[faq_id], abs=0.01)
