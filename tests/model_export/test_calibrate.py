"""The served search and the abstain calibration of `model_export.calibrate` on hand-made
vectors (the figures built on them: tests/evaluation/test_answers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from index_builder.store.fusion import DENSE_ONLY
from model_export.calibrate import FaqSearch, calibrate_model, rule_for
from model_export.calibration import LabelledQuery, OffTopicQuery
from tests.fakes import FakeEncoder
from tests.model_export.answers_setup import HAND_FAQ as FAQ

REPO = Path(__file__).resolve().parents[2]


def test_search_ranks_by_the_served_score() -> None:
    faq = FaqSearch(FAQ, FakeEncoder(dim=128))
    q = faq.encoder.encode_queries(["shipping cost"])
    row = faq.search(["shipping cost"], q, 2)[0]
    assert row[0].id == "shipping-cost"
    assert row[0].score == pytest.approx(float(faq.top_scores(["shipping cost"], q)[0]))
    assert len(row) == 2
    # Questions only: the score is the plain cosine with the question's passage vector.
    dense = faq.with_retrieval(DENSE_ONLY).search(["shipping cost"], q, 1)[0][0]
    cosine = float(faq.encoder.encode_passages(["shipping cost"])[0] @ q[0])
    assert dense.score == pytest.approx(cosine, abs=1e-5)
    # The fused default mixes in the answer ("a" for every entry here), so it scores lower.
    assert row[0].score < dense.score


def test_off_topic_dev_queries_are_scored_without_their_own_anchor() -> None:
    # The off-topic queries are the anchors: scored against themselves, every one would look
    # off-topic (similarity 1) and the dev figure would flatter the rule. A shop-like off-topic
    # query ("cancel order ..." with unrelated words) must be judged against the others only.
    faq = FaqSearch(FAQ, FakeEncoder(dim=256))
    answerable = [LabelledQuery(q, "t", "en", "x") for q in ("cancel order", "refund time")]
    offtopic = [OffTopicQuery("cancel order now zebra", "en", "x", False)] + [
        OffTopicQuery(f"violin{i} quantum{i}", "und", "gibberish", False) for i in range(9)
    ]
    result, stored = calibrate_model(faq, answerable, offtopic, refusal_budget=0.0)
    assert stored.dev_abstained == result.abstained == 0.9
    assert stored.anchors == [q.query for q in offtopic] or stored.offtopic_weight == 0.0


def test_dense_search_restricted_to_a_language() -> None:
    faq = FaqSearch(FAQ, FakeEncoder(dim=128))
    q = faq.encoder.encode_queries(["shipping cost"])
    row = faq.search(["shipping cost"], q, 2, "es")[0]
    assert [e.id for e in row] == ["order-cancel.es"]


SHOP_MODEL = REPO / "artifacts" / "onnx" / "shop"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHOP_MODEL / "manifest.json").is_file(), reason="needs the trained model (make train)"
)
def test_issue_examples_on_the_calibrated_trained_model() -> None:
    """The issue's examples: gibberish and weather abstain, the shopper's question does not."""
    from index_builder.faq import read_faq
    from index_builder.model.encoder import OnnxEncoder
    from index_builder.model.manifest import ModelManifest

    calibration = ModelManifest.read(SHOP_MODEL).abstain
    if calibration is None:
        pytest.skip("not calibrated: faq-model calibrate --model-dir artifacts/onnx/shop")
    faq = FaqSearch(read_faq(REPO / "data" / "faq.jsonl"), OnnxEncoder.load(SHOP_MODEL))
    rule = rule_for(faq, calibration)
    for query, answered in [
        ("can I cancel mi pedido", True),
        ("kann ich mit PayPal bezahlen", True),
        ("asdf qwer zxcv", False),
        ("weather in Paris", False),
    ]:
        vector = faq.encoder.encode_queries([query])
        top = float(faq.top_scores([query], vector)[0])
        assert rule.answered(top, vector[0])[0] is answered, query
