"""The threshold a reindex picks for its FAQ (`index_builder.indexing.faq_calibration`): the two
thresholds it is made of, the positives, the choice, and the record in the collection's
metadata on both backends. The model is beside the point (FakeEncoder); the figures on a real
FAQ with the real model are `tests/app/test_reindex_threshold_real.py`'s."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from index_builder.answers.calibration import Scores, Vectors, threshold_abstaining, threshold_for
from index_builder.faq import FaqItem, content_hash
from index_builder.indexing.faq_calibration import (
    META_KEY,
    CollectionCalibration,
    anchors_hash,
    annotator,
    positives,
    recalibrate,
)
from index_builder.model.manifest import AbstainCalibration
from index_builder.store import EmbeddedStore, QdrantStore
from tests.fakes import FakeEncoder

ITEMS = [
    FaqItem(id="order-cancel", question="How do I cancel my order?", answer="a", lang="en"),
    FaqItem(id="order-cancel.es", question="¿Cómo cancelo mi pedido?", answer="b", lang="es"),
    FaqItem(id="gift-wrap", question="Can you gift wrap my parcel?", answer="c", lang="en"),
]
ANCHORS = [
    "what is the weather like in paris tomorrow",
    "good morning how are you",
    "asdf qwer zxcv",
    "who won the football match yesterday",
    "recipe for banana bread",
]


def model(min_score: float = -5.0, weight: float = 0.5) -> AbstainCalibration:
    return AbstainCalibration(
        min_score=min_score, offtopic_weight=weight, anchors=ANCHORS, refusal_budget=0.02,
        answerable=1, offtopic=len(ANCHORS), dev_refused=0.0, dev_abstained=1.0, faq_hash="x",
    )  # fmt: skip


def test_threshold_abstaining_is_the_lowest_that_reaches_the_target() -> None:
    scores = np.array([0.1, 0.2, 0.2, 0.3, 0.9])
    t = threshold_abstaining(scores, 0.6)
    # 3 of 5 below it, ties included; no lower threshold has 3 below.
    assert np.mean(scores < t) >= 0.6 and t <= 0.2 + 1e-9
    assert np.mean(scores < threshold_abstaining(scores, 0.5)) >= 0.5
    assert threshold_abstaining(scores, 1.0) > 0.9
    assert threshold_abstaining(scores, 0.0) == 0.1
    # The offline rule's threshold, for contrast: the highest refusing at most the budget.
    assert threshold_for(scores, 0.2) == 0.2


def test_positives_are_the_questions_variants_and_code_switched_translations() -> None:
    found = positives(ITEMS)
    texts = {p.text for p in found}
    assert "How do I cancel my order?" in texts  # the question itself
    assert "how do i cancel my order" in texts  # case and punctuation
    assert "cancel order" in texts  # its longer words
    # A topic with a translation: one language's first half, the other's second half.
    assert "how do i mi pedido" in texts
    assert "cómo cancelo cancel my order" in texts
    assert {p.topic for p in found if "pedido" in p.text} == {"order-cancel"}
    # Deterministic, whatever the order of the FAQ, and bounded.
    assert {p.text for p in positives(ITEMS[::-1])} == texts
    assert len(positives(ITEMS, limit=5)) == 5
    assert len(texts) == len(found)


def _fixed(scores: dict[str, float]) -> object:
    def top(texts: Sequence[str], vectors: Vectors) -> Scores:
        return np.array([scores.get(t, 0.9) for t in texts], dtype=np.float64)

    return top


def test_the_off_topic_target_places_it_the_refusal_budget_caps_it() -> None:
    encoder = FakeEncoder(dim=64)
    weight0 = model(weight=0.0)
    # Anchors score 0.1 .. 0.5, every positive 0.9: the lowest threshold abstaining on 80%
    # of the anchors is just above the 4th lowest (0.4), well under the positives.
    anchors = {a: 0.1 * (i + 1) for i, a in enumerate(ANCHORS)}
    picked = recalibrate(
        ITEMS, encoder, _fixed(anchors), weight0, retrieval="r", offtopic_target=0.8
    )  # type: ignore[arg-type]
    assert picked.chosen_by == "offtopic_target"
    assert 0.4 < picked.min_score < 0.41
    assert picked.offtopic_abstained == 0.8 and picked.positives_refused == 0.0
    assert picked.budget_threshold == pytest.approx(0.9)
    assert picked.positives == len(positives(ITEMS)) and picked.offtopic == len(ANCHORS)
    assert (picked.model_min_score, picked.retrieval) == (-5.0, "r")
    assert picked.anchors_hash == anchors_hash(ANCHORS)
    # Anchors above the FAQ's own variants: the target would refuse them all, so the budget's
    # threshold (the offline rule's) wins.
    high = {a: 0.95 for a in ANCHORS}
    capped = recalibrate(ITEMS, encoder, _fixed(high), weight0, retrieval="r")  # type: ignore[arg-type]
    assert capped.chosen_by == "refusal_budget"
    assert capped.min_score == pytest.approx(0.9) and capped.positives_refused == 0.0


def test_the_models_labelled_threshold_is_kept_for_the_faq_it_was_calibrated_on() -> None:
    encoder = FakeEncoder(dim=64)
    anchors = {a: 0.1 * (i + 1) for i, a in enumerate(ANCHORS)}
    same = model(min_score=0.33).model_copy(
        update={"faq_hash": content_hash(ITEMS), "retrieval": "r"}
    )
    kept = recalibrate(ITEMS, encoder, _fixed(anchors), same, retrieval="r")  # type: ignore[arg-type]
    assert (kept.chosen_by, kept.min_score) == ("labelled", 0.33)
    assert "labelled questions of this FAQ" in kept.describe()
    # Another FAQ, or other fusion weights: picked again.
    other = recalibrate(ITEMS[:2], encoder, _fixed(anchors), same, retrieval="r")  # type: ignore[arg-type]
    fused = recalibrate(ITEMS, encoder, _fixed(anchors), same, retrieval="other")  # type: ignore[arg-type]
    assert other.chosen_by == fused.chosen_by == "offtopic_target"


def test_the_anchors_weigh_in_with_the_models_weight() -> None:
    encoder = FakeEncoder(dim=64)
    flat = {a: 0.5 for a in ANCHORS}
    without = recalibrate(ITEMS, encoder, _fixed(flat), model(weight=0.0), retrieval="r")  # type: ignore[arg-type]
    weighed = recalibrate(ITEMS, encoder, _fixed(flat), model(weight=0.5), retrieval="r")  # type: ignore[arg-type]
    assert weighed.offtopic_weight == 0.5
    # The FAQ's variants share words with anchors ("how", "you"): the weight lowers them.
    assert weighed.budget_threshold < without.budget_threshold
    # Each anchor is scored against the others, not itself (that would take a full 0.5 off):
    # these share no words, so nothing is taken off.
    assert weighed.target_threshold == pytest.approx(0.5)


@pytest.fixture(params=["embedded", "qdrant"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmbeddedStore | QdrantStore]:
    s: EmbeddedStore | QdrantStore
    if request.param == "embedded":
        s = EmbeddedStore(tmp_path / "index")
    else:
        s = QdrantStore(QdrantClient(":memory:"))
    yield s
    s.close()


def test_a_build_records_the_threshold_in_the_collections_metadata(
    store: EmbeddedStore | QdrantStore,
) -> None:
    encoder = FakeEncoder(dim=64)
    annotate = annotator(store, encoder, ITEMS, model(), retrieval="served")
    assert annotate is not None
    info, _ = store.build(ITEMS, encoder, progress=False, annotate=annotate)
    record = CollectionCalibration.from_meta(info.abstain)
    assert record is not None and info.abstain is not None
    assert record.method == "reindex" and record.retrieval == "served"
    # Scored on the new collection itself: the FAQ's questions find their entries.
    assert record.positives_refused <= record.refusal_budget
    assert record.min_score == info.abstain["min_score"]
    # What a restarted process reads back.
    if isinstance(store, EmbeddedStore):
        meta = json.loads((store.root / info.collection / "meta.json").read_text())
        assert meta[META_KEY] == record.model_dump()
        assert EmbeddedStore(store.root).info().abstain == record.model_dump()
    # An edit keeps the version's threshold; an unreadable record is no threshold.
    store.upsert([FaqItem(id="new", question="where is my parcel", answer="d", lang="en")], encoder)
    assert store.info().abstain == record.model_dump()
    assert CollectionCalibration.from_meta({"min_score": "high"}) is None


def test_no_anchors_no_threshold(store: EmbeddedStore | QdrantStore) -> None:
    encoder = FakeEncoder(dim=64)
    assert annotator(store, encoder, ITEMS, None, retrieval="r") is None
    bare = model().model_copy(update={"anchors": []})
    assert annotator(store, encoder, ITEMS, bare, retrieval="r") is None
    info, _ = store.build(ITEMS, encoder, progress=False)
    assert info.abstain is None
