"""`faq-model build-data --source querylog`: the service's query log as training pairs. No model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert
from typer.testing import CliRunner

from index_builder.querylog import connect, feedback, searches
from model_export.cli import cli
from model_export.shopper_data import DEFAULT_DIR, DEFAULT_FAQ
from model_export.training.data import read_pairs

runner = CliRunner()
# A shopper test-split query: evaluation data, which no export may turn into training data.
EVAL_QUERY = json.loads((DEFAULT_DIR / "test.jsonl").read_text().splitlines()[0])


def _log(
    path: Path, searches_and_feedback: list[tuple[str, str | None, list[dict[str, object]]]]
) -> str:
    url = f"sqlite:///{path}"
    engine = connect(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for i, (query, top_id, events) in enumerate(searches_and_feedback):
            row = {"created_at": now, "request_id": f"r{i}", "position": 0, "query": query}
            row |= {"code_mixed": False, "answered": top_id is not None, "top_id": top_id}
            search_id = conn.execute(
                insert(searches).values(**row, hits=[], latency_ms=1.0)
            ).inserted_primary_key[0]
            for event in events:
                conn.execute(insert(feedback).values(search_id=search_id, created_at=now, **event))
    engine.dispose()
    return url


def _export(tmp_path: Path, url: str, *extra: str) -> tuple[int, str, list[dict[str, str]]]:
    out = tmp_path / "querylog.jsonl"
    args = ["build-data", "--source", "querylog", "--db", url, "--faq", str(DEFAULT_FAQ)]
    res = runner.invoke(
        cli, [*args, "--out", str(out), "--eval-dir", str(tmp_path / "none"), *extra]
    )
    pairs = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return res.exit_code, res.stdout + res.stderr, pairs


def test_clicked_and_helpful_searches_become_pairs_and_evaluation_queries_do_not(
    tmp_path: Path,
) -> None:
    url = _log(
        tmp_path / "querylog.db",
        [
            ("can I cancel mi pedido pls", "order-modify.es", [{"clicked_id": "order-cancel.es"}]),
            (EVAL_QUERY["query"], EVAL_QUERY["faq_id"], [{"clicked_id": EVAL_QUERY["faq_id"]}]),
            ("where is my parcel omg", "order-track", [{"helpful": True}]),
            (
                "refund kapan masuk",
                "refund-time",
                [{"clicked_id": "refund-time"}, {"helpful": False}],
            ),
            ("asdf qwer", None, []),
            ("weather in paris", None, [{"helpful": True}]),
            ("shipping to mars", "shipping-countries", []),
        ],
    )
    code, output, pairs = _export(tmp_path, url, "--with-answers")
    assert code == 0, output
    questions = [(p["query"], p["label"], p["source"]) for p in pairs if p["source"] == "querylog"]
    assert questions == [
        ("can I cancel mi pedido pls", "How do I cancel my order?", "querylog"),
        ("where is my parcel omg", "Where is my order and how can I track it?", "querylog"),
    ]
    assert [p["source"] for p in pairs].count("querylog:answer") == 2
    assert pairs[0]["topic"] == "order-cancel" and pairs[0]["label_lang"] == "en"
    # What `make train` reads (configs/train/shop.toml's train files, after mine-negatives).
    assert all(p.topic for p in read_pairs(tmp_path / "querylog.jsonl"))
    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["guard_dropped"] == 2  # question and answer pairs


def test_a_database_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    code, output, _ = _export(tmp_path, f"sqlite:///{tmp_path / 'missing.db'}")
    assert code == 2 and "no such SQLite file" in output
    assert not (tmp_path / "missing.db").exists()
