"""`app.services.answering`: grouping, language choice and abstain applied to search hits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from app.services.answering import Answering, build_answering, served_calibration
from index_builder.answers import FETCH_FACTOR, needs_language_search
from index_builder.calibration import AbstainRule
from index_builder.encoder import FakeEncoder
from index_builder.lexical import Lexicon
from index_builder.manifest import AbstainCalibration, ModelManifest
from index_builder.query_lang import QueryLanguageDetector
from index_builder.store import Hit, SearchSpec


def hit(i: str, lang: str, score: float) -> Hit:
    return Hit(id=i, question="q", answer="a", lang=lang, market=None, tags=[], score=score)


HITS = [
    hit("order-cancel.es", "es", 0.93),
    hit("order-cancel", "en", 0.91),
    hit("order-cancel.de", "de", 0.90),
    hit("refund-time", "en", 0.85),
    hit("shipping-cost", "en", 0.80),
]
VEC = np.ones(4, dtype=np.float32) / 2.0


def counter() -> Counter:
    return Counter("abstained", "test", registry=CollectorRegistry())


def test_groups_and_follows_the_query_language() -> None:
    answering = Answering(
        AbstainRule(None), QueryLanguageDetector(["en", "es", "de"], low_accuracy=True)
    )
    shaped = answering.shape("quiero cancelar mi pedido por favor", VEC, HITS, 3)
    assert shaped.answered and shaped.query_lang == "es"
    assert [h.id for h in shaped.hits] == ["order-cancel.es", "refund-time", "shipping-cost"]
    assert shaped.lang_reasons == ["query", "english", "english"]
    assert shaped.topics == ["order-cancel", "refund-time", "shipping-cost"]
    assert shaped.scores == [0.93, 0.85, 0.80]
    english = Answering(AbstainRule(None)).shape("where is my order", VEC, HITS, 2)
    # The English entry is shown, ranked by its topic's best score (the es entry's).
    assert [h.id for h in english.hits] == ["order-cancel", "refund-time"]
    assert english.scores == [0.93, 0.85]
    requested = answering.shape("quiero cancelar mi pedido", VEC, HITS, 1, lang="de")
    assert [(h.id, r) for h, r in zip(requested.hits, requested.lang_reasons, strict=True)] == [
        ("order-cancel.de", "requested")
    ]
    ungrouped = answering.shape("cancel", VEC, HITS, 3, group=False)
    assert [h.id for h in ungrouped.hits] == ["order-cancel.es", "order-cancel", "order-cancel.de"]


def test_group_default_and_fetch_limit() -> None:
    off = Answering(AbstainRule(None), None, group_default=False)
    assert off.fetch_limit(5, None) == 5
    assert off.fetch_limit(5, True) > 5
    assert len(off.shape("x", VEC, HITS, 3).hits) == 3
    assert {h.id for h in off.shape("x", VEC, HITS, 3).hits} <= {h.id for h in HITS[:3]}


def test_abstains_below_min_score_and_counts_it() -> None:
    abstained = counter()
    answering = Answering(AbstainRule(0.92), None, abstained=abstained)
    low = answering.shape("weather in paris", VEC, [hit("a", "en", 0.91)], 5)
    assert (low.answered, low.hits, low.answer_score) == (False, [], pytest.approx(0.91))
    assert abstained._value.get() == 1
    # The request's min_score wins over the default, both ways.
    assert answering.shape("x", VEC, [hit("a", "en", 0.91)], 5, min_score=0.5).answered
    assert not answering.shape("x", VEC, [hit("a", "en", 0.99)], 5, min_score=0.995).answered
    # No hit at all (an empty filter) is not an answer either.
    assert not answering.shape("x", VEC, [], 5).answered
    assert abstained._value.get() == 3


def _model_dir(tmp_path: Path, calibration: AbstainCalibration | None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ModelManifest(
        name="fake", source_model="x", dim=64, max_length=128, inputs=["input_ids"],
        variants={"fp32": "model.onnx", "int8": "model.int8.onnx"}, files={},
        abstain=calibration,
    ).write(tmp_path)  # fmt: skip
    return tmp_path


def _calibration(min_score: float, weight: float, anchors: list[str]) -> AbstainCalibration:
    return AbstainCalibration(
        min_score=min_score, offtopic_weight=weight, anchors=anchors, refusal_budget=0.02,
        answerable=1, offtopic=1, dev_refused=0.0, dev_abstained=1.0, faq_hash="x",
    )  # fmt: skip


def test_uses_the_calibration_and_its_anchors() -> None:
    encoder = FakeEncoder(dim=64)
    answering = build_answering(encoder, _calibration(0.5, 1.0, ["weather in paris today"]))
    assert answering.rule.min_score == 0.5
    weather = encoder.encode_queries(["weather in paris today"])[0]
    shop = encoder.encode_queries(["cancel my order"])[0]
    # Same top score; the query that is an anchor's twin loses about 1.0 and is refused.
    assert not answering.shape("weather in paris today", weather, [hit("a", "en", 0.9)], 1).answered
    assert answering.shape("cancel my order", shop, [hit("a", "en", 0.9)], 1).answered
    # FAQ_MIN_SCORE overrides the calibrated threshold, the anchors stay.
    overridden = build_answering(encoder, _calibration(0.5, 1.0, ["x"]), min_score=-5.0)
    assert (overridden.rule.min_score, overridden.rule.offtopic_weight) == (-5.0, 1.0)


def test_no_calibration_never_abstains_unless_a_setting_says() -> None:
    encoder = FakeEncoder(dim=64)
    never = build_answering(encoder, None)
    assert never.shape("anything", VEC, [hit("a", "en", -0.5)], 1).answered
    setting = build_answering(encoder, None, min_score=0.3)
    assert not setting.shape("anything", VEC, [hit("a", "en", 0.2)], 1).answered


def test_served_calibration_only_for_the_model_it_describes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = _model_dir(tmp_path, _calibration(0.5, 0.0, []))
    manifest = ModelManifest.read(model)
    assert served_calibration(tmp_path / "missing", "x") is None
    served = served_calibration(model, manifest.fingerprint("fp32"))
    assert served is not None and served.min_score == 0.5
    # A fake encoder (or a model directory that changed under the service): not its rule.
    assert served_calibration(model, FakeEncoder().fingerprint) is None
    assert "is for fake" in caplog.text
    # Another variant than the one calibrated: used, with a warning.
    assert served_calibration(model, manifest.fingerprint("int8"), "int8") is not None
    assert "calibrated on the fp32 variant and int8 is served" in caplog.text
    assert served_calibration(_model_dir(tmp_path / "b", None), "x") is None


@dataclass(frozen=True)
class Spec:
    text: str
    top_k: int
    lang: str | None = None
    market: str | None = None
    group: bool = True
    prefer_lang: str | None = None
    min_score: float | None = None


# Past the over-fetch of 2 answers (16 hits): twenty other topics, then the pt entries.
FILLER = [hit(f"other-{i}", "en", 0.79 - i / 100) for i in range(20)]
ALL = [*HITS, *FILLER, hit("order-cancel.pt", "pt", 0.50), hit("refund-time.pt", "pt", 0.45)]


class FakeSearch:
    """The index: the best `limit` of ALL, only `lang` entries when filtered; records calls."""

    def __init__(self) -> None:
        self.calls: list[list[SearchSpec]] = []

    def __call__(self, vectors: np.ndarray, specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        assert len(vectors) == len(specs)
        self.calls.append(list(specs))
        return [
            [h for h in ALL if lang is None or h.lang == lang][:limit] for limit, lang, *_ in specs
        ]


def test_answer_batch_fetches_the_wanted_language_only_where_it_can_change_answers() -> None:
    search = FakeSearch()
    answering = Answering(
        AbstainRule(None), QueryLanguageDetector(["en", "es", "pt"], low_accuracy=True)
    )
    specs = [
        Spec("quero cancelar o meu pedido agora", 2),  # Portuguese: pt entries rank low
        Spec("cancel", 2, prefer_lang="pt"),
        Spec("cancel", 2, prefer_lang="pt", group=False),
        Spec("cancel", 2, prefer_lang="pt", lang="en"),  # filtered: no second search
        Spec("cancel", 2, prefer_lang="en"),  # English entries already fetched: none either
    ]
    vectors = np.ones((len(specs), 4), dtype=np.float32)
    shaped = answering.answer_batch(specs, vectors, search, max_query_chars=2000)
    # One batched call for every query, one more for the two whose pt entries were not fetched.
    assert len(search.calls) == 2 and len(search.calls[0]) == len(specs)
    assert "order-cancel.pt" not in {h.id for h in ALL[: 2 * FETCH_FACTOR]}
    assert [s[:3] for s in search.calls[1]] == [(2 * FETCH_FACTOR, "pt", None)] * 2
    assert shaped[0].query_lang == "pt"
    assert [(h.id, r) for h, r in zip(shaped[0].hits, shaped[0].lang_reasons, strict=True)] == [
        ("order-cancel.pt", "query"),
        ("refund-time.pt", "query"),
    ]
    assert shaped[0].scores == [0.93, 0.85]  # ranked by each topic's best, not the pt entry's
    assert [h.id for h in shaped[1].hits] == ["order-cancel.pt", "refund-time.pt"]
    assert [r for r in shaped[2].lang_reasons] == ["ranked", "ranked"]
    assert {h.lang for h in shaped[3].hits} == {"en"}
    assert [r for r in shaped[4].lang_reasons] == ["requested", "requested"]
    # Against a server: every language-restricted search in the one call, same answers.
    remote = FakeSearch()
    again = answering.answer_batch(specs, vectors, remote, 2000, in_process=False)
    assert len(remote.calls) == 1
    assert [s[1] for s in remote.calls[0][len(specs) :]] == ["pt", "pt", "en"]
    assert [[h.id for h in s.hits] for s in again] == [[h.id for h in s.hits] for s in shaped]


def test_a_language_search_is_needed_only_when_it_can_change_the_answers() -> None:
    # Two topics asked for; b's Spanish entry is not among the hits: needed.
    hits = [hit("a.es", "es", 0.9), hit("b", "en", 0.8), hit("a", "en", 0.7)]
    assert needs_language_search(hits, "es", top_k=2, limit=3)
    # Every shown topic has its Spanish entry among the hits: a second search adds nothing.
    hits.append(hit("b.es", "es", 0.6))
    assert not needs_language_search(hits, "es", top_k=2, limit=4)
    # A topic past the first two without one does not matter.
    assert not needs_language_search([*hits, hit("c", "en", 0.5)], "es", top_k=2, limit=5)
    # Fewer topics than asked for: the second search may bring more.
    assert needs_language_search(hits[:1], "es", top_k=2, limit=1)
    # The search returned fewer than the limit: it already holds every entry.
    assert not needs_language_search(hits[:3], "es", top_k=2, limit=10)
    # b has no Spanish entry anywhere in the index: nothing to fetch for it.
    langs = {"a": frozenset({"en", "es"}), "b": frozenset({"en"})}
    assert not needs_language_search(hits[:3], "es", top_k=2, limit=3, topic_languages=langs)
    assert needs_language_search(
        hits[:3], "es", top_k=2, limit=3, topic_languages={**langs, "b": frozenset({"es"})}
    )


def test_answer_batch_cuts_the_text_it_reads() -> None:
    seen: list[str] = []

    class Recording(QueryLanguageDetector):
        def __init__(self) -> None:
            pass

        def detect(self, text: str) -> str | None:
            seen.append(text)
            return None

    Answering(AbstainRule(None), Recording()).answer_batch(
        [Spec("x" * 50, 1)], np.ones((1, 4), np.float32), FakeSearch(), max_query_chars=10
    )
    assert seen == ["x" * 10]


def test_answer_batch_sends_the_lexical_tokens_of_each_query() -> None:
    # With the lexical part on, every search of a query (the language-restricted one too)
    # carries the query's tokens; without a lexicon none do.
    search = FakeSearch()
    lexicon = Lexicon.for_encoder(FakeEncoder(dim=8))
    answering = Answering(
        AbstainRule(None),
        QueryLanguageDetector(["en", "es", "pt"], low_accuracy=True),
        lexicon=lexicon,
    )
    text = "quero cancelar o meu pedido agora"
    answering.answer_batch([Spec(text, 2)], np.ones((1, 4), dtype=np.float32), search, 2000)
    assert [s.lexical for c in search.calls for s in c] == [lexicon.query(text)] * 2
    plain = FakeSearch()
    Answering(AbstainRule(None)).answer_batch(
        [Spec(text, 2)], np.ones((1, 4), dtype=np.float32), plain, 2000
    )
    assert [s.lexical for s in plain.calls[0]] == [()]


def test_skipping_needless_language_searches_changes_no_answer_on_the_real_model(
    real_onnx_dir: Path,
) -> None:
    """The shopper test split, served by the base model on the sample FAQ: the answers with
    the language-restricted search only where it can change them are those with it always."""
    import app.services.answering as answering_module
    from index_builder.answer_eval import FaqSearch, shopper_split
    from index_builder.encoder import OnnxEncoder
    from index_builder.faq import read_faq

    repo = Path(__file__).resolve().parents[2]
    encoder = OnnxEncoder.load(real_onnx_dir)
    faq = FaqSearch(read_faq(repo / "data" / "faq.jsonl"), encoder)
    texts = [q.query for q in shopper_split("test")]
    vectors = encoder.encode_queries(texts)
    answering = Answering(
        AbstainRule(None),
        QueryLanguageDetector(faq.languages, low_accuracy=True),
        lexicon=faq.lexicon,
    )
    searched: list[int] = []

    def search(v: np.ndarray, specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        searched.append(len(specs))
        return faq.index.search_batch(v, specs)

    topic_languages = faq.index.topic_languages()
    assert topic_languages is not None
    for prefer in (None, "de"):
        specs = [Spec(t, 3, prefer_lang=prefer) for t in texts]
        searched.clear()
        skipping = answering.answer_batch(specs, vectors, search, 2000)
        fewer = sum(searched)
        searched.clear()
        # Knowing each topic's languages skips more, still without changing an answer.
        knowing = answering.answer_batch(
            specs, vectors, search, 2000, topic_languages=lambda: topic_languages
        )
        fewest = sum(searched)
        searched.clear()
        always = answering_module.needs_language_search
        answering_module.needs_language_search = lambda *_: True  # type: ignore[assignment]
        try:
            full = answering.answer_batch(specs, vectors, search, 2000)
        finally:
            answering_module.needs_language_search = always

        def answers(shaped: list[Any]) -> list[Any]:
            return [([h.id for h in a.hits], a.lang_reasons, a.scores) for a in shaped]

        assert answers(skipping) == answers(full) == answers(knowing)
        assert fewest < fewer < sum(searched), prefer  # and searches were saved
