"""The embedded matrix search against qdrant-client's own exact search, and the cache following
the alias: build, rollback, edits. Real qdrant-client local mode; the model is beside the point
(random unit vectors and the fake encoder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from index_builder.encoder import FakeEncoder
from index_builder.faq import FaqItem
from index_builder.store import FaqIndex, Hit, SearchSpec, open_client, point_id
from index_builder.store.fusion import DENSE_ONLY
from index_builder.store.matrix import MatrixSnapshot, _local_arrays
from tests.index_builder.snapshots import hybrid_snapshot

DIM = 24
LANGS = ["en", "es", "id", "th"]
MARKETS = ["mx", "global", None]
SPECS: list[SearchSpec] = [
    (5, None, None),
    (3, "es", None),
    (7, None, "mx"),
    (4, "id", "global"),
    (2, "en", "mx"),
    (10, "th", None),
    (3, "xx", None),  # a value no entry has: nothing
    (500, None, None),  # more than the collection holds: all of it
    (1, None, "global"),
]


def _items(n: int, prefix: str = "q") -> list[FaqItem]:
    return [
        FaqItem(
            id=f"{prefix}-{i}",
            question=f"{prefix} question {i} word{i % 7} other{i % 5}",
            answer=f"answer {i}",
            lang=LANGS[i % len(LANGS)],
            market=MARKETS[i % len(MARKETS)],
            tags=[f"t{i % 3}"],
        )
        for i in range(n)
    ]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[QdrantClient]:
    c = open_client(path=tmp_path / "qdrant")
    yield c
    c.close()


def _random_collection(client: QdrantClient, n: int, seed: int = 0) -> np.ndarray:
    """`n` random (not normalised) vectors with FAQ payloads, written straight through Qdrant."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32) * rng.uniform(0.5, 3, (n, 1))
    client.create_collection(
        "c", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    client.upsert(
        "c",
        points=[
            models.PointStruct(id=point_id(item.id), vector=v.tolist(), payload=item.payload())
            for item, v in zip(_items(n), vectors, strict=True)
        ],
        wait=True,
    )
    return vectors


def _qdrant_search(client: QdrantClient, vector: np.ndarray, spec: SearchSpec) -> list[Hit]:
    """qdrant-client's own exact search: the reference."""
    plain = FaqIndex(client, alias="faq", matrix=False)
    top_k, lang, market = spec
    return plain.search(vector, top_k, lang=lang, market=market, collection="c")


def test_matrix_search_returns_qdrants_exact_results_with_filters(client: QdrantClient) -> None:
    _random_collection(client, 300)
    snapshot = MatrixSnapshot.load(client, "c")
    assert len(snapshot) == 300
    queries = np.random.default_rng(1).standard_normal((len(SPECS), DIM)).astype(np.float32)
    got = snapshot.search_batch(queries, SPECS)
    for vector, spec, hits in zip(queries, SPECS, got, strict=True):
        expected = _qdrant_search(client, vector, spec)
        assert [h.id for h in hits] == [h.id for h in expected], spec
        assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)
        # Every field of the hit, not only ids and scores.
        assert [(h.question, h.answer, h.lang, h.market, h.tags) for h in hits] == [
            (h.question, h.answer, h.lang, h.market, h.tags) for h in expected
        ]
    assert [len(h) for h in got][-3:] == [0, 300, 1]
    for (_, lang, market), hits in zip(SPECS, got, strict=True):
        assert all(lang is None or h.lang == lang for h in hits)
        assert all(market is None or h.market == market for h in hits)


def _alias(client: QdrantClient, collection: str = "c") -> None:
    client.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name="faq")
            )
        ]
    )


def _same(a: list[list[Hit]], b: list[list[Hit]]) -> None:
    """The same hits in the same order; scores equal up to float32 summation order."""
    assert [[h.id for h in hits] for hits in a] == [[h.id for h in hits] for hits in b]
    for x, y in zip(a, b, strict=True):
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-5)
        assert [(h.question, h.answer, h.lang, h.market, h.tags) for h in x] == [
            (h.question, h.answer, h.lang, h.market, h.tags) for h in y
        ]


