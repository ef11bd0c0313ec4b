"""The hard FAQ (data/hard_faq): its invariants, its loader and its stratified split. No model."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from index_builder.faq import read_faq
from model_export import hard_faq, shopper_data
from model_export.guard_key import normalise
from model_export.hard_faq import (
    DEFAULT_DIR,
    DEFAULT_FAQ,
    DEFAULT_QUERIES,
    NATIVE_SCRIPTS,
    HardQuery,
    counts_table,
    faq_stats,
    load_queries,
    split,
    write_splits,
)
from model_export.shopper_data import SPLITS


@pytest.fixture(scope="module")
def queries() -> list[HardQuery]:
    return load_queries(DEFAULT_QUERIES, faq=DEFAULT_FAQ)


# --- the FAQ ------------------------------------------------------------------------------------


def test_faq_has_150_topics_each_in_english_and_five_translations() -> None:
    items = read_faq(DEFAULT_FAQ)  # the index builder's own validation of every row
    stats = faq_stats(DEFAULT_FAQ)
    assert stats.topics >= 150 and stats.entries == len(items)
    english = {i.topic for i in items if i.lang == "en"}
    assert english == set(stats.translations), "every topic has an English entry"
    assert min(len(langs) for langs in stats.translations.values()) >= 5
    # An entry's id is its topic plus the language suffix, so topic_of groups the variants.
    assert all(i.id == (i.topic if i.lang == "en" else f"{i.topic}.{i.lang}") for i in items)


def test_every_topic_has_confusable_neighbours() -> None:
    """The second tag names the topic's group; a group of one would have no neighbour."""
    group_of: dict[str, str] = {}
    for item in read_faq(DEFAULT_FAQ):
        assert item.tags[0] == item.topic and len(item.tags) == 2, item.id
        assert group_of.setdefault(item.topic, item.tags[1]) == item.tags[1], item.id
    sizes = Counter(group_of.values())
    lonely = sorted(g for g, n in sizes.items() if n < 2)
    assert not lonely, lonely
    assert len(sizes) >= 15


# --- the queries --------------------------------------------------------------------------------


def test_queries_size_languages_kinds_and_scripts(queries: list[HardQuery]) -> None:
    assert len(queries) >= 800
    langs = Counter(q.lang for q in queries)
    assert len(langs) >= 10
    assert sum(q.kind == "code_mixed" for q in queries) * 2 >= len(queries)
    assert sum(q.romanised for q in queries) >= 100
    # Romanised queries in more than Hindi alone.
    assert len({q.lang for q in queries if q.romanised}) >= 3
    per_topic = Counter(q.faq_id for q in queries)
    assert set(per_topic) == set(faq_stats(DEFAULT_FAQ).translations)
    assert min(per_topic.values()) >= 5


def test_every_faq_id_is_a_topic_of_the_hard_faq(queries: list[HardQuery]) -> None:
    topics = shopper_data.faq_topics(DEFAULT_FAQ)
    assert {q.faq_id for q in queries} <= topics


def test_no_query_is_another_text_the_guard_reads(queries: list[HardQuery]) -> None:
    """A hard-FAQ dev/test query equal to an FAQ text would take that FAQ's training pairs out of
    every run; equal to a shopper query, it would be one text with two labels in two sets."""
    others: set[str] = set()
    for faq in (DEFAULT_FAQ, shopper_data.DEFAULT_FAQ):
        for line in faq.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            others |= {normalise(row["question"]), normalise(row["answer"])}
    others |= {normalise(q.query) for q in shopper_data.load_queries(faq=None)}
    assert not [q.query for q in queries if normalise(q.query) in others]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"script": "latn", "lang": "xx", "kind": "monolingual"}, "unknown lang 'xx'"),
        ({"script": "cyrl"}, "script 'cyrl' is not one of"),
        ({"script": None}, "script None is not one of"),
        # Japanese text claimed to be romaji, and romaji claimed to be Japanese script.
        ({"query": "注文をキャンセル", "lang": "ja"}, "not written in script 'latn'"),
        ({"query": "chuumon kyanseru", "lang": "ja", "script": "jpan"}, "not written in"),
        ({"query": "ऑर्डर कैंसल", "lang": "hi", "kind": "monolingual"}, "not written in"),
    ],
)
def test_loader_checks_language_and_script(
    tmp_path: Path, row: dict[str, object], message: str
) -> None:
    good = {
        "query": "ok",
        "faq_id": "return-how",
        "lang": "en",
        "kind": "english",
        "script": "latn",
    }
    bad = {**good, "query": "mera order", "lang": "hi", "kind": "code_mixed", **row}
    path = tmp_path / "q.jsonl"
    path.write_text(f"{json.dumps(good)}\n\n{json.dumps(bad, ensure_ascii=False)}\n", "utf-8")
    with pytest.raises(ValueError, match=rf"q\.jsonl:3: .*{message}"):
        load_queries(path, faq=DEFAULT_FAQ)


def test_romanised_is_relative_to_the_language() -> None:
    assert HardQuery("mera order kab aayega", "x", "hi", "code_mixed", "latn").romanised
    assert HardQuery("chuumon wo kyanseru", "x", "ja", "monolingual", "latn").romanised
    assert not HardQuery("注文をcancel", "x", "ja", "code_mixed", "jpan").romanised
    assert not HardQuery("mi pedido", "x", "es", "monolingual", "latn").romanised
    assert set(NATIVE_SCRIPTS.values()) <= set(hard_faq._SCRIPT_LETTERS)


# --- the split ----------------------------------------------------------------------------------


def test_splits_are_disjoint_cover_everything_and_every_topic(queries: list[HardQuery]) -> None:
    parts = split(queries)
    keys = {name: {normalise(q.query) for q in qs} for name, qs in parts.items()}
    assert not keys["train"] & keys["dev"]
    assert not keys["train"] & keys["test"]
    assert not keys["dev"] & keys["test"]
    assert sum(len(qs) for qs in parts.values()) == len(queries)
    assert sorted(q.query for qs in parts.values() for q in qs) == sorted(q.query for q in queries)
    topics = {q.faq_id for q in queries}
    for name in SPLITS:
        assert {q.faq_id for q in parts[name]} == topics, name
    assert len(parts["test"]) >= 400 and len(parts["dev"]) >= 150


def test_split_is_stratified_by_topic(queries: list[HardQuery]) -> None:
    """Each topic gives the same shares (40/15/45, rounded) to the splits, whatever its size."""
    parts = split(queries)
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for name, qs in parts.items():
        for q in qs:
            per[q.faq_id][name] += 1
    for topic, c in per.items():
        n = sum(c.values())
        assert (c["train"], c["dev"]) == hard_faq._sizes(n), topic
    assert hard_faq._sizes(6) == (2, 1) and hard_faq._sizes(10) == (4, 2)


def test_split_ignores_input_order(queries: list[HardQuery]) -> None:
    shuffled = queries[:]
    random.Random(7).shuffle(shuffled)
    assert split(shuffled) == split(queries)


def test_committed_split_files_and_readme_are_current(
    queries: list[HardQuery], tmp_path: Path
) -> None:
    """Also pins the hash across processes: Python's salted hash() would re-draw the split."""
    write_splits(queries, tmp_path)
    for name in SPLITS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (
            DEFAULT_DIR / f"{name}.jsonl"
        ).read_bytes(), f"run: python -m model_export.hard_faq ({name}.jsonl is stale)"
    assert counts_table(queries) in (DEFAULT_DIR / "README.md").read_text(encoding="utf-8")
