"""`faq-index calibrate` and `faq-index evaluate-answers` on a hashing FakeEncoder.

FakeEncoder vectors are bags of hashed words, so queries that share words with a question score
high and the off-topic queries (no shop words) score low: enough to see the commands wire the
data, the calibration, the manifest and the figures together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from index_builder.calibration import offtopic_split
from index_builder.cli import cli
from index_builder.encoder import OnnxEncoder
from index_builder.manifest import ModelManifest
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


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
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


def test_calibrate_stores_the_rule_in_the_manifest(setup: dict[str, Path]) -> None:
    args = ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"])]
    args += ["--answerable", str(setup["shopper"] / "dev.jsonl")]
    args += ["--offtopic", str(setup["offtopic"]), "--refusal-budget", "0.0"]
    # The toy FAQ's answers are all "a": calibrated on the question vectors alone.
    args += ["--answer-weight", "0", "--lexical-weight", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    stored = ModelManifest.read(setup["model"]).abstain
    assert stored is not None
    assert stored.retrieval == "answer_weight=0 lexical_weight=0"  # the score it read
    assert stored.dev_refused == 0.0
    assert stored.dev_abstained == 1.0
    assert stored.answerable == len(SHOPPER)
    assert stored.variant == "fp32"
    assert stored.offtopic == sum(offtopic_split(q) == "dev" for q in OFFTOPIC)
    assert "stored in" in result.output
    # --no-write prints the setting and leaves the manifest alone.
    again = CliRunner().invoke(cli, [*args, "--no-write"])
    assert again.exit_code == 0, again.output
    assert f"FAQ_MIN_SCORE={stored.min_score:.4f}" in again.output


def test_calibrate_bad_data_is_exit_2(setup: dict[str, Path], tmp_path: Path) -> None:
    args = ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"])]
    result = CliRunner().invoke(cli, [*args, "--answerable", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_evaluate_answers_prints_both_done_when_figures(setup: dict[str, Path]) -> None:
    args = ["evaluate-answers", "--faq", str(setup["faq"]), "--model", f"m={setup['model']}"]
    args += ["--shopper-dir", str(setup["shopper"]), "--offtopic", str(setup["offtopic"])]
    args += ["--examples", str(setup["examples"])]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "calibrated now on dev" in out
    assert "off-topic test split abstained 100.0%" in out
    assert "shopper test split wrongly refused" in out
    assert "| shopper test | 6 |" in out and "| README examples | 1 |" in out
    # After `calibrate` the stored rule is used.
    CliRunner().invoke(
        cli,
        ["calibrate", "--faq", str(setup["faq"]), "--model-dir", str(setup["model"]),
         "--answerable", str(setup["shopper"] / "dev.jsonl"), "--offtopic", str(setup["offtopic"])],
    )  # fmt: skip
    assert "(manifest)" in CliRunner().invoke(cli, args).output
