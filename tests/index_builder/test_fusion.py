"""Answer and lexical retrieval: the embedded store's matrix search computes Qdrant's fused query
exactly, and each part changes what is found. The reference is Qdrant's own evaluation of the
query (prefetches + formula, sparse vectors with the IDF modifier): a `QdrantStore` on
qdrant-client's in-memory mode holding the same entries; the fake encoder hashes words."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from index_builder.faq import FaqItem
from index_builder.store import EmbeddedStore, Hit, QdrantStore, SearchSpec
from index_builder.store.fusion import DENSE_ONLY, Retrieval
from index_builder.store.lexical import Lexicon, bm25_doc, idf
from tests.fakes import FakeEncoder

DIM = 32
LANGS = ["en", "es", "de"]
WORDS = [
    *("order", "refund", "paypal", "card", "parcel", "return"),
    *("size", "invoice", "coupon", "account", "address"),
]


def _items(n: int, prefix: str = "e") -> list[FaqItem]:
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        # Words of its own and varied lengths: few exactly tied scores, whose order at a
        # prefetch's cut would be arbitrary.
        q = " ".join(rng.choice(WORDS, 3)) + f" q{i}" + " x" * (i % 4)
        a = " ".join(rng.choice(WORDS, 1 + i % 6)) + f" detail{i % 9} a{i}" + " y" * (i % 5)
        out.append(
            FaqItem(
                id=f"{prefix}-{i}",
                question=f"how {q}",
                answer=a,
                lang=LANGS[i % 3],
                market="mx" if i % 4 == 0 else None,
            )
        )
    return out


AnyStore = EmbeddedStore | QdrantStore


QUERIES = [
    ("paypal refund", 5, None, None),
    ("card order detail3", 3, "es", None),
    ("coupon", 7, None, "mx"),
    ("where is my parcel size", 4, "de", None),
    ("nothing shared here", 3, None, None),
    ("invoice account", 200, None, None),
]


def _search(index: AnyStore, encoder: FakeEncoder) -> list[list[Hit]]:
    lexicon = Lexicon.for_encoder(encoder)
    vectors = encoder.encode_queries([q for q, *_ in QUERIES])
    specs = [SearchSpec(k, lang, market, lexicon.query(q)) for q, k, lang, market in QUERIES]
    return asyncio.run(index.search_batch(vectors, specs))


# A small prefetch, so that entries missing from one part's prefetch (its default 0) matter.
FUSED = Retrieval(answer_weight=0.6, lexical_weight=0.05, prefetch_min=6)


def _same(got: list[list[Hit]], expected: list[list[Hit]]) -> None:
    for g, e, query in zip(got, expected, QUERIES, strict=True):
        assert [h.score for h in g] == pytest.approx([h.score for h in e], abs=1e-5), query
        # Entries tied with the last place (the fake encoder scores many 0) may differ.
        last = e[-1].score if e else 0.0
        assert [h.id for h in g if h.score > last + 1e-5] == [
            h.id for h in e if h.score > last + 1e-5
        ], query


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[EmbeddedStore, QdrantStore]]:
    """The fused search in process, and Qdrant evaluating the same query."""
    embedded = EmbeddedStore(tmp_path / "index", retrieval=FUSED)
    qdrant = QdrantStore(QdrantClient(":memory:"), retrieval=FUSED)
    yield embedded, qdrant
    embedded.close()
    qdrant.close()


def test_matrix_fusion_equals_qdrants_formula_query_through_edits(
    stores: tuple[EmbeddedStore, QdrantStore],
) -> None:
    embedded, qdrant = stores
    encoder = FakeEncoder(dim=DIM)
    for store in stores:
        store.build(_items(60), encoder, progress=False)
    first = _search(embedded, encoder)
    _same(first, _search(qdrant, encoder))
    assert sum(len(h) for h in first) > 20
    # Each part counts somewhere: scores are not the question's cosines alone.
    question_only = EmbeddedStore(embedded.root, retrieval=DENSE_ONLY)
    assert [h.score for h in _search(question_only, encoder)[0]] != pytest.approx(
        [h.score for h in first[0]], abs=1e-5
    )
    # Filters hold in the fused search too.
    for (_, _, lang, market), hits in zip(QUERIES, first, strict=True):
        assert hits or lang is None
        assert all(lang is None or h.lang == lang for h in hits)
        assert all(market is None or h.market == market for h in hits)

    # Edits change the answer and lexical vectors and the IDF: still the same as Qdrant.
    for store in stores:
        store.upsert(
            [
                FaqItem(id="e-3", question="how paypal", answer="paypal paypal refund", lang="en"),
                FaqItem(
                    id="new", question="coupon size", answer="coupon mx", lang="en", market="mx"
                ),
            ],
            encoder,
        )
        store.delete("e-10")
    edited = _search(embedded, encoder)
    _same(edited, _search(qdrant, encoder))
    assert "new" in {h.id for h in edited[2]} and "e-10" not in {h.id for h in edited[-1]}


@pytest.mark.parametrize("backend", ["embedded", "qdrant"])
def test_each_part_changes_the_ranking_and_dense_only_is_plain_cosine(
    backend: str, tmp_path: Path
) -> None:
    encoder = FakeEncoder(dim=256)  # wide: no hash collisions between these few words
    items = [
        FaqItem(
            id="pay",
            question="what payment options are there",
            answer="we take PayPal and cards",
            lang="en",
        ),
        FaqItem(id="other", question="gift card payment", answer="yes at checkout", lang="en"),
        FaqItem(id="far", question="where is my parcel", answer="track it", lang="en"),
    ]
    client = QdrantClient(":memory:")

    def store(retrieval: Retrieval | None = None) -> AnyStore:
        if backend == "embedded":
            return EmbeddedStore(tmp_path / "index", retrieval=retrieval)
        return QdrantStore(client, retrieval=retrieval)

    store().build(items, encoder, progress=False)
    query = "payment with paypal"
    vector = encoder.encode_queries([query])[0]
    tokens = Lexicon.for_encoder(encoder).query(query)

    def top(retrieval: Retrieval) -> list[Hit]:
        return store(retrieval).search(vector, 3, lexical=tokens)

    dense = top(DENSE_ONLY)
    # The question alone prefers the gift card entry (fewer other words); "PayPal" is only in
    # an answer, which the answer vector and the lexical part each find.
    assert dense[0].id == "other"
    cosine = float(encoder.encode_passages([items[1].question])[0] @ vector)
    assert dense[0].score == pytest.approx(cosine, abs=1e-5)
    assert top(Retrieval(answer_weight=0.0, lexical_weight=0.5))[0].id == "pay"
    assert top(Retrieval(answer_weight=1.0, lexical_weight=0.0))[0].id == "pay"


def test_lexical_weights_are_bm25_and_folded() -> None:
    lexicon = Lexicon.for_encoder(FakeEncoder(dim=DIM))
    assert lexicon.query("PayPal, paypal!") == lexicon.query("paypal")
    docs, avg = lexicon.documents(["a b b", "a"])
    assert avg == 2.0
    # tf 2 in a document longer than average weighs more than tf 1, less than twice.
    long_doc = dict(zip(docs[0].indices, docs[0].values, strict=True))
    b_id = lexicon.query("b")[0]
    a_id = lexicon.query("a")[0]
    assert long_doc[a_id] < long_doc[b_id] < 2 * long_doc[a_id]
    assert bm25_doc([1], 1.0).values == (1.0,)  # tf 1 at the average length: weight 1
    assert idf(1, 10) > idf(5, 10) > 0