def test_a_batched_search_returns_exactly_the_single_searches(client: QdrantClient) -> None:
    _random_collection(client, 300)
    _alias(client)
    vectors = np.random.default_rng(2).standard_normal((len(SPECS), DIM)).astype(np.float32)
    for matrix in (True, False):
        index = FaqIndex(client, matrix=matrix)
        batched = index.search_batch(vectors, SPECS)
        singles = [
            index.search(v, top_k, lang=lang, market=market)
            for v, (top_k, lang, market) in zip(vectors, SPECS, strict=True)
        ]
        _same(batched, singles)
        # Each query keeps its own top_k and filters.
        assert [len(h) for h in batched] == [len(h) for h in singles]
    _same(FaqIndex(client).search_batch(vectors, SPECS), singles)


def _ids(index: FaqIndex, text: str, encoder: FakeEncoder, top_k: int = 50) -> set[str]:
    return {h.id for h in index.search(encoder.encode_queries([text])[0], top_k)}


def test_the_matrix_follows_the_alias_through_build_rollback_and_edits(
    client: QdrantClient,
) -> None:
    # Cosine scores (question vectors only), so that an exact match scores 1.
    index = FaqIndex(client, retrieval=DENSE_ONLY)
    assert index.matrix
    encoder = FakeEncoder(dim=DIM)
    index.build(_items(20, "old"), encoder, progress=False)
    assert _ids(index, "question", encoder) == {f"old-{i}" for i in range(20)}

    index.build(_items(15, "new"), encoder, progress=False)  # the alias moves to faq_v2
    assert _ids(index, "question", encoder) == {f"new-{i}" for i in range(15)}

    index.rollback()  # back to faq_v1
    assert _ids(index, "question", encoder) == {f"old-{i}" for i in range(20)}
    index.rollback("faq_v2")
    assert _ids(index, "question", encoder) == {f"new-{i}" for i in range(15)}

    # Single-entry edits patch the cached matrix: the next search sees them.
    added = FaqItem(id="added", question="a brand new question", answer="a", lang="th")
    index.upsert([added], encoder)
    assert "added" in _ids(index, "brand new", encoder)
    hits = index.search(encoder.encode_queries(["a brand new question"])[0], 1, lang="th")
    assert hits[0].id == "added" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    changed = FaqItem(id="new-3", question="completely different words", answer="b", lang="es")
    index.upsert([changed], encoder)
    top = index.search(encoder.encode_queries(["completely different words"])[0], 1)
    assert top[0].id == "new-3" and top[0].answer == "b" and top[0].lang == "es"
    assert index.delete("new-4") is not None
    assert "new-4" not in _ids(index, "question", encoder)
    assert len(_ids(index, "question", encoder)) == 15  # 15 + added - deleted

    # A fresh reader of the same directory (qdrant-client itself) agrees with the cache.
    vectors = encoder.encode_queries(["question 3", "brand new", "different"])
    specs: list[SearchSpec] = [(10, None, None), (5, "th", None), (5, None, None)]
    # (The fake encoder ties many scores, so which of the tied entries fill the last places may
    # differ: compare the scores, and the ids of the hits that beat the last place.)
    by_qdrant = FaqIndex(client, matrix=False, retrieval=DENSE_ONLY).search_batch(vectors, specs)
    for got, expected in zip(index.search_batch(vectors, specs), by_qdrant, strict=True):
        assert [h.score for h in got] == pytest.approx([h.score for h in expected], abs=1e-5)
        last = expected[-1].score + 1e-5
        assert {h.id for h in got if h.score > last} == {h.id for h in expected if h.score > last}


