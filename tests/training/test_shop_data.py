"""The shop's own pairs: FAQ question->answer and translation pairs, hard negatives mined with
the real base model, topic-aware in-batch masking, per-file caps."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from model_export.training.config import config_from_dict
from model_export.training.data import Pair, write_pairs
from model_export.training.shop_data import faq_task_pairs, mine_negatives
from model_export.training.trainer import duplicate_mask, load_training_pairs

FAQ_ROWS = [
    {
        "id": "order-cancel",
        "question": "How do I cancel my order?",
        "answer": "Open My Orders.",
        "lang": "en",
    },
    {
        "id": "order-cancel.es",
        "question": "¿Cómo cancelo mi pedido?",
        "answer": "Abre Mis pedidos.",
        "lang": "es",
    },
    {
        "id": "order-track",
        "question": "Where is my order and how can I track it?",
        "answer": "Tap Track package.",
        "lang": "en",
    },
    {
        "id": "payment-methods",
        "question": "Which payment methods do you accept?",
        "answer": "Cards and PayPal.",
        "lang": "en",
    },
]


def _faq(tmp_path: Path) -> Path:
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in FAQ_ROWS), encoding="utf-8")
    return path


def test_faq_task_pairs_question_answer_and_translation(tmp_path: Path) -> None:
    pairs = faq_task_pairs(_faq(tmp_path))
    by_source = {(p.source, p.query): p for p in pairs}
    qa = by_source[("faq:answer", "Which payment methods do you accept?")]
    assert qa.label == "Cards and PayPal." and qa.topic == "payment-methods"
    tr = by_source[("faq:translation", "¿Cómo cancelo mi pedido?")]
    assert tr.label == "How do I cancel my order?"
    assert (tr.lang, tr.label_lang, tr.topic) == ("es", "en", "order-cancel")
    # English entries have no translation pair of their own
    assert not any(p.source == "faq:translation" and p.lang == "en" for p in pairs)


def test_negatives_are_the_base_models_closest_other_topic(
    tmp_path: Path, real_onnx_dir: Path
) -> None:
    from index_builder.model.encoder import OnnxEncoder

    pairs = [
        Pair(
            "wo ist mein paket",
            "Where is my order and how can I track it?",
            "de",
            topic="order-track",
        ),
        # labelled with the wrong topic on purpose: its nearest *other* topic is tracking
        Pair(
            "where is my parcel, track it", "How do I cancel my order?", "en", topic="order-cancel"
        ),
        Pair("bitext without topic", "no topic", "de"),
    ]
    mined, n = mine_negatives(pairs, _faq(tmp_path), real_onnx_dir)
    assert n == 2
    assert mined[1].negative == "Where is my order and how can I track it?"
    assert mined[2].negative is None
    # the first: the most similar English question among the other topics, by the same model
    others = ["How do I cancel my order?", "Which payment methods do you accept?"]
    enc = OnnxEncoder.load(real_onnx_dir)
    try:
        scores = enc.encode_passages(others) @ enc.encode_queries(["wo ist mein paket"])[0]
    finally:
        enc.close()
    assert mined[0].negative == others[int(scores.argmax())]


def test_same_topic_labels_are_not_in_batch_negatives() -> None:
    labels = ["How do I cancel my order?", "Open My Orders.", "Which payment methods?"]
    topics: list[str | None] = ["order-cancel", "order-cancel", "payment-methods"]
    m = duplicate_mask(labels, torch.device("cpu"), topics)
    assert m.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    # without topics only identical texts are masked
    assert not duplicate_mask(labels, torch.device("cpu")).any()


def test_per_file_cap(tmp_path: Path) -> None:
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    write_pairs([Pair(f"q{i}", f"l{i}", "de") for i in range(50)], big)
    write_pairs([Pair(f"s{i}", f"m{i}", "de") for i in range(5)], small)
    cfg = config_from_dict(
        {
            "dev_fraction": 0.0,
            "data": {
                "train_files": [str(big), str(small)],
                "max_pairs_per_file": {str(big): 10},
                "eval_dirs": [],
                "debian_faq_dir": "",
                "languages": ["de"],
            },
        }
    )
    pairs, summary = load_training_pairs(cfg)
    assert summary.pairs == 15
    assert sum(p.query.startswith("q") for p in pairs) == 10
