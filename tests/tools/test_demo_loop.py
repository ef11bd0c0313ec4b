"""`make demo-loop`'s pieces (tools/demo_loop.py): what it replays, what a simulated shopper
clicks, how a gap is named and when the gap report passes, and the R@1 it reads back. The run
itself (a service, training) is `make demo-loop`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from index_builder.faq import topic_of
from tools.demo_loop import (
    check_gaps,
    click_for,
    gap_topic,
    r1_of,
    read_jsonl,
    replay_queries,
    topic_ranks,
)

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "data" / "shopper" / "dev.jsonl"
GAPS = ROOT / "data" / "gaps" / "queries.jsonl"
FAQ = ROOT / "data" / "faq.jsonl"


def test_replay_is_the_dev_split_and_the_missing_topics_shuffled_alike_every_run() -> None:
    first, again = replay_queries(DEV, GAPS), replay_queries(DEV, GAPS)
    assert first == again
    assert len(first) == len(read_jsonl(DEV)) + len(read_jsonl(GAPS))
    assert {q.missing for q in first[:40]} == {True, False}  # mixed, not one file after the other


def test_the_missing_topics_are_missing_from_the_faq_and_many_languages_ask_them() -> None:
    faq_topics = {topic_of(row["id"]) for row in read_jsonl(FAQ)}
    rows = read_jsonl(GAPS)
    per_topic = Counter(r["topic"] for r in rows)
    assert not set(per_topic) & faq_topics
    assert 4 <= len(per_topic) <= 6 and min(per_topic.values()) >= 40
    assert len({r["lang"] for r in rows}) >= 10
    assert Counter(r["kind"] for r in rows)["code_mixed"] >= 60


def test_a_shopper_clicks_the_first_answer_of_the_wanted_topic_only() -> None:
    results = [
        {"id": "refund-time.de", "topic": "refund-time"},
        {"id": "order-cancel.de", "topic": "order-cancel"},
        {"id": "order-cancel", "topic": "order-cancel"},
    ]
    assert click_for(results, "order-cancel") == "order-cancel.de"
    assert click_for(results, "shipping-cost") is None
    assert click_for([], "order-cancel") is None


def test_a_gap_is_named_by_the_majority_of_its_examples() -> None:
    topic_of_text = {"a": "gift-wrap", "b": "gift-wrap", "c": "price-match"}
    assert gap_topic(["a", "b", "c"], topic_of_text) == "gift-wrap"
    assert gap_topic(["a", "c", "shop question"], topic_of_text) is None
    assert gap_topic(["shop question", "other"], topic_of_text) is None
    assert gap_topic(["a", "shop question"], topic_of_text) == "gift-wrap"


def test_the_gap_report_passes_when_the_missing_topics_lead_it() -> None:
    missing = {"gift-wrap", "price-match"}
    assert check_gaps(["price-match", "gift-wrap", None, "gift-wrap"], missing) == []
    assert check_gaps(["price-match", "price-match", None, "gift-wrap"], missing) == []  # split
    assert check_gaps(["price-match", None, None, None, "gift-wrap"], missing)  # too far down
    assert check_gaps(["price-match", None, "gift-wrap"], missing)  # half the top N is noise
    assert check_gaps(["price-match"], missing)  # a topic never found
    assert topic_ranks([None, "gift-wrap", "gift-wrap"], ["gift-wrap", "price-match"]) == {
        "gift-wrap": 2,
        "price-match": None,
    }


def test_r1_is_read_from_the_pooled_row_of_the_eval_results(tmp_path: Path) -> None:
    def row(model: str, lang: str, kind: str, r1: float) -> dict[str, object]:
        m = {"mean": r1, "ci_low": r1 - 0.1, "ci_high": r1 + 0.1}
        return {"model": model, "lang": lang, "kind": kind, "n": 712,
                "metrics": {"R@1": m, "R@3": m, "MRR@10": m}}  # fmt: skip

    path = tmp_path / "results.json"
    rows = [row("before", "de", "all", 0.5), row("before", "all", "all", 0.7)]
    path.write_text(json.dumps({"results": rows}), encoding="utf-8")
    got = r1_of(path, "before")
    assert got["r1"] == 0.7 and got["n"] == 712 and got["r1_ci"] == [0.7 - 0.1, 0.7 + 0.1]
