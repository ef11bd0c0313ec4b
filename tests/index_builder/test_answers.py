"""One answer per topic, in the shopper's language (`index_builder.answers.grouping`), and the
FAQ topic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from index_builder.answers.grouping import (
    FETCH_FACTOR,
    choose_entry,
    fetch_limit,
    group_by_topic,
    hit_topic,
    merge_hits,
    wanted_languages,
)
from index_builder.faq import FaqFileError, FaqItem, content_hash, read_faq


@dataclass(frozen=True)
class H:
    id: str
    lang: str
    score: float


@dataclass(frozen=True)
class T:
    """A hit whose payload carries an explicit topic."""

    id: str
    lang: str
    score: float
    topic: str | None


# "can I cancel mi pedido": one topic in three languages on top, then others.
HITS = [
    H("order-cancel.es", "es", 0.93),
    H("order-cancel.pt", "pt", 0.92),
    H("order-cancel", "en", 0.91),
    H("order-modify.es", "es", 0.88),
    H("order-modify", "en", 0.87),
    H("refund-time.de", "de", 0.86),
    H("refund-time", "en", 0.80),
    H("shipping-cost", "en", 0.79),
]


def test_grouping_returns_distinct_topics_ranked_by_their_best_hit() -> None:
    answers = group_by_topic(HITS, 3)
    assert [a.topic for a in answers] == ["order-cancel", "order-modify", "refund-time"]
    assert [a.topic_score for a in answers] == [0.93, 0.88, 0.86]


def test_grouping_off_keeps_the_ranked_hits() -> None:
    answers = group_by_topic(list(reversed(HITS)), 3, group=False)
    assert [a.hit.id for a in answers] == ["order-cancel.es", "order-cancel.pt", "order-cancel"]
    assert {a.lang_reason for a in answers} == {"ranked"}


def test_requested_language_wins_over_query_language_and_english() -> None:
    answers = group_by_topic(HITS, 3, requested="pt", detected="es")
    first = answers[0]
    assert (first.hit.id, first.lang_reason) == ("order-cancel.pt", "requested")
    # order-modify has no pt entry: the query's language is next.
    assert (answers[1].hit.id, answers[1].lang_reason) == ("order-modify.es", "query")
    # refund-time has neither: English.
    assert (answers[2].hit.id, answers[2].lang_reason) == ("refund-time", "english")


def test_query_language_then_english_then_best() -> None:
    answers = group_by_topic(HITS, 4, detected="de")
    assert [(a.hit.id, a.lang_reason) for a in answers] == [
        ("order-cancel", "english"),
        ("order-modify", "english"),
        ("refund-time.de", "query"),
        ("shipping-cost", "english"),
    ]
    only_foreign = [H("x.es", "es", 0.5), H("x.pt", "pt", 0.7)]
    entry, reason = choose_entry(
        sorted(only_foreign, key=lambda h: -h.score), requested=None, detected="de"
    )
    assert (entry.id, reason) == ("x.pt", "best")


def test_an_entry_not_fetched_comes_from_the_lookup_in_the_rules_order() -> None:
    index = {("x", "de"): H("x.de", "de", 0.1), ("x", "en"): H("x", "en", 0.2)}
    asked: list[tuple[str, str]] = []

    def lookup(topic: str, lang: str) -> H | None:
        asked.append((topic, lang))
        return index.get((topic, lang))

    fetched = [H("x.es", "es", 0.9), H("x.pt", "pt", 0.7)]
    # The requested language is looked up before the query's, which was fetched.
    entry, reason = choose_entry(fetched, requested="de", detected="es", topic="x", lookup=lookup)
    assert (entry.id, reason, asked) == ("x.de", "requested", [("x", "de")])
    # The query's language among the hits comes before English from the lookup.
    asked.clear()
    entry, reason = choose_entry(fetched, requested=None, detected="es", topic="x", lookup=lookup)
    assert (entry.id, reason, asked) == ("x.es", "query", [])
    # Nothing in the query's language anywhere: English from the lookup, then the best.
    entry, reason = choose_entry(fetched, requested=None, detected="th", topic="x", lookup=lookup)
    assert (entry.id, reason, asked) == ("x", "english", [("x", "th"), ("x", "en")])
    entry, reason = choose_entry(fetched, requested=None, detected="th", topic="y", lookup=lookup)
    assert (entry.id, reason) == ("x.es", "best")
    # Grouping passes each topic's name to the lookup.
    answers = group_by_topic(fetched, 1, requested="de", lookup=lookup)
    assert [(a.hit.id, a.topic, a.topic_score) for a in answers] == [("x.de", "x", 0.9)]


def test_no_preference_shows_english() -> None:
    assert group_by_topic(HITS, 1)[0].hit.id == "order-cancel"


def test_explicit_topic_overrides_the_id_rule() -> None:
    hits = [
        T("faq-17", "en", 0.9, "returns"),
        T("faq-18", "es", 0.95, "returns"),
        T("a.es", "es", 0.1, None),
    ]
    assert [a.topic for a in group_by_topic(hits, 5)] == ["returns", "a"]
    assert hit_topic(hits[2]) == "a"


def test_fetch_limit_leaves_room_for_translations() -> None:
    assert fetch_limit(5, group=False) == 5
    assert fetch_limit(5, group=True) == 5 * FETCH_FACTOR
    assert fetch_limit(50, group=True) >= 50
    assert fetch_limit(50, group=True) <= 400


def test_faq_topic_defaults_to_the_id_rule_and_may_be_explicit(tmp_path: Path) -> None:
    rows = [
        {"id": "order-cancel.es", "question": "q", "answer": "a", "lang": "es"},
        {"id": "faq-17", "question": "q", "answer": "a", "lang": "en", "topic": "returns"},
    ]
    path = tmp_path / "faq.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    items = read_faq(path)
    assert [i.topic for i in items] == ["order-cancel", "returns"]
    assert items[1].payload()["topic"] == "returns"
    csv = tmp_path / "faq.csv"
    csv.write_text("id,question,answer,lang,topic\nb.fr,q,a,fr,\nc,q,a,en,t\n", encoding="utf-8")
    assert [i.topic for i in read_faq(csv)] == ["b", "t"]


def test_default_topic_leaves_the_content_hash_as_before_and_an_explicit_one_changes_it() -> None:
    plain = FaqItem(id="a.es", question="q", answer="a", lang="es")
    same = FaqItem(id="a.es", question="q", answer="a", lang="es", topic="a")
    other = FaqItem(id="a.es", question="q", answer="a", lang="es", topic="b")
    # The hash a file had before the topic field existed (a model_dump_json without topic).
    before = plain.model_dump_json(exclude={"topic"})
    assert plain.identity_json() == before
    assert content_hash([plain]) == content_hash([same])
    assert content_hash([plain]) != content_hash([other])


def test_topic_too_long_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "faq.jsonl"
    row = {"id": "a", "question": "q", "answer": "a", "lang": "en", "topic": "t" * 200}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(FaqFileError, match="topic"):
        read_faq(path)


def test_wanted_languages_are_the_requested_the_query_s_then_english_once_each() -> None:
    assert wanted_languages("de", "es") == ("de", "es", "en")
    assert wanted_languages(None, "es") == ("es", "en")
    assert wanted_languages("en", "en") == ("en",)
    assert wanted_languages(None, None) == ("en",)


def test_merged_language_hits_bring_the_wanted_entry_without_duplicates() -> None:
    fetched = HITS[:3]  # order-cancel in es, pt, en: no de entry fetched
    more = [H("order-cancel.de", "de", 0.7), H("refund-time.de", "de", 0.86)]
    merged = merge_hits(fetched, [*more, H("order-cancel.es", "es", 0.93)])
    assert [h.id for h in merged] == [
        "order-cancel.es", "order-cancel.pt", "order-cancel", "refund-time.de", "order-cancel.de",
    ]  # fmt: skip
    first = group_by_topic(merged, 2, requested="de")
    assert [(a.hit.id, a.lang_reason, a.topic_score) for a in first] == [
        ("order-cancel.de", "requested", 0.93),
        ("refund-time.de", "requested", 0.86),
    ]
