"""The toy data of the answers commands (`faq-model calibrate`, `faq-model evaluate-answers`).

FakeEncoder vectors are bags of hashed words, so queries that share words with a question score
high and the off-topic queries (no shop words) score low.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from index_builder.faq import FaqItem
from index_builder.model.encoder import OnnxEncoder
from index_builder.model.manifest import ModelManifest
from model_export.calibration import offtopic_split
from tests.fakes import FakeEncoder

FAQ = [
    ("order-cancel", "how do I cancel my order", "en"),
    ("order-cancel.es", "como cancelo mi pedido", "es"),
    ("refund-time", "how long does my refund take", "en"),
    ("refund-time.de", "wie lange dauert meine erstattung", "de"),
    ("shipping-cost", "how much does shipping cost", "en"),
]
SHOPPER = [
    ("cancel my order please", "order-cancel", "en"),
    ("cancelo mi pedido", "order-cancel", "es"),
    ("refund take how long", "refund-time", "en"),
    ("wie lange dauert erstattung", "refund-time", "de"),
    ("shipping cost how much", "shipping-cost", "en"),
    ("how do I cancel order", "order-cancel", "en"),
]
OFFTOPIC = [f"zebra{i} quantum{i} violin{i}" for i in range(40)]


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def write_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The model directory (FakeEncoder behind `OnnxEncoder.load`), shopper splits, off-topic
    queries, examples and FAQ files under `tmp_path`."""
    fake = FakeEncoder(dim=256)
    monkeypatch.setattr(OnnxEncoder, "load", classmethod(lambda cls, *a, **kw: fake))
    model = tmp_path / "model"
    model.mkdir()
    ModelManifest(
        name="fake", source_model="x", dim=256, max_length=128, inputs=["input_ids"],
        variants={"fp32": "model.onnx"}, files={},
    ).write(model)  # fmt: skip
    shopper = tmp_path / "shopper"
    shopper.mkdir()
    rows = [{"query": q, "faq_id": t, "lang": lang, "kind": "x"} for q, t, lang in SHOPPER]
    _jsonl(shopper / "dev.jsonl", rows)
    _jsonl(shopper / "test.jsonl", rows)
    offtopic = _jsonl(
        tmp_path / "off.jsonl", [{"query": q, "lang": "und", "kind": "gibberish"} for q in OFFTOPIC]
    )
    assert {offtopic_split(q) for q in OFFTOPIC} == {"dev", "test"}
    examples = tmp_path / "examples.json"
    examples.write_text(
        json.dumps([{"query": "cancelo mi pedido", "topic": "order-cancel", "langs": ["es"]}]),
        "utf-8",
    )
    faq = _jsonl(
        tmp_path / "faq.jsonl",
        [{"id": i, "question": q, "answer": "a", "lang": lang} for i, q, lang in FAQ],
    )
    return {
        "model": model, "shopper": shopper, "offtopic": offtopic, "faq": faq, "examples": examples,
    }  # fmt: skip


def items(rows: Sequence[tuple[str, str, str]]) -> list[FaqItem]:
    return [FaqItem(id=i, question=q, answer="a", lang=lang) for i, q, lang in rows]


# Hand-made entries for the served search and the figures built on it.
HAND_FAQ = items(
    [
        ("order-cancel", "cancel order now", "en"),
        ("order-cancel.es", "cancel order ahora", "es"),
        ("order-cancel.de", "cancel order jetzt", "de"),
        ("refund-time", "refund time", "en"),
        ("shipping-cost", "shipping cost", "en"),
    ]
)
