"""`tools.index_recall`: both backends return the exact best hits by the numpy reference on a
small FAQ (the fake encoder), and the measure counts by score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index_builder.faq import FaqItem
from index_builder.store import EmbeddedStore, Hit, SearchSpec
from index_builder.store.embedded import Entries
from index_builder.store.fusion import Retrieval
from index_builder.store.lexical import Lexicon
from tests.fakes import FakeEncoder
from tools.index_recall import Recall, Reference, measure, run

WORDS = ["order", "refund", "paypal", "card", "parcel", "return", "size", "invoice", "coupon"]
FUSED = Retrieval(answer_weight=0.5, lexical_weight=0.05)


def _items(n: int) -> list[FaqItem]:
    rng = np.random.default_rng(3)
    return [
        FaqItem(
            id=f"e-{i}",
            question=" ".join(rng.choice(WORDS, 3)) + f" q{i}",
            answer=" ".join(rng.choice(WORDS, 2)) + f" a{i}" + " x" * (i % 3),
            lang=["en", "es"][i % 2],
        )
        for i in range(n)
    ]


QUERIES = ["paypal refund", "card order", "coupon size invoice", "parcel", "where is it"]


def test_both_backends_return_the_exact_best_hits(tmp_path: Path) -> None:
    results = run(
        _items(40), FakeEncoder(dim=32), QUERIES, ["en", "es", None, "de", "en"], FUSED, tmp_path
    )
    assert set(results) == {"embedded", "qdrant"}
    for by_filter in results.values():
        # "de": no entry has it, so that query is left out of the filtered run.
        assert by_filter == {
            "unfiltered": Recall(queries=5, best=1.0, recall=1.0),
            "query's language": Recall(queries=4, best=1.0, recall=1.0),
        }
    assert (tmp_path / "faq.alias").read_text() == "faq_v1"  # built by the embedded store


def test_the_reference_is_the_fused_formula_over_every_row(tmp_path: Path) -> None:
    encoder = FakeEncoder(dim=32)
    store = EmbeddedStore(tmp_path, retrieval=FUSED)
    store.build(_items(40), encoder, progress=False)
    entries = Entries.load(tmp_path / "faq_v1")
    reference = Reference(entries, FUSED)
    vector = encoder.encode_queries(["paypal refund"])[0]
    tokens = Lexicon.for_encoder(encoder).query("paypal refund")
    # Every row a prefetch can reach (40 < the prefetch): the store's scores are the formula's.
    hits = store.search(vector, 40, lexical=tokens)
    scores = reference.scores(vector, SearchSpec(40, None, None, tokens))
    assert len(hits) == 40
    assert [h.score for h in hits] == pytest.approx(
        [scores[reference.position[h.id]] for h in hits], abs=1e-5
    )
    spanish = reference.scores(vector, SearchSpec(40, "es", None, tokens))
    assert np.isinf(spanish[::2]).all() and np.isfinite(spanish[1::2]).all()
    store.close()


def _hit(i: int) -> Hit:
    return Hit(f"e-{i}", "q", "a", "en", None, [], 0.0)


def test_a_hit_counts_by_its_reference_score() -> None:
    scores = np.array([0.9, 0.8, 0.7995, 0.5, -np.inf])
    position = {f"e-{i}": i for i in range(5)}
    # Best first, then a near-tie of the 2nd best: both count within 1e-3, not within 1e-5.
    assert measure([[_hit(0), _hit(2)]], [scores], position, 2, eps=1e-3) == Recall(1, 1.0, 1.0)
    assert measure([[_hit(0), _hit(2)]], [scores], position, 2) == Recall(1, 1.0, 0.5)
    assert measure([[_hit(1), _hit(0)]], [scores], position, 2) == Recall(1, 0.0, 1.0)
    assert measure([[_hit(3)]], [scores], position, 2) == Recall(1, 0.0, 0.0)
    # Fewer rows under the filter than k: the top k is all of them.
    only = np.array([-np.inf, 0.2, -np.inf, -np.inf, 0.1])
    assert measure([[_hit(1), _hit(4)]], [only], position, 10) == Recall(1, 1.0, 1.0)
    assert measure([[]], [np.full(5, -np.inf)], position, 10) == Recall(0, 1.0, 1.0)