def test_a_failed_build_leaves_the_matrix_on_the_live_collection(client: QdrantClient) -> None:
    index = FaqIndex(client)
    encoder = FakeEncoder(dim=DIM)
    index.build(_items(10, "live"), encoder, progress=False)
    assert _ids(index, "question", encoder) == {f"live-{i}" for i in range(10)}

    def refuse(collection: str) -> None:
        # The gate searches the new collection (its own snapshot) before refusing it.
        vector = encoder.encode_queries(["question"])[0]
        assert {h.id for h in index.search(vector, 50, collection=collection)} == {
            f"refused-{i}" for i in range(10)
        }
        raise RuntimeError("gate says no")

    with pytest.raises(RuntimeError):
        index.build(_items(10, "refused"), encoder, progress=False, validate=refuse)
    assert _ids(index, "question", encoder) == {f"live-{i}" for i in range(10)}


def test_a_server_client_never_uses_the_matrix() -> None:
    server = QdrantClient(url="http://127.0.0.1:1", check_compatibility=False)
    assert not FaqIndex(server).matrix


def test_the_direct_read_of_local_mode_equals_the_scroll(client: QdrantClient) -> None:
    _random_collection(client, 200)
    client.delete(
        "c", points_selector=models.PointIdsList(points=[point_id("q-3"), point_id("q-50")])
    )
    moved = _items(1, "q")[0].model_copy(update={"answer": "moved"})
    client.upsert(
        "c",
        points=[
            models.PointStruct(id=point_id("q-0"), vector=[1.0] * DIM, payload=moved.payload())
        ],
        wait=True,
    )
    assert _local_arrays(client, "c", DIM) is not None  # the fast path is the one taken
    direct = MatrixSnapshot.load(client, "c")
    scrolled = MatrixSnapshot._scroll(client, "c", DIM)

    def content(s: MatrixSnapshot) -> dict[str, tuple[Any, ...]]:
        return {
            pid: (row, tuple(np.round(vector, 6)))
            for pid, row, vector in zip(s.point_ids, s.rows, s.matrix, strict=True)
        }

    assert len(direct) == 198 and content(direct) == content(scrolled)
    assert point_id("q-3") not in direct.point_ids
    assert dict(zip(direct.point_ids, direct.rows, strict=True))[point_id("q-0")].answer == "moved"


def test_entry_in_finds_a_topic_s_entry_in_a_language_under_the_market_filter(
    client: QdrantClient,
) -> None:
    """What grouping shows for a topic that ranked by another language's entry: its entry in
    the wanted language, the closest to the query of several, in the query's market."""
    items = [
        FaqItem(id="pay", question="how can I pay", answer="a", lang="en", topic="pay"),
        FaqItem(id="pay.es", question="como pagar", answer="a", lang="es", market="mx"),
        FaqItem(id="pay-card.es", question="pagar con tarjeta", answer="a", lang="es", topic="pay"),
        FaqItem(id="ship", question="shipping", answer="a", lang="en"),
    ]
    encoder = FakeEncoder(dim=DIM)
    index = FaqIndex(client)
    index.build(items, encoder, progress=False)
    snapshot = index.topic_entries()
    assert snapshot is not None
    for text, closest in (("como pagar", "pay.es"), ("pagar con tarjeta", "pay-card.es")):
        vector = encoder.encode_queries([text])[0]
        found = snapshot.entry_in(vector, "pay", "es")
        assert found is not None and found.id == closest
        # Its score is its question's cosine with the query.
        assert found.score == pytest.approx(
            float(vector @ encoder.encode_passages([found.question])[0]), abs=1e-5
        )
    vector = encoder.encode_queries(["como pagar"])[0]
    mx = snapshot.entry_in(vector, "pay", "es", market="mx")
    assert mx is not None and mx.id == "pay.es"
    assert snapshot.entry_in(vector, "pay", "es", market="br") is None
    assert snapshot.entry_in(vector, "ship", "es") is None
    assert snapshot.entry_in(vector, "nothing", "en") is None


