"""Versioned collections and the alias on real Qdrant local mode; the model is beside the point."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
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
    ReadWriteLock,
    RollbackError,
    UnknownCollectionError,
    open_client,
    point_id,
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


# --- build hooks, orphans, rollback, edits ---------------------------------------------------


def test_progress_and_validate_hooks(client: QdrantClient) -> None:
    index = FaqIndex(client)
    seen: list[tuple[int, int]] = []
    checked: list[tuple[str, str | None, int]] = []

    def validate(name: str) -> None:
        # Every entry is stored and the alias has not moved yet.
        checked.append((name, index.current_collection(), client.count(name).count))

    info, _ = index.build(
        _items(10),
        FakeEncoder(dim=16),
        batch_size=4,
        progress=False,
        on_batch=lambda done, total: seen.append((done, total)),
        validate=validate,
    )
    assert seen == [(4, 10), (8, 10), (10, 10)]
    assert checked == [("faq_v1", None, 10)]
    assert info.collection == "faq_v1"
    assert [c.state for c in index.collections()] == ["ready"]


def test_a_refusing_validate_deletes_the_new_collection(client: QdrantClient) -> None:
    index = FaqIndex(client)
    index.build(_items(5), FakeEncoder(dim=16), progress=False)

    def refuse(name: str) -> None:
        raise IndexBuildError(f"{name} is no good")

    with pytest.raises(IndexBuildError, match="faq_v2 is no good"):
        index.build(_items(8), FakeEncoder(dim=16), progress=False, validate=refuse)
    assert index.current_collection() == "faq_v1"
    assert [name for _, name in index.versions()] == ["faq_v1"]


def _half_built(client: QdrantClient, name: str, state: str | None, created_at: str) -> None:
    """What a build killed after its first batch leaves (or, state None, an older build)."""
    meta: dict[str, object] = {"fingerprint": "fake", "created_at": created_at, "count": 10}
    if state is not None:
        meta["state"] = state
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE),
        metadata=meta,
    )
    vectors = FakeEncoder(dim=16).encode_passages([i.question for i in _items(3)])
    client.upsert(
        name,
        points=[
            models.PointStruct(id=point_id(i.id), vector=v.tolist(), payload=i.payload())
            for i, v in zip(_items(3), vectors, strict=True)
        ],
    )


def test_remove_orphans_drops_half_built_collections_only(client: QdrantClient) -> None:
    index = FaqIndex(client, keep=5)
    for n in range(3):
        index.build(_items(4 + n), FakeEncoder(dim=16), progress=False)
    index.rollback()  # live: faq_v2; faq_v3 is complete and newer: not an orphan
    now = datetime.now(UTC).isoformat(timespec="seconds")
    _half_built(client, "faq_v4", "building", "2020-01-01T00:00:00+00:00")
    _half_built(client, "faq_v5", None, "2020-01-01T00:00:00+00:00")  # legacy, newer than live
    _half_built(client, "faq_v6", "building", now)

    # Against a server, a young one may still be written by another process.
    assert index.remove_orphans(min_age_s=600) == ["faq_v4", "faq_v5"]
    assert index.remove_orphans() == ["faq_v6"]
    assert [name for _, name in index.versions()] == ["faq_v1", "faq_v2", "faq_v3"]
    assert index.current_collection() == "faq_v2"
    assert index.remove_orphans() == []


def test_rollback(client: QdrantClient) -> None:
    index = FaqIndex(client, keep=5)
    encoder = FakeEncoder(dim=16)
    with pytest.raises(RollbackError, match="points nowhere"):
        index.rollback()
    index.build(_items(3), encoder, progress=False)
    with pytest.raises(RollbackError, match="nothing to roll back to"):
        index.rollback()
    index.build(_items(4), encoder, progress=False)
    index.build(_items(5), FakeEncoder(dim=16, name="other"), progress=False)

    with pytest.raises(RollbackError, match="built by model"):
        index.rollback(fingerprint=FakeEncoder(dim=16, name="other").fingerprint)
    assert index.rollback() == ("faq_v3", "faq_v2")
    assert index.info().points == 4
    assert index.rollback("faq_v3") == ("faq_v2", "faq_v3")
    with pytest.raises(UnknownCollectionError, match="kept: faq_v1, faq_v2, faq_v3"):
        index.rollback("faq_v7")
    with pytest.raises(RollbackError, match="already live"):
        index.rollback("faq_v3")
    _half_built(client, "faq_v4", "building", "2020-01-01T00:00:00+00:00")
    with pytest.raises(RollbackError, match="faq_v4 is building"):
        index.rollback("faq_v4")
    assert index.current_collection() == "faq_v3"


def test_upsert_and_delete_on_the_live_collection(client: QdrantClient) -> None:
    index = FaqIndex(client)
    encoder = FakeEncoder(dim=16)
    index.build(_items(3), encoder, progress=False)
    extra = FaqItem(id="new-one", question="brand new question", answer="a", lang="en")
    changed = _items(1, answer="changed")[0]
    assert index.upsert([extra, changed], encoder) == ("faq_v1", [True, False])
    info = index.info()
    assert info.points == 4
    # An edited collection no longer equals any file: a later build of one is not skipped.
    assert info.content_hash == ""
    _, built = index.build(_items(3), encoder, skip_if_unchanged=True, progress=False)
    assert built
    index.rollback()
    hits = index.search(encoder.encode_queries(["brand new question"])[0], 2)
    assert hits[0].id == "new-one"
    assert {h.answer for h in index.search(encoder.encode_queries(["question"])[0], 4)} >= {
        "changed 0"
    }

    assert index.delete("new-one") == "faq_v1"
    assert index.delete("new-one") is None
    assert index.info().points == 3
    with pytest.raises(IndexModelMismatchError):
        index.upsert([extra], FakeEncoder(dim=16, name="other"))


def test_search_a_named_collection(client: QdrantClient) -> None:
    index = FaqIndex(client)
    encoder = FakeEncoder(dim=16)
    index.build(_items(3), encoder, progress=False)
    index.build(_items(3, "second"), encoder, progress=False)
    vector = encoder.encode_queries(["question number 1"])[0]
    assert index.search(vector, 1)[0].answer == "second 1"
    assert index.search(vector, 1, collection="faq_v1")[0].answer == "answer 1"


def test_read_write_lock_lets_readers_share_and_a_writer_wait() -> None:
    lock = ReadWriteLock()
    events: list[str] = []

    def writer() -> None:
        with lock.write():
            events.append("write")

    def reader(name: str) -> None:
        with lock.read():
            events.append(name)

    with lock.read():
        other = threading.Thread(target=reader, args=("shared read",))
        other.start()
        other.join(5)
        assert events == ["shared read"]  # readers do not wait for each other
        w = threading.Thread(target=writer)
        w.start()
        deadline = time.monotonic() + 5
        while lock._writers_waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        # A reader arriving while the writer waits queues behind it: no writer starvation.
        late = threading.Thread(target=reader, args=("late read",))
        late.start()
        time.sleep(0.05)
        assert events == ["shared read"]
        events.append("first read done")
    w.join(5)
    late.join(5)
    assert events == ["shared read", "first read done", "write", "late read"]


def test_local_mode_is_detected(client: QdrantClient) -> None:
    assert FaqIndex(client).local
    assert not FaqIndex(QdrantClient(url="http://127.0.0.1:1", check_compatibility=False)).local


def test_searches_during_edits_in_local_mode_never_fail(client: QdrantClient) -> None:
    # Local mode appends a point to a collection's arrays one after the other; unlocked, a
    # concurrent search sees arrays of different lengths and raises (measured: ~5 per edit).
    index = FaqIndex(client)
    encoder = FakeEncoder(dim=16)
    index.build(_items(10), encoder, progress=False)
    vector = encoder.encode_queries(["question number 3"])[0]
    errors: list[Exception] = []
    done = threading.Event()

    def searching() -> None:
        while not done.is_set():
            try:
                index.search(vector, 5)
            except Exception as exc:
                errors.append(exc)

    readers = [threading.Thread(target=searching) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        for n in range(40):
            item = FaqItem(id=f"new-{n}", question=f"new question {n}", answer="a", lang="en")
            index.upsert([item], encoder)
    finally:
        done.set()
        for r in readers:
            r.join(5)
    assert errors == []
    assert index.info().points == 50
