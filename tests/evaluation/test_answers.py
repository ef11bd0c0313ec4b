"""The figures of `faq-model evaluate-answers` (`model_export.evaluation.answers`) on hand-made
vectors."""

from __future__ import annotations

import pytest

from index_builder.answers.query_lang import QueryLanguageDetector
from model_export.calibrate import FaqSearch
from model_export.calibration import LabelledQuery
from model_export.evaluation.answers import detection_figures, expected_lang, grouping_figures
from tests.fakes import FakeEncoder
from tests.model_export.answers_setup import HAND_FAQ as FAQ


class StubDetector(QueryLanguageDetector):
    def __init__(self, lang: str | None) -> None:
        self.lang = lang

    def detect(self, text: str) -> str | None:
        return self.lang


def test_expected_language_falls_back_to_english() -> None:
    assert expected_lang(["es", "en"], {"en", "es"}) == {"es", "en"}
    assert expected_lang(["ja"], {"en", "es"}) == {"en"}
    assert expected_lang(["ja"], {"es"}) == {"es"}


def test_grouping_figures_count_distinct_topics_and_languages() -> None:
    faq = FaqSearch(FAQ, FakeEncoder(dim=128))
    figures = grouping_figures(
        faq, ["cancel order"], ["order-cancel"], [["es"]], StubDetector("es"), request_lang="de"
    )
    assert figures.queries == 1
    assert figures.distinct3_on == 1  # order-cancel, then the two other topics
    assert figures.distinct3_off == 0  # three order-cancel entries
    assert figures.top1_on == 1 and figures.top3_on == 1 and figures.top3_off == 1
    assert figures.lang_follows == 1  # served in es, the query's language
    assert figures.lang_requested == 1  # the de entry when de is asked for
    assert figures.reasons == {"query": 1}
    wrong = grouping_figures(
        faq, ["cancel order"], ["order-cancel"], [["es"]], StubDetector("de"), request_lang=None
    )
    assert wrong.lang_follows == 0
    assert figures.pct(1) == pytest.approx(100.0)


def test_detection_figures_by_kind() -> None:
    rows = [
        LabelledQuery("a", "t", "es", "monolingual"),
        LabelledQuery("b", "t", "es", "code_mixed"),
        LabelledQuery("c", "t", "ja", "monolingual"),
        LabelledQuery("d", "t", "ja", "code_mixed"),
    ]
    assert detection_figures(StubDetector("es"), rows, ["en", "es"]) == {
        "monolingual": (1, 1),
        "code_mixed": (1, 1),
        "other language": (0, 2),
    }
    assert detection_figures(StubDetector(None), rows, ["en", "es"])["other language"] == (2, 2)
