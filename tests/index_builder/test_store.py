"""The store contract on both backends, the embedded store's files (`EmbeddedStore` in a
temporary directory) and a Qdrant server's API (`QdrantStore` on qdrant-client's in-memory
mode), then what only the embedded store promises: immutable versions, several processes on
one directory, the write lock and crash safety. The model is beside the point (FakeEncoder)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient, models

from index_builder.faq import FaqItem
from index_builder.store import (
    EmbeddedStore,
    IndexBuildError,
    IndexMissingError,
    IndexModelMismatchError,
    QdrantStore,
    RollbackError,
    SearchSpec,
    Store,
    UnknownCollectionError,
)
from index_builder.store.embedded import Entries, StoreBusyError
from index_builder.store.fusion import DENSE_ONLY
from index_builder.store.qdrant import ROW, point_id
from tests.fakes import FakeEncoder

AnyStore = EmbeddedStore | QdrantStore
LONG_AGO = "2020-01-01T00:00:00+00:00"


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
    """Fails on its second call, like a crash half-way through an embedding run."""

    def __init__(self) -> None:
        super().__init__(dim=16)
        self.calls = 0

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return super().encode_passages(texts)


@pytest.fixture(params=["embedded", "qdrant"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    s: AnyStore
    if request.param == "embedded":
        s = EmbeddedStore(tmp_path / "index", retrieval=DENSE_ONLY)
    else:
        s = QdrantStore(QdrantClient(":memory:"), retrieval=DENSE_ONLY)
    yield s
    s.close()


def _names(store: AnyStore) -> list[str]:
    return [name for _, name in store.versions()]


def _half_built(store: AnyStore, name: str, created_at: str, fingerprint: str = "fake") -> None:
    """What a build killed after its first batch leaves: a `building` version, part written."""
    meta = {"fingerprint": fingerprint, "created_at": created_at, "count": 10, "state": "building"}
    items = _items(3)
    vectors = FakeEncoder(dim=16).encode_passages([i.question for i in items])
    if isinstance(store, EmbeddedStore):
        directory = store.root / name
        directory.mkdir()
        (directory / "meta.json").write_text(json.dumps(meta))
        np.savez(directory / "vectors.npz", question=vectors)  # cut off before the rest
        return
    store.client.create_collection(
        name,
        vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE),
        metadata=meta,
    )
    store.client.upsert(
        name,
        points=[
            models.PointStruct(id=point_id(i.id), vector=v.tolist(), payload=i.payload())
            for i, v in zip(items, vectors, strict=True)
        ],
    )


def _top(store: AnyStore, text: str, k: int = 1, collection: str | None = None) -> list[str]:
    vector = FakeEncoder(dim=16).encode_queries([text])[0]
    return [h.id for h in store.search(vector, k, collection=collection)]


# --- the contract, on both backends ------------------------------------------------------------


def test_build_then_rebuild_moves_the_alias(store: AnyStore) -> None:
    encoder = FakeEncoder(dim=16)
    with pytest.raises(IndexMissingError):
        store.info()
    assert store.current_collection() is None
    info, built = store.build(_items(10), encoder, progress=False)
    assert built and info.collection == "faq_v1" and info.points == 10
    assert info.fingerprint == encoder.fingerprint and info.model == "fake"

    # Same content, same model: nothing to do.
    again, built = store.build(_items(10), encoder, skip_if_unchanged=True, progress=False)
    assert not built and again.collection == "faq_v1"
    # Another model: built again, though the content is the same.
    other = FakeEncoder(dim=16, name="other")
    info, built = store.build(_items(10), other, skip_if_unchanged=True, progress=False)
    assert built and info.collection == "faq_v2"

    info, built = store.build(_items(12, "new"), encoder, skip_if_unchanged=True, progress=False)
    assert built and info.collection == "faq_v3" and info.points == 12
    hits = store.search(encoder.encode_queries(["question number 11"])[0], 3)
    assert hits[0].id == "faq-11" and hits[0].answer == "new 11"
    assert store.current_collection() == "faq_v3"


def test_the_alias_moves_only_after_validate_passed(store: AnyStore) -> None:
    store.build(_items(5), FakeEncoder(dim=16), progress=False)
    seen: list[tuple[str, str | None, list[str], list[str]]] = []
    progress: list[tuple[int, int]] = []

    def validate(name: str) -> None:
        # Every entry is stored and searchable by name; the alias has not moved yet.
        live = store.current_collection()
        ids = _top(store, "question", 100, collection=name)
        seen.append((name, live, sorted(ids), sorted(_top(store, "question", 100))))

    info, _ = store.build(
        _items(10, "new"),
        FakeEncoder(dim=16),
        batch_size=4,
        progress=False,
        on_batch=lambda done, total: progress.append((done, total)),
        validate=validate,
    )
    assert progress == [(4, 10), (8, 10), (10, 10)]
    # During validate, searches of the alias still answer from faq_v1.
    assert seen == [
        ("faq_v2", "faq_v1", sorted(f"faq-{i}" for i in range(10)), [f"faq-{i}" for i in range(5)])
    ]
    assert info.collection == "faq_v2" == store.current_collection()
    assert _top(store, "question number 7") == ["faq-7"]
    assert [(c.name, c.state, c.live) for c in store.collections()] == [
        ("faq_v1", "ready", False),
        ("faq_v2", "ready", True),
    ]


def test_a_refusing_validate_deletes_the_new_version_and_leaves_the_alias(
    store: AnyStore,
) -> None:
    store.build(_items(5), FakeEncoder(dim=16), progress=False)

    def refuse(name: str) -> None:
        raise IndexBuildError(f"{name} is no good")

    with pytest.raises(IndexBuildError, match="faq_v2 is no good"):
        store.build(_items(8), FakeEncoder(dim=16), progress=False, validate=refuse)
    assert store.current_collection() == "faq_v1"
    assert _names(store) == ["faq_v1"]
    assert store.info().points == 5 and len(_top(store, "question", 50)) == 5
    # The next build takes the name again.
    assert store.build(_items(6), FakeEncoder(dim=16), progress=False)[0].collection == "faq_v2"


def test_a_failed_build_leaves_the_previous_alias_serving(store: AnyStore) -> None:
    store.build(_items(5), FakeEncoder(dim=16), progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        store.build(_items(10), FailingEncoder(), batch_size=4, progress=False)
    assert store.current_collection() == "faq_v1"
    assert store.info().points == 5
    assert _names(store) == ["faq_v1"]  # the half-built one is gone
    assert store.orphans() == []


def test_old_versions_are_pruned_to_keep(store: AnyStore) -> None:
    store.keep = 2
    for n in range(4):
        store.build(_items(3 + n), FakeEncoder(dim=16), progress=False)
    assert _names(store) == ["faq_v3", "faq_v4"]
    assert store.current_collection() == "faq_v4"
    # The live one is never pruned, even when it is the oldest (after a rollback).
    store.rollback()
    store.keep = 1
    store.build(_items(3), FakeEncoder(dim=16), progress=False)
    assert _names(store) == ["faq_v5"]


def test_model_fingerprint_is_checked(store: AnyStore) -> None:
    store.build(_items(3), FakeEncoder(dim=16), progress=False)
    assert store.check_model(FakeEncoder(dim=16).fingerprint).points == 3
    with pytest.raises(IndexModelMismatchError, match="rebuild"):
        store.check_model("another-model:fp32:0123")
    with pytest.raises(IndexModelMismatchError):
        store.upsert(_items(1), FakeEncoder(dim=16, name="other"))
    assert store.info().points == 3 and _names(store) == ["faq_v1"]


def test_filters(store: AnyStore) -> None:
    encoder = FakeEncoder(dim=16)
    store.build(_items(12), encoder, progress=False)
    vector = encoder.encode_queries(["question"])[0]
    es = store.search(vector, 12, lang="es")
    assert len(es) == 4 and {h.lang for h in es} == {"es"}
    mx = store.search(vector, 12, market="mx")
    assert len(mx) == 6 and {h.market for h in mx} == {"mx"}
    both = store.search(vector, 12, lang="id", market="mx")
    assert [h.id for h in both] and all(h.lang == "id" and h.market == "mx" for h in both)
    assert {h.id for h in both} == {"faq-5", "faq-11"}
    assert store.search(vector, 12, lang="xx") == []


def test_collection_named_like_the_alias_is_refused(store: AnyStore) -> None:
    if isinstance(store, EmbeddedStore):
        (store.root / "faq").mkdir()
        (store.root / "faq" / "meta.json").write_text("{}")
    else:
        store.client.create_collection(
            "faq", vectors_config=models.VectorParams(size=16, distance=models.Distance.COSINE)
        )
    with pytest.raises(IndexBuildError, match="named 'faq' like the alias"):
        store.build(_items(2), FakeEncoder(dim=16), progress=False)


def test_empty_build_is_refused(store: AnyStore) -> None:
    with pytest.raises(IndexBuildError):
        store.build([], FakeEncoder(dim=16), progress=False)
    assert store.current_collection() is None and _names(store) == []


def test_orphans_are_the_building_versions_the_alias_does_not_point_at(store: AnyStore) -> None:
    store.keep = 5
    for n in range(3):
        store.build(_items(4 + n), FakeEncoder(dim=16), progress=False)
    store.rollback()  # live: faq_v2; faq_v3 is complete and newer: not an orphan
    now = datetime.now(UTC).isoformat(timespec="seconds")
    _half_built(store, "faq_v4", LONG_AGO)
    _half_built(store, "faq_v5", now)
    assert [c.state for c in store.collections()] == ["ready"] * 3 + ["building"] * 2

    # A young one may still be written by another process.
    assert store.orphans(min_age_s=600) == ["faq_v4"]
    assert store.orphans() == ["faq_v4", "faq_v5"]
    if isinstance(store, QdrantStore):
        assert store.remove_orphans(min_age_s=600) == ["faq_v4"]
        assert store.remove_orphans() == ["faq_v5"]
    else:
        # Under the write lock no build runs: every building version is an orphan.
        assert store.remove_orphans(min_age_s=600) == ["faq_v4", "faq_v5"]
        assert not (store.root / "faq_v4").exists()
    assert _names(store) == ["faq_v1", "faq_v2", "faq_v3"]
    assert store.current_collection() == "faq_v2"
    assert store.remove_orphans() == []
    # A new build is numbered after everything kept.
    assert store.build(_items(2), FakeEncoder(dim=16), progress=False)[0].collection == "faq_v4"


def test_rollback(store: AnyStore) -> None:
    store.keep = 5
    encoder = FakeEncoder(dim=16)
    with pytest.raises(RollbackError, match="points nowhere"):
        store.rollback()
    store.build(_items(3), encoder, progress=False)
    with pytest.raises(RollbackError, match="nothing to roll back to"):
        store.rollback()
    store.build(_items(4), encoder, progress=False)
    store.build(_items(5), FakeEncoder(dim=16, name="other"), progress=False)

    # The older one was built by another model than the one the caller serves.
    with pytest.raises(RollbackError, match="built by model"):
        store.rollback(fingerprint=FakeEncoder(dim=16, name="other").fingerprint)
    assert store.current_collection() == "faq_v3"
    assert store.rollback(fingerprint=encoder.fingerprint) == ("faq_v3", "faq_v2")
    assert store.info().points == 4 and len(_top(store, "question", 50)) == 4
    # Older again: to faq_v1; then forward by name.
    assert store.rollback() == ("faq_v2", "faq_v1")
    assert store.rollback("faq_v3") == ("faq_v1", "faq_v3")
    assert store.info().points == 5
    with pytest.raises(UnknownCollectionError, match="kept: faq_v1, faq_v2, faq_v3"):
        store.rollback("faq_v7")
    with pytest.raises(RollbackError, match="already live"):
        store.rollback("faq_v3")
    with pytest.raises(RollbackError, match="built by model"):
        store.rollback("faq_v1", fingerprint="other:fake:16:128")
    _half_built(store, "faq_v4", LONG_AGO)
    with pytest.raises(RollbackError, match="faq_v4 is building"):
        store.rollback("faq_v4")
    assert store.current_collection() == "faq_v3"
    # A half-built version older than the live one is no rollback target either.
    store.rollback("faq_v1")
    _half_built(store, "faq_v0", LONG_AGO)
    with pytest.raises(RollbackError, match="nothing to roll back to"):
        store.rollback()


def test_upsert_and_delete_change_what_the_alias_serves(store: AnyStore) -> None:
    encoder = FakeEncoder(dim=16)
    store.build(_items(3), encoder, progress=False)
    extra = FaqItem(id="new-one", question="brand new question", answer="a", lang="en")
    changed = _items(1, answer="changed")[0]
    name, created = store.upsert([extra, changed], encoder)
    assert created == [True, False]
    assert name == store.current_collection()
    info = store.info()
    assert info.points == 4
    # An edited version no longer equals any file: a later build of one is not skipped.
    assert info.content_hash == ""
    assert _top(store, "brand new question") == ["new-one"]
    answers = {h.id: h.answer for h in store.search(encoder.encode_queries(["q"])[0], 10)}
    assert answers == {
        "faq-0": "changed 0",
        "faq-1": "answer 1",
        "faq-2": "answer 2",
        "new-one": "a",
    }

    _, built = store.build(_items(3), encoder, skip_if_unchanged=True, progress=False)
    assert built and "new-one" not in _top(store, "question", 10)
    store.rollback()  # back to the edited content
    assert _top(store, "brand new question") == ["new-one"]

    removed = store.delete("new-one")
    assert removed is not None and removed == store.current_collection()
    assert store.delete("new-one") is None
    assert store.info().points == 3
    assert "new-one" not in _top(store, "brand new question", 10)


def test_search_a_named_collection(store: AnyStore) -> None:
    encoder = FakeEncoder(dim=16)
    store.build(_items(3), encoder, progress=False)
    store.build(_items(3, "second"), encoder, progress=False)
    vector = encoder.encode_queries(["question number 1"])[0]
    assert store.search(vector, 1)[0].answer == "second 1"
    assert store.search(vector, 1, collection="faq_v1")[0].answer == "answer 1"


def test_a_batch_answers_as_the_single_searches(store: AnyStore) -> None:
    encoder = FakeEncoder(dim=16)
    store.build(_items(12), encoder, progress=False)
    texts = ["question number 3", "topic7", "question"]
    specs = [SearchSpec(3), SearchSpec(2, "id"), SearchSpec(5, None, "mx")]
    vectors = encoder.encode_queries(texts)
    batch = asyncio.run(store.search_batch(vectors, specs))
    singles = [
        store.search(v, s.limit, lang=s.lang, market=s.market)
        for v, s in zip(vectors, specs, strict=True)
    ]
    assert [[(h.id, round(h.score, 5)) for h in b] for b in batch] == [
        [(h.id, round(h.score, 5)) for h in s] for s in singles
    ]
    assert [len(b) for b in batch] == [3, 2, 5]


def test_topic_entries(store: AnyStore) -> None:
    items = [
        FaqItem(id="pay", question="how can I pay", answer="a", lang="en"),
        FaqItem(id="pay.es", question="como pagar", answer="a", lang="es", market="mx"),
        FaqItem(id="pay-card.es", question="pagar con tarjeta", answer="a", lang="es", topic="pay"),
    ]
    encoder = FakeEncoder(dim=16)
    store.build(items, encoder, progress=False)
    if isinstance(store, QdrantStore):
        assert cast(Store, store).topic_entries() is None  # grouping asks the server instead
        return
    store.warm()
    entries = store.topic_entries()
    assert entries is not None
    vector = encoder.encode_queries(["pagar con tarjeta"])[0]
    found = entries.entry_in(vector, "pay", "es")
    assert found is not None and found.id == "pay-card.es"
    mx = entries.entry_in(vector, "pay", "es", market="mx")
    assert mx is not None and mx.id == "pay.es"
    assert entries.entry_in(vector, "pay", "de") is None


def test_an_edit_is_a_version_of_its_own_and_a_rollback_undoes_it(store: AnyStore) -> None:
    """Both backends (issue 27, item 10): an edit writes the next version and leaves the one
    before as it was, so a rollback returns to the content before the edit, not to the last
    build, and rolling forward redoes it."""
    store.keep = 5
    encoder = FakeEncoder(dim=16)
    store.build(_items(3), encoder, progress=False)
    extra = FaqItem(id="new-one", question="brand new question", answer="a", lang="en")
    changed = _items(1, answer="changed")[0]
    assert store.upsert([extra, changed], encoder) == ("faq_v2", [True, False])
    assert store.delete("faq-1") == "faq_v3"
    assert store.current_collection() == "faq_v3" and _names(store) == [
        "faq_v1",
        "faq_v2",
        "faq_v3",
    ]
    assert all(c.state == "ready" for c in store.collections())
    assert _answers(store) == {"faq-0": "changed 0", "faq-2": "answer 2", "new-one": "a"}
    # The versions before hold what they held.
    original = {"faq-0": "answer 0", "faq-1": "answer 1", "faq-2": "answer 2"}
    assert _answers(store, "faq_v1") == original
    assert _answers(store, "faq_v2") == {**original, "faq-0": "changed 0", "new-one": "a"}

    assert store.rollback() == ("faq_v3", "faq_v2")  # undoes the delete only
    assert _answers(store) == {**original, "faq-0": "changed 0", "new-one": "a"}
    assert store.info().points == 4 and store.info().content_hash == ""
    assert store.rollback() == ("faq_v2", "faq_v1")  # undoes the upsert
    assert _answers(store) == original and store.info().content_hash != ""
    assert store.rollback("faq_v3") == ("faq_v1", "faq_v3")  # and forward again
    assert _answers(store) == {"faq-0": "changed 0", "faq-2": "answer 2", "new-one": "a"}


def test_an_edited_version_keeps_the_entries_in_their_order(tmp_path: Path) -> None:
    """Entries tied at a prefetch's cut are cut by their place in the version (qdrant-client's
    local mode and the embedded scan both rank a later row first), so both backends keep one
    order through edits: the build's, a replaced entry in its place, a new one after the rest
    (a copy of the points by id, as first tried, reordered them and the fusion parity through
    edits failed)."""
    embedded = EmbeddedStore(tmp_path / "index", keep=9, retrieval=DENSE_ONLY)
    qdrant = QdrantStore(QdrantClient(":memory:"), keep=9, retrieval=DENSE_ONLY)
    encoder = FakeEncoder(dim=16)
    items = _items(300)  # more than one page of the copy
    for store in (embedded, qdrant):
        store.build(items, encoder, progress=False)
        store.upsert([_items(6, "changed")[5], FaqItem(id="added", **_entry())], encoder)
        store.delete("faq-10")
        store.upsert([FaqItem(id="faq-10", **_entry())], encoder)
    expected = [f"faq-{i}" for i in range(300) if i != 10] + ["added", "faq-10"]
    live = embedded.current_collection()
    assert live is not None and Entries.load(embedded.root / live).ids == expected
    points, _ = qdrant.client.scroll("faq", limit=400, order_by=ROW, with_payload=True)
    assert [p.payload["id"] for p in points if p.payload] == expected
    assert [p.payload[ROW] for p in points if p.payload] == [
        *range(10),
        *range(11, 300),
        300,
        301,
    ]
    # The order is not the point ids' (a copy by id would lose it).
    assert sorted(expected, key=point_id) != expected
    embedded.close()
    qdrant.close()


def _entry() -> dict[str, str]:
    return {"question": "brand new question", "answer": "a", "lang": "en"}


def test_a_qdrant_edit_that_fails_while_copying_leaves_the_live_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = QdrantStore(QdrantClient(":memory:"), keep=5, retrieval=DENSE_ONLY)
    encoder = FakeEncoder(dim=16)
    store.build(_items(600), encoder, progress=False)  # more than one page of the copy
    real_upsert = store.client.upsert
    calls = []

    def failing_upsert(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("collection_name"))
        if len(calls) == 2:
            raise RuntimeError("connection lost")
        return real_upsert(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store.client, "upsert", failing_upsert)
    with pytest.raises(RuntimeError, match="connection lost"):
        store.delete("faq-1")
    assert calls == ["faq_v2", "faq_v2"]
    assert store.current_collection() == "faq_v1" and _names(store) == ["faq_v1"]
    assert store.info().points == 600
    store.close()


def test_a_qdrant_version_written_before_row_order_is_still_edited() -> None:
    """A collection built before `_row` existed (no `next_row` in its metadata, no `_row` in
    its points) is copied in id order, and its copies carry `_row` from then on."""
    store = QdrantStore(QdrantClient(":memory:"), retrieval=DENSE_ONLY)
    encoder = FakeEncoder(dim=16)
    store.build(_items(5), encoder, progress=False)
    store.client.delete_payload("faq_v1", keys=[ROW], points=models.Filter())
    store.client.update_collection("faq_v1", metadata={"next_row": None})
    legacy, _ = store.client.scroll("faq_v1", limit=10)
    assert len(legacy) == 5 and all(ROW not in (p.payload or {}) for p in legacy)
    extra = FaqItem(id="new-one", question="brand new question", answer="a", lang="en")
    assert store.upsert([extra], encoder) == ("faq_v2", [True])
    points, _ = store.client.scroll("faq_v2", limit=10, order_by=ROW)
    assert [p.payload[ROW] for p in points if p.payload] == list(range(6))
    ids = [str(p.id) for p in points]
    assert ids == [*sorted(point_id(f"faq-{i}") for i in range(5)), point_id("new-one")]
    assert (store.client.get_collection("faq_v2").config.metadata or {})["next_row"] == 6
    assert store.delete("faq-0") == "faq_v3"
    assert sorted(_answers(store)) == ["faq-1", "faq-2", "faq-3", "faq-4", "new-one"]
    store.close()


def _answers(store: AnyStore, collection: str | None = None) -> dict[str, str]:
    vector = FakeEncoder(dim=16).encode_queries(["question"])[0]
    return {h.id: h.answer for h in store.search(vector, 50, collection=collection)}


# --- the embedded store ------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "index"


def test_a_version_is_never_changed_an_edit_makes_a_new_one(root: Path) -> None:
    store = EmbeddedStore(root, keep=5, retrieval=DENSE_ONLY)
    encoder = FakeEncoder(dim=16)
    store.build(_items(3), encoder, progress=False)
    files = {p.name: p.read_bytes() for p in (root / "faq_v1").iterdir()}

    extra = FaqItem(id="new-one", question="brand new question", answer="a", lang="en")
    assert store.upsert([extra], encoder) == ("faq_v2", [True])
    assert store.delete("faq-1") == "faq_v3"
    assert store.current_collection() == "faq_v3"
    assert {p.name: p.read_bytes() for p in (root / "faq_v1").iterdir()} == files
    meta = json.loads((root / "faq_v3" / "meta.json").read_text())
    assert meta["edited_from"] == "faq_v2" and meta["state"] == "ready" and meta["count"] == 3
    assert sorted(_top(store, "question", 10, collection="faq_v1")) == ["faq-0", "faq-1", "faq-2"]

    # A rollback after an edit returns to the content before it.
    assert store.rollback() == ("faq_v3", "faq_v2")
    assert "faq-1" in _top(store, "question", 10)
    assert store.rollback("faq_v1") == ("faq_v2", "faq_v1")
    assert sorted(_top(store, "question", 10)) == ["faq-0", "faq-1", "faq-2"]
    assert store.info().content_hash != ""


def test_an_edit_that_fails_leaves_the_live_version(root: Path) -> None:
    store = EmbeddedStore(root)
    encoder = FakeEncoder(dim=16)
    store.build(_items(3), encoder, progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        store.upsert(_items(2, "x"), FailingEncoder())
    assert store.current_collection() == "faq_v1" and _names(store) == ["faq_v1"]


def test_two_stores_on_one_directory_follow_the_alias(root: Path) -> None:
    writer = EmbeddedStore(root, keep=5, retrieval=DENSE_ONLY)
    reader = EmbeddedStore(root, keep=5, retrieval=DENSE_ONLY)
    encoder = FakeEncoder(dim=16)
    writer.build(_items(3), encoder, progress=False)
    reader.warm()
    assert sorted(_top(reader, "question", 10)) == ["faq-0", "faq-1", "faq-2"]

    writer.build(_items(5, "new"), encoder, progress=False)
    assert len(_top(reader, "question", 10)) == 5  # its next search sees the move
    writer.upsert(
        [FaqItem(id="added", question="brand new question", answer="a", lang="en")], encoder
    )
    assert _top(reader, "brand new question") == ["added"]
    writer.rollback("faq_v1")
    assert sorted(_top(reader, "question", 10)) == ["faq-0", "faq-1", "faq-2"]
    assert reader.current_collection() == "faq_v1" and reader.info().points == 3


def test_a_serving_store_answers_from_the_old_version_while_the_new_one_loads(
    root: Path,
) -> None:
    writer = EmbeddedStore(root, retrieval=DENSE_ONLY)
    serving = EmbeddedStore(root, retrieval=DENSE_ONLY)
    encoder = FakeEncoder(dim=16)
    vector = encoder.encode_queries(["question"])

    def found() -> int:
        return len(asyncio.run(serving.search_batch(vector, [SearchSpec(10)]))[0])

    writer.build(_items(3), encoder, progress=False)
    assert found() == 3  # the first search waits for the load
    writer.build(_items(6), encoder, progress=False)
    # No search waits for a load: the old version answers while the new one loads.
    assert found() == 3
    assert serving._loading is not None
    serving._loading.result(10)
    assert found() == 6
    serving.close()


def test_a_second_writer_waits_for_the_lock_then_gives_up(root: Path) -> None:
    first = EmbeddedStore(root)
    second = EmbeddedStore(root, lock_timeout_s=0.2)
    encoder = FakeEncoder(dim=16)
    started, release = threading.Event(), threading.Event()

    def hold(done: int, total: int) -> None:
        started.set()
        assert release.wait(10)

    builder = threading.Thread(
        target=first.build,
        args=(_items(4), encoder),
        kwargs={"progress": False, "batch_size": 2, "on_batch": hold},
    )
    builder.start()
    try:
        assert started.wait(10)
        with pytest.raises(StoreBusyError, match="being written"):
            second.build(_items(2), encoder, progress=False)
        with pytest.raises(StoreBusyError):
            second.remove_orphans()  # a building version is not an orphan while its build runs
        assert second.current_collection() is None
    finally:
        release.set()
        builder.join(10)
    assert first.current_collection() == "faq_v1"
    # The lock is free again.
    assert second.build(_items(2), encoder, progress=False)[0].collection == "faq_v2"


def _killed_build(root: str) -> None:
    """A build process killed after its first batch (no cleanup runs)."""
    store = EmbeddedStore(Path(root))
    store.build(_items(6), FakeEncoder(dim=16), progress=False, batch_size=2, on_batch=_die)


def _die(done: int, total: int) -> None:
    os._exit(9)


def test_a_killed_build_leaves_an_orphan_and_the_alias(root: Path) -> None:
    store = EmbeddedStore(root)
    store.build(_items(3), FakeEncoder(dim=16), progress=False)
    process = multiprocessing.get_context("fork").Process(target=_killed_build, args=(str(root),))
    process.start()
    process.join(30)
    assert process.exitcode == 9
    assert store.current_collection() == "faq_v1" and store.info().points == 3
    assert [(c.name, c.state) for c in store.collections()] == [
        ("faq_v1", "ready"),
        ("faq_v2", "building"),
    ]
    assert store.orphans() == ["faq_v2"]
    assert store.remove_orphans() == ["faq_v2"]
    assert _names(store) == ["faq_v1"] and not (root / "faq_v2").exists()
    # The lock died with the process: the next build runs.
    assert store.build(_items(4), FakeEncoder(dim=16), progress=False)[0].collection == "faq_v2"


def test_the_alias_file_is_replaced_whole_or_not_at_all(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddedStore(root)
    store.build(_items(3), FakeEncoder(dim=16), progress=False)
    alias = root / "faq.alias"
    real_fsync = os.fsync

    def crash_on_the_alias(fd: int) -> None:
        # The process dies while the new alias is being written (before it is on disk).
        if "faq.alias" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError("power cut")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", crash_on_the_alias)
    with pytest.raises(OSError, match="power cut"):
        store.build(_items(5), FakeEncoder(dim=16), progress=False)
    monkeypatch.undo()
    assert alias.read_text() == "faq_v1"
    fresh = EmbeddedStore(root)
    assert fresh.current_collection() == "faq_v1" and fresh.info().points == 3
    assert _names(fresh) == ["faq_v1"]
