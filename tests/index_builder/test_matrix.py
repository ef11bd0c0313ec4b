"""The embedded matrix search against Qdrant's own exact search (a `QdrantStore` on
qdrant-client's in-memory mode) on the same entries, with filters; a batch against single
searches; the grouping lookup; the lexical prefetch and the top-k. The model is beside the point
(random vectors per text, the fake encoder)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient

from index_builder.faq import FaqItem
from index_builder.store import EmbeddedStore, Hit, QdrantStore, SearchSpec
from index_builder.store.fusion import DENSE_ONLY
from tests.fakes import FakeEncoder
from tests.index_builder.snapshots import hybrid_snapshot

DIM = 24
LANGS = ["en", "es", "id", "th"]
MARKETS = ["mx", "global", None]
SPECS: list[SearchSpec] = [
    SearchSpec(5, None, None),
    SearchSpec(3, "es", None),
    SearchSpec(7, None, "mx"),
    SearchSpec(4, "id", "global"),
    SearchSpec(2, "en", "mx"),
    SearchSpec(10, "th", None),
    SearchSpec(3, "xx", None),  # a value no entry has: nothing
    SearchSpec(500, None, None),  # more than the collection holds: all of it
    SearchSpec(1, None, "global"),
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


class RandomEncoder(FakeEncoder):
    """A random vector per text (seeded by the text), not normalised: no tied scores."""

    def encode_passages(self, texts: Sequence[str]) -> NDArray[np.float32]:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rng = np.random.default_rng(seed)
            rows.append(rng.standard_normal(self.dim) * rng.uniform(0.5, 3))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[EmbeddedStore, QdrantStore]]:
    """The same 300 entries in the embedded store and in Qdrant, question vectors only."""
    encoder = RandomEncoder(dim=DIM)
    embedded = EmbeddedStore(tmp_path / "index", retrieval=DENSE_ONLY)
    qdrant = QdrantStore(QdrantClient(":memory:"), retrieval=DENSE_ONLY)
    for store in (embedded, qdrant):
        store.build(_items(300), encoder, progress=False)
    yield embedded, qdrant
    embedded.close()
    qdrant.close()


def _fields(hits: list[Hit]) -> list[tuple[object, ...]]:
    return [(h.id, h.question, h.answer, h.lang, h.market, h.tags, h.topic) for h in hits]


def test_matrix_search_returns_qdrants_exact_results_with_filters(
    stores: tuple[EmbeddedStore, QdrantStore],
) -> None:
    embedded, qdrant = stores
    queries = np.random.default_rng(1).standard_normal((len(SPECS), DIM)).astype(np.float32)
    got = asyncio.run(embedded.search_batch(queries, SPECS))
    for vector, spec, hits in zip(queries, SPECS, got, strict=True):
        expected = qdrant.search(vector, spec.limit, lang=spec.lang, market=spec.market)
        # Every field of the hit, not only ids and scores.
        assert _fields(hits) == _fields(expected), spec
        assert [h.score for h in hits] == pytest.approx([h.score for h in expected], abs=1e-5)
    assert [len(h) for h in got][-3:] == [0, 300, 1]
    for spec, hits in zip(SPECS, got, strict=True):
        assert all(spec.lang is None or h.lang == spec.lang for h in hits)
        assert all(spec.market is None or h.market == spec.market for h in hits)


def _same(a: list[list[Hit]], b: list[list[Hit]]) -> None:
    """The same hits in the same order; scores equal up to float32 summation order."""
    assert [_fields(hits) for hits in a] == [_fields(hits) for hits in b]
    for x, y in zip(a, b, strict=True):
        assert [h.score for h in x] == pytest.approx([h.score for h in y], abs=1e-5)


def test_a_batched_search_returns_exactly_the_single_searches(
    stores: tuple[EmbeddedStore, QdrantStore],
) -> None:
    vectors = np.random.default_rng(2).standard_normal((len(SPECS), DIM)).astype(np.float32)
    for store in stores:
        batched = asyncio.run(store.search_batch(vectors, SPECS))
        singles = [
            store.search(v, s.limit, lang=s.lang, market=s.market)
            for v, s in zip(vectors, SPECS, strict=True)
        ]
        _same(batched, singles)
        # Each query keeps its own top_k and filters.
        assert [len(h) for h in batched] == [5, 3, 7, 4, 2, 10, 0, 300, 1]
    # And the embedded batch is Qdrant's single searches.
    _same(asyncio.run(stores[0].search_batch(vectors, SPECS)), singles)


def test_entry_in_finds_a_topic_s_entry_in_a_language_under_the_market_filter(
    tmp_path: Path,
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
    index = EmbeddedStore(tmp_path / "index")
    index.build(items, encoder, progress=False)
    assert index.topic_entries() is None  # nothing served yet
    index.warm()
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
