"""`faq-model golden`: golden queries drawn from labelled queries (`model_export.golden`), and
the file passing `faq-index build --golden` (`gate_setup`: the data).

The encoder is the hashing `FakeEncoder` put in place of `OnnxEncoder.load` (texts sharing words
rank each other first), the index the embedded store in a temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from index_builder.faq import read_faq, topic_of
from index_builder.indexing.quality_gate import load_golden
from model_export.cli import cli
from tests.fakes import FakeEncoder
from tests.index_builder.gate_setup import build, fake_encoder, write_faq


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> FakeEncoder:
    return fake_encoder(monkeypatch)


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    return write_faq(tmp_path)


# Per topic: queries that share words with the topic's own entries (answerable), and queries
# labelled with the topic that share words only with another topic's entry (not answerable).
ANSWERABLE = {
    "order-cancel": ["cancel my order", "how do i cancel", "cancelo mi pedido", "cancel order"],
    "refund-time": ["refund take how long", "cuánto tarda el reembolso", "refund how long"],
    "shipping-cost": ["shipping cost", "what does shipping cost"],
}
UNANSWERABLE = {
    "order-cancel": ["delete my account data", "reembolso tarda"],
    "refund-time": ["shipping to my country"],
    "shipping-cost": ["cancelo pedido"],
    "account-delete": ["how long does a refund take"],  # no answerable query at all
}


def dev_rows() -> list[dict[str, str]]:
    return [
        {"query": q, "faq_id": topic, "lang": "xx", "kind": "test"}
        for table in (ANSWERABLE, UNANSWERABLE)
        for topic, queries in table.items()
        for q in queries
    ]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def topic_within(encoder: FakeEncoder, faq: Path, query: str, topic: str, top_k: int) -> bool:
    """Ranked by hand, without Qdrant or the gate."""
    items = read_faq(faq)
    scores = (
        encoder.encode_passages([i.question for i in items]) @ encoder.encode_queries([query])[0]
    )
    order = np.argsort(-scores, kind="stable")[:top_k]
    return topic in {topic_of(items[j].id) for j in order}


def draw(tmp_path: Path, faq: Path, dev: Path, name: str, *extra: str) -> tuple[Result, Path]:
    out = tmp_path / name
    args = ["golden", "--queries", str(dev), "--faq", str(faq), "--out", str(out), *extra]
    return CliRunner().invoke(cli, args), out


def test_golden_draws_the_first_answerable_queries_in_hash_order(
    tmp_path: Path, faq: Path, encoder: FakeEncoder
) -> None:
    rows = dev_rows()
    dev = write_jsonl(tmp_path / "dev.jsonl", rows)
    result, out = draw(tmp_path, faq, dev, "golden.json", "--per-topic", "2", "--top-k", "1")
    assert result.exit_code == 0, result.output
    summary = f"3 of 4 topics got a golden query (6 queries); {len(rows)} labelled queries tried"
    assert f"{summary}, 9 within top 1" in result.output
    assert "no golden query for: account-delete" in result.output
    golden = json.loads(out.read_text(encoding="utf-8"))
    assert all(g["top_k"] == 1 and g["match"] == "topic" for g in golden)
    for g in golden:
        assert topic_within(encoder, faq, g["query"], g["expected_id"], top_k=1), g
    # Per topic, the two answerable queries that come first by SHA-256 of their text.
    expected = {
        topic: sorted(queries, key=lambda q: hashlib.sha256(q.encode()).hexdigest())[:2]
        for topic, queries in ANSWERABLE.items()
    }
    drawn: dict[str, list[str]] = {}
    for g in golden:
        drawn.setdefault(g["expected_id"], []).append(g["query"])
    assert drawn == expected

    # The file's order does not matter, and the file passes the gate with the same model.
    random.Random(7).shuffle(rows)
    shuffled = write_jsonl(tmp_path / "shuffled.jsonl", rows)
    again, out2 = draw(tmp_path, faq, shuffled, "again.json", "--per-topic", "2", "--top-k", "1")
    assert again.exit_code == 0 and out2.read_bytes() == out.read_bytes()
    assert len(load_golden(out)) == 6
    gated = build(faq, tmp_path / "q", "--golden", str(out))
    assert gated.exit_code == 0 and "6/6 golden queries passed" in gated.output, gated.output


def test_golden_refuses_an_unknown_topic_naming_the_line(
    tmp_path: Path, faq: Path, encoder: FakeEncoder
) -> None:
    dev = write_jsonl(tmp_path / "dev.jsonl", [*dev_rows()[:2], {"query": "x", "faq_id": "nope"}])
    result, out = draw(tmp_path, faq, dev, "golden.json")
    assert result.exit_code == 2, result.output
    assert f"{dev}:3: faq_id 'nope' is no topic of the FAQ" in result.output
    assert not out.exists()
