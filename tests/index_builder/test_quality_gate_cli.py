"""`faq-index build --golden` and `faq-index golden`: the quality gate on the command line.

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

from index_builder.cli import cli
from index_builder.encoder import OnnxEncoder
from index_builder.faq import read_faq, topic_of
from index_builder.quality_gate import load_golden
from index_builder.store import EmbeddedStore
from tests.fakes import FakeEncoder

FAQ_ROWS = [
    ("order-cancel", "How do I cancel my order?", "en"),
    ("order-cancel.es", "¿Cómo cancelo mi pedido?", "es"),
    ("refund-time", "How long does a refund take?", "en"),
    ("refund-time.es", "¿Cuánto tarda el reembolso?", "es"),
    ("shipping-cost", "What does shipping cost to my country?", "en"),
    ("account-delete", "Can I delete my account and data?", "en"),
]


@pytest.fixture
def encoder(monkeypatch: pytest.MonkeyPatch) -> FakeEncoder:
    fake = FakeEncoder(dim=384)
    monkeypatch.setattr(OnnxEncoder, "load", classmethod(lambda cls, *a, **kw: fake))
    for name in ("FAQ_GOLDEN_QUERIES", "FAQ_GOLDEN_TOP_K"):
        monkeypatch.delenv(name, raising=False)
    return fake


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    path = tmp_path / "faq.jsonl"
    rows = [
        {"id": i, "question": q, "answer": f"answer {i}", "lang": lang} for i, q, lang in FAQ_ROWS
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def build(faq: Path, store_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Result:
    args = ["build", "--faq", str(faq), "--index-path", str(store_dir), *extra]
    return CliRunner().invoke(cli, args, env=env)


def state(store_dir: Path) -> tuple[str | None, list[str]]:
    """(alias target, versioned collections) of the embedded directory."""
    index = EmbeddedStore(store_dir)
    try:
        return index.current_collection(), [name for _, name in index.versions()]
    finally:
        index.close()


PASSING = [
    {"query": "cancel my order", "expected_id": "order-cancel", "top_k": 1},
    # Only the Spanish entry shares words with it: "topic" accepts a translation.
    {"query": "cancelo mi pedido", "expected_id": "order-cancel", "match": "topic", "top_k": 1},
]
FAILING = {"query": "how long does a refund take", "expected_id": "shipping-cost", "top_k": 2}


# --- faq-index build --golden -------------------------------------------------------------------


def test_gate_pass_moves_the_alias(tmp_path: Path, faq: Path, encoder: FakeEncoder) -> None:
    store_dir = tmp_path / "q"
    assert build(faq, store_dir).exit_code == 0
    golden = write_json(tmp_path / "golden.json", PASSING)
    # From the environment, like the service's settings of the same names.
    env = {"FAQ_GOLDEN_QUERIES": str(golden), "FAQ_GOLDEN_TOP_K": "3"}
    result = build(faq, store_dir, "--force", env=env)
    assert result.exit_code == 0, result.output
    assert "quality gate: 2/2 golden queries passed" in result.output
    assert state(store_dir) == ("faq_v2", ["faq_v1", "faq_v2"])


def test_gate_failure_exits_3_and_leaves_the_alias(
    tmp_path: Path, faq: Path, encoder: FakeEncoder
) -> None:
    store_dir = tmp_path / "q"
    assert build(faq, store_dir).exit_code == 0
    golden = write_json(tmp_path / "golden.json", [*PASSING, FAILING])
    result = build(faq, store_dir, "--force", "--golden", str(golden))
    assert result.exit_code == 3, result.output
    assert "1 of 3 golden queries failed on faq_v2" in result.output
    assert "stays on faq_v1" in result.output
    # Which query, what it expected, what it got instead.
    assert "'how long does a refund take': expected shipping-cost in top 2, got refund-time" in (
        result.output
    )
    assert state(store_dir) == ("faq_v1", ["faq_v1"])

    # Nothing to build (same FAQ, same model): the gate judges the live collection instead.
    result = build(faq, store_dir, "--golden", str(golden))
    assert result.exit_code == 3, result.output
    assert "the live faq_v1 fails 1 of 3" in result.output
    assert state(store_dir) == ("faq_v1", ["faq_v1"])


def test_bad_golden_file_exits_2_naming_file_and_entry(
    tmp_path: Path, faq: Path, encoder: FakeEncoder
) -> None:
    store_dir = tmp_path / "q"
    golden = write_json(tmp_path / "golden.json", [PASSING[0], {"query": "no expected id"}])
    result = build(faq, store_dir, "--golden", str(golden))
    assert result.exit_code == 2, result.output
    assert f"{golden} entry 2: expected_id: Field required" in result.output
    assert "Traceback" not in result.output
    assert state(store_dir) == (None, [])  # refused before anything was built

    topic_with_suffix = {**PASSING[1], "expected_id": "order-cancel.es"}
    write_json(golden, [topic_with_suffix])
    result = build(faq, store_dir, "--golden", str(golden))
    assert result.exit_code == 2 and "entry 1" in result.output and "not a topic" in result.output


# --- faq-index golden -------------------------------------------------------------------------

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


def test_keep_reads_its_faq_setting(encoder: FakeEncoder, faq: Path, tmp_path: Path) -> None:
    # The README says every CLI reads the FAQ_ settings: FAQ_KEEP_COLLECTIONS prunes here too.
    store_dir = tmp_path / "store_dir"
    env = {"FAQ_KEEP_COLLECTIONS": "1"}
    assert build(faq, store_dir, env=env).exit_code == 0
    assert build(faq, store_dir, "--force", env=env).exit_code == 0
    alias_target, versions = state(store_dir)
    assert versions == [alias_target]
    bad = build(faq, store_dir, "--force", env={"FAQ_ENCODE_BATCH_SIZE": "0"})
    assert bad.exit_code == 2
