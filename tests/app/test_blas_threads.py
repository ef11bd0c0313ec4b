"""The service caps numpy's BLAS threads (FAQ_BLAS_THREADS): OpenBLAS's spinning idle threads
took the cores ONNX Runtime and the request threads needed (c=32: 450 -> 642 req/s here). It
also turns Hugging Face tokenizers' batch thread pool off (FAQ_TOKENIZER_PARALLELISM).

Each case runs in its own process: the BLAS pool is process-wide state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, os, sys, tempfile
from pathlib import Path
from threadpoolctl import threadpool_info
from app.core.config import Settings
from app.main import create_app
from index_builder.encoder import FakeEncoder
from tests.app.conftest import serve

def blas():
    # An OpenMP-threaded BLAS (faiss's) reports the calling thread's OpenMP setting: faiss's
    # threads are capped per call (index_builder.store.ann), checked below.
    return sorted({
        p["num_threads"] for p in threadpool_info()
        if p["user_api"] == "blas" and p.get("threading_layer") != "openmp"
    })

before = blas()
d = Path(tempfile.mkdtemp())
settings = Settings(
    qdrant_path=d / "q", jobs_dir=d / "j", blas_threads=int(sys.argv[1]),
    tokenizer_parallelism=sys.argv[2] == "on",
)
with serve(create_app(settings, encoder_factory=lambda _: FakeEncoder(dim=384))):
    from index_builder.store import ann
    print(json.dumps({
        "before": before, "serving": blas(), "faiss": ann._threads,
        "tokenizers": os.environ.get("TOKENIZERS_PARALLELISM"),
    }))
"""


@pytest.mark.parametrize(("threads", "tokenizers"), [(1, "off"), (3, "on")])
def test_lifespan_sets_the_blas_threads(threads: int, tokenizers: str) -> None:
    # The caller's environment says the opposite: the setting is what counts.
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true" if tokenizers == "off" else "false")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(threads), tokenizers],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["tokenizers"] == ("true" if tokenizers == "on" else "false")
    if not seen["before"]:
        pytest.skip("numpy is not linked to a BLAS that threadpoolctl can see")
    assert seen["serving"] == [threads]
    assert seen["faiss"] == threads
