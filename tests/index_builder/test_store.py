"""Versioned collections and the alias on real Qdrant local mode; the model is beside the point."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from index_builder.encoder import FakeEncoder
from index_builder.faq import FaqItem
from index_builder.store import (
    FaqIndex,
    IndexBuildError,
    IndexMissingError,
    IndexModelMismatchError,
    open_client,
)


def _items(n: int, answer: str = "answer") -> list[FaqItem]:
    langs = ["en", "es", "id"]
    return [
        FaqItem(
            id=f"faq-{i}",
            question=f"question number {i} about topic{i}",
            answer=f"{answer} {i}",
            lang=langs[i % 3],
            market="mx" if i % 2 else "global",
            tags=[f"topic{i}"],
        )
        for i in range(n)
    ]


class FailingEncoder(FakeEncoder):
    """Fails on the second batch, like a crash half-way through an embedding run."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.calls = 0

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return super().encode_passages(texts)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[QdrantClient]:
    c = open_client(path=tmp_path / "qdrant")
    yield c
    c.close()


def test_build_then_rebuild_moves_the_alias(client: QdrantClient) -> None:
    index = FaqIndex(client, alias="faq")
    encoder = FakeEncoder(dim=16)
    with pytest.raises(IndexMissingError):
        index.info()
    info, built = index.build(_items(10), encoder, progress=False)
    assert built and info.collection == "faq_v1" and info.points == 10
    assert info.fingerprint == encoder.fingerprint

    # Same content, same model: nothing to do.
    again, built = index.build(_items(10), encoder, skip_if_unchanged=True, progress=False)
    assert not built and again.collection == "faq_v1"

    info, built = index.build(_items(12, "new"), encoder, skip_if_unchanged=True, progress=False)
    assert built and info.collection == "faq_v2" and info.points == 12
    hits = index.search(encoder.encode_queries(["question number 11"])[0], 3)
    assert hits[0].id == "faq-11" and hits[0].answer == "new 11"


def test_failed_build_leaves_the_previous_alias_serving(client: QdrantClient) -> None:
    index = FaqIndex(client)
    index.build(_items(5), FakeEncoder(dim=16), progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        index.build(_items(10), FailingEncoder(), batch_size=4, progress=False)
    assert index.current_collection() == "faq_v1"
    assert index.info().points == 5
    assert [name for _, name in index.versions()] == ["faq_v1"]  # the half-built one is gone


def test_old_collections_are_pruned_to_keep(client: QdrantClient) -> None:
    index = FaqIndex(client, keep=2)
    for n in range(4):
        index.build(_items(3 + n), FakeEncoder(dim=16), progress=False)
    assert [name for _, name in index.versions()] == ["faq_v3", "faq_v4"]
    assert index.current_collection() == "faq_v4"


def test_model_fingerprint_is_checked(client: QdrantClient) -> None:
    index = FaqIndex(client)
    index.build(_items(3), FakeEncoder(dim=16), progress=False)
    assert index.check_model(FakeEncoder(dim=16).fingerprint).points == 3
    with pytest.raises(IndexModelMismatchError, match="rebuild"):
        index.check_model("another-model:fp32:0123")


def test_filters(client: QdrantClient) -> None:
    index = FaqIndex(client)
    encoder = FakeEncoder(dim=16)
    index.build(_items(12), encoder, progress=False)
    vector = encoder.encode_queries(["question"])[0]
    assert {h.lang for h in index.search(vector, 12, lang="es")} == {"es"}
    both = index.search(vector, 12, lang="id", market="mx")
    assert both and all(h.lang == "id" and h.market == "mx" for h in both)


def test_collection_named_like_the_alias_is_refused(client: QdrantClient) -> None:
    client.create_collection(
        "faq", vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE)
    )
    with pytest.raises(IndexBuildError, match="named 'faq' like the alias"):
        FaqIndex(client).build(_items(2), FakeEncoder(dim=16), progress=False)


def test_empty_build_is_refused(client: QdrantClient) -> None:
    with pytest.raises(IndexBuildError):
        FaqIndex(client).build([], FakeEncoder(dim=16), progress=False)