def test_the_lexical_prefetch_returns_only_rows_sharing_a_token() -> None:
    from index_builder.store.matrix import _Postings

    # Rows 0-3 share token 7 or 9 with the query; 4-5 share nothing. Token 1 is in every row
    # (a dense row of weights), token 7 in two.
    docs = [([1, 7], [1.0, 2.0]), ([1, 9], [1.0, 1.0]), ([1, 7], [1.0, 0.5]), ([1, 9], [1.0, 3.0])]
    docs += [([2], [1.0]), ([3], [1.0])]
    postings = _Postings(docs)
    rows, scores = postings.best((7, 9), k=10, selection=None)
    assert rows.tolist() == [0, 1, 2, 3]
    everything = postings.scores((7, 9))
    shared = everything > 0
    assert shared.tolist() == [True, True, True, True, False, False]
    assert scores.tolist() == everything[[0, 1, 2, 3]].tolist()
    assert (scores > 0).all()
    # The best two, within a selection.
    rows, _ = postings.best((7, 9), k=2, selection=np.array([1, 2, 3, 4, 5]))
    assert rows.tolist() == [1, 3]  # weights 1.0 and 3.0 beat row 2's 0.5 (same IDF)
    # Token 1 is kept as a dense row of weights: the rows without it still score 0.
    assert postings.best((1,), k=10, selection=None)[0].tolist() == [0, 1, 2, 3]
    assert postings.best((42,), k=5, selection=None)[0].tolist() == []


def test_the_exact_fused_search_takes_only_rows_some_prefetch_returned() -> None:
    from index_builder.store.fusion import PREFETCH_MIN, Retrieval

    # Every row points away from the query (negative cosines), so a row that no part's
    # prefetch returned would score 0 and beat them all. The lexical prefetch returns only
    # rows sharing a token (row 0 here), as Qdrant's sparse prefetch does; the dense ones
    # their best PREFETCH_MIN.
    n = PREFETCH_MIN + 100
    rng = np.random.default_rng(3)
    vectors = -np.eye(4, dtype=np.float32)[0] + rng.normal(0, 0.1, (n, 4)).astype(np.float32)
    lexical = [([7], [1.0]) if i == 0 else ([100 + i], [1.0]) for i in range(n)]
    snapshot = hybrid_snapshot(vectors, vectors, lexical)
    assert not snapshot.approximate
    query = np.eye(4, dtype=np.float32)[:1]
    hits = snapshot.search_batch(query, [SearchSpec(20, None, None, (7,))], Retrieval())[0]
    cosines = snapshot.matrix @ query[0]
    prefetched = {f"e-{i}" for i in np.argsort(-cosines)[:PREFETCH_MIN]} | {"e-0"}
    assert len(hits) == 20 and {h.id for h in hits} <= prefetched
    assert all(h.score < 0 for h in hits)


def test_a_long_rows_top_k_is_the_k_best_whichever_path_finds_them() -> None:
    from index_builder.store.matrix import _SAMPLED_TOP_MIN_ROWS, _top

    rng = np.random.default_rng(5)
    n, k = 100_000, 256
    assert n >= _SAMPLED_TOP_MIN_ROWS
    continuous = rng.random(n).astype(np.float32)
    sparse = np.zeros(n, dtype=np.float32)  # a lexical row: most rows share no token
    sparse[rng.choice(n, 3_000, replace=False)] = rng.random(3_000).astype(np.float32) + 0.1
    levels = rng.integers(0, 10, n).astype(np.float32)  # ties across the cut
    # The highest scores sit exactly on the sampled positions: the sample's threshold keeps
    # fewer than k rows, and the whole row has to be partitioned.
    on_the_sample = rng.random(n).astype(np.float32)
    on_the_sample[:: 2 * k // 32] += 10.0
    for row in (continuous, sparse, levels, on_the_sample):
        best, scores = _top(row, k)
        assert len(best) == k and len(set(best.tolist())) == k
        assert scores.tolist() == row[best].tolist()
        assert scores.tolist() == sorted(row, reverse=True)[:k]
