"""The query's language, offline (`index_builder.answers.query_lang`): only FAQ languages come
out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from index_builder.answers.query_lang import OTHER_LANGUAGES, QueryLanguageDetector
from model_export.evaluation.answers import ms_per_query

FAQ_LANGS = ["en", "es", "id", "de", "fr", "pt"]


@pytest.fixture(scope="module", params=[True, False], ids=["low", "high"])
def detector(request: pytest.FixtureRequest) -> QueryLanguageDetector:
    return QueryLanguageDetector(FAQ_LANGS, low_accuracy=request.param)


@pytest.mark.parametrize(
    ("query", "lang"),
    [
        ("wie lange dauert die Rückerstattung bei euch", "de"),
        ("quiero cancelar mi pedido por favor", "es"),
        ("barang saya belum sampai sampai sekarang", "id"),
        ("je voudrais changer mon adresse de livraison", "fr"),
        ("where is my order, it has not arrived yet", "en"),
    ],
)
def test_faq_languages_are_detected(detector: QueryLanguageDetector, query: str, lang: str) -> None:
    assert detector.detect(query) == lang


@pytest.mark.parametrize(
    ("query", "other"),
    [
        ("注文をキャンセルしたいです", "ja"),
        ("คำสั่งซื้อของฉันอยู่ที่ไหน", "th"),
        ("paano ko makukuha ang aking refund, ilang araw po ba", "tl"),
    ],
)
def test_a_language_the_faq_lacks_is_none_not_a_look_alike(
    detector: QueryLanguageDetector, query: str, other: str
) -> None:
    assert detector.detect_any(query) == other
    assert detector.detect(query) is None


@pytest.mark.parametrize("query", ["????", "12345 678", ":) :)"])
def test_no_letters_is_undecided(detector: QueryLanguageDetector, query: str) -> None:
    assert detector.detect(query) is None


def test_restricted_to_the_faq_languages_without_extra_languages() -> None:
    # Without the shopper languages a Tagalog query is forced onto a FAQ language: the reason
    # the detector knows more languages than the FAQ has.
    narrow = QueryLanguageDetector(FAQ_LANGS, other_languages=(), low_accuracy=True)
    assert narrow.languages == frozenset(FAQ_LANGS)
    assert narrow.detect("paano ko makukuha ang aking refund, ilang araw po ba") in FAQ_LANGS


def test_single_language_faq_and_unknown_codes() -> None:
    one = QueryLanguageDetector(["xx"], other_languages=())
    assert one.languages == frozenset()
    assert one.detect("anything at all") is None
    only_en = QueryLanguageDetector(["en"], other_languages=())
    assert only_en.detect("hola amigo") == "en"
    assert only_en.detect("???") is None


def test_cost_is_measured_per_query(detector: QueryLanguageDetector) -> None:
    assert ms_per_query(detector, ["hello there"] * 20) > 0.0


def test_code_mixed_queries_are_told_from_the_others_as_documented() -> None:
    # The query log's flag, on the shopper dev split where its threshold was chosen (it flags
    # 80 % of the code-mixed queries and 12 % of the others).
    detector = QueryLanguageDetector(OTHER_LANGUAGES, other_languages=(), low_accuracy=True)
    assert detector.read("accountを作りたい") == ("ja", True)
    assert detector.read("quiero cancelar mi order") == ("es", True)
    assert detector.read("where is my order, it has not arrived yet") == ("en", False)
    assert detector.read("12345") == (None, False)
    dev = Path(__file__).resolve().parents[2] / "data" / "shopper" / "dev.jsonl"
    rows = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines()]
    flagged: dict[bool, list[bool]] = {True: [], False: []}
    for row in rows:
        flagged[row["kind"] == "code_mixed"].append(detector.read(row["query"])[1])
    assert sum(flagged[True]) / len(flagged[True]) >= 0.78
    assert sum(flagged[False]) / len(flagged[False]) <= 0.13
