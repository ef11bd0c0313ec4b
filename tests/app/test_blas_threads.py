"""The service caps numpy's BLAS threads at one: OpenBLAS's spinning idle threads took the cores
ONNX Runtime and the request threads needed (c=32: 450 -> 642 req/s here). It also turns
Hugging Face tokenizers' batch thread pool off.

Each case runs in its own process: the BLAS pool is process-wide state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, os, sys, tempfile
from pathlib import Path
from threadpoolctl import threadpool_info
from app.core.config import Settings
from app.main import create_app
from tests.fakes import FakeEncoder
from tests.app.conftest import serve

def blas():
    # An OpenMP-threaded BLAS (faiss's) reports the calling thread's OpenMP setting: faiss's
    # threads are capped per call (index_builder.store.ivf).
    return sorted({
        p["num_threads"] for p in threadpool_info()
        if p["user_api"] == "blas" and p.get("threading_layer") != "openmp"
    })

before = blas()
d = Path(tempfile.mkdtemp())
settings = Settings(index_path=d / "q", jobs_dir=d / "j")
with serve(create_app(settings, encoder_factory=lambda _: FakeEncoder(dim=384))):
    print(json.dumps({
        "before": before, "serving": blas(),
        "tokenizers": os.environ.get("TOKENIZERS_PARALLELISM"),
    }))
"""


def test_lifespan_caps_the_blas_threads_and_the_tokenizer_pool() -> None:
    # The caller's environment says the opposite: the service's choice is what counts.
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true", OPENBLAS_NUM_THREADS="2")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["tokenizers"] == "false"
    assert seen["before"], "numpy is not linked to a BLAS that threadpoolctl can see"
    assert seen["before"] == [2]
    assert seen["serving"] == [1]
