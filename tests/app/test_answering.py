"""`app.services.answering`: grouping, language choice and abstain applied to search hits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from app.services.answering import (
    Answering,
    QuerySpec,
    build_answering,
    served_calibration,
)
from index_builder.answers.calibration import AbstainRule
from index_builder.answers.grouping import FETCH_FACTOR, hit_topic
from index_builder.answers.query_lang import QueryLanguageDetector
from index_builder.model.manifest import AbstainCalibration, ModelManifest
from index_builder.store import Hit, SearchSpec
from index_builder.store.lexical import Lexicon
from tests.fakes import FakeEncoder


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


# A request's query as the search route makes it, grouped by default as /search is.
Spec = functools.partial(QuerySpec, group=True)


# Past the over-fetch of 2 answers (16 hits): twenty other topics, then the pt entries.
FILLER = [hit(f"other-{i}", "en", 0.79 - i / 100) for i in range(20)]
ALL = [*HITS, *FILLER, hit("order-cancel.pt", "pt", 0.50), hit("refund-time.pt", "pt", 0.45)]


class FakeSearch:
    """The index: the best `limit` of ALL, only `lang` entries when filtered; records calls."""

    def __init__(self) -> None:
        self.calls: list[list[SearchSpec]] = []

    async def __call__(self, vectors: np.ndarray, specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        assert len(vectors) == len(specs)
        self.calls.append(list(specs))
        return [
            [h for h in ALL if lang is None or h.lang == lang][:limit] for limit, lang, *_ in specs
        ]


class FakeEntries:
    """The live snapshot's lookup over ALL; records what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str | None]] = []

    def entry_in(
        self, vector: np.ndarray, topic: str, lang: str, market: str | None = None
    ) -> Hit | None:
        self.asked.append((topic, lang, market))
        return next((h for h in ALL if hit_topic(h) == topic and h.lang == lang), None)


def test_answer_batch_finds_the_wanted_language_beyond_the_fetched_hits() -> None:
    answering = Answering(
        AbstainRule(None), QueryLanguageDetector(["en", "es", "pt"], low_accuracy=True)
    )
    specs = [
        Spec("quero cancelar o meu pedido agora", 2),  # Portuguese: pt entries rank low
        Spec("cancel", 2, prefer_lang="pt", market="br"),
        Spec("cancel", 2, prefer_lang="pt", group=False),
        Spec("cancel", 2, prefer_lang="pt", lang_filter="en"),  # filtered: English only
        Spec("cancel", 2, prefer_lang="en"),  # English entries already fetched
    ]
    vectors = np.ones((len(specs), 4), dtype=np.float32)
    search, entries = FakeSearch(), FakeEntries()

    shaped = asyncio.run(
        answering.answer_batch(specs, vectors, search, 2000, topic_entries=entries)
    )
    # In-process: one search for the batch; the pt entries that were not fetched are looked up
    # in the snapshot, with the query's market filter.
    assert len(search.calls) == 1 and len(search.calls[0]) == len(specs)
    assert "order-cancel.pt" not in {h.id for h in ALL[: 2 * FETCH_FACTOR]}
    assert ("order-cancel", "pt", "br") in entries.asked
    assert {lang for _, lang, _ in entries.asked} == {"pt"}
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
    # Against a server: the pt-restricted searches in the same one call, same answers.
    remote = FakeSearch()
    again = asyncio.run(answering.answer_batch(specs, vectors, remote, 2000))
    assert len(remote.calls) == 1
    assert [s[:3] for s in remote.calls[0][len(specs) :]] == [
        (2 * FETCH_FACTOR, "pt", None),
        (2 * FETCH_FACTOR, "pt", "br"),
    ]
    assert [[h.id for h in s.hits] for s in again] == [[h.id for h in s.hits] for s in shaped]
    # Nothing to look up: the snapshot is not asked.
    entries.asked.clear()
    asyncio.run(
        answering.answer_batch(specs[4:], vectors[4:], FakeSearch(), 2000, topic_entries=entries)
    )
    assert entries.asked == []


def test_answer_batch_cuts_the_text_it_reads() -> None:
    seen: list[str] = []

    class Recording(QueryLanguageDetector):
        def __init__(self) -> None:
            pass

        def detect(self, text: str) -> str | None:
            seen.append(text)
            return None

    asyncio.run(
        Answering(AbstainRule(None), Recording()).answer_batch(
            [Spec("x" * 50, 1)], np.ones((1, 4), np.float32), FakeSearch(), max_query_chars=10
        )
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
    asyncio.run(
        answering.answer_batch([Spec(text, 2)], np.ones((1, 4), dtype=np.float32), search, 2000)
    )
    assert [s.lexical for s in search.calls[0]] == [lexicon.query(text)] * 2
    plain = FakeSearch()
    asyncio.run(
        Answering(AbstainRule(None)).answer_batch(
            [Spec(text, 2)], np.ones((1, 4), dtype=np.float32), plain, 2000
        )
    )
    assert [s.lexical for s in plain.calls[0]] == [()]


def test_answers_do_not_depend_on_how_many_hits_were_fetched_on_the_real_model(
    real_onnx_dir: Path,
) -> None:
    """The shopper test split, served by the base model on the sample FAQ: each topic's entry
    is in the first wanted language the topic has (requested, the query's, English), and the
    answers to top_k 3 are the first three of those to top_k 10, with one search per query."""
    from index_builder.answers.grouping import wanted_languages
    from index_builder.faq import read_faq
    from index_builder.model.encoder import OnnxEncoder
    from model_export.calibrate import FaqSearch
    from model_export.calibration import SHOPPER_DIR, load_labelled

    repo = Path(__file__).resolve().parents[2]
    encoder = OnnxEncoder.load(real_onnx_dir)
    faq = FaqSearch(read_faq(repo / "data" / "faq.jsonl"), encoder)
    texts = [q.query for q in load_labelled(SHOPPER_DIR / "test.jsonl")]
    vectors = encoder.encode_queries(texts)
    answering = Answering(
        AbstainRule(None),
        QueryLanguageDetector(faq.languages, low_accuracy=True),
        lexicon=faq.lexicon,
    )
    searched: list[int] = []

    async def search(v: np.ndarray, specs: Sequence[SearchSpec]) -> list[list[Hit]]:
        searched.append(len(specs))
        return faq.snapshot.search_batch(v, specs, faq.retrieval)

    def answers(shaped: list[Any], k: int) -> list[Any]:
        return [([h.id for h in a.hits][:k], a.lang_reasons[:k], a.scores[:k]) for a in shaped]

    looked_up = 0
    for prefer in (None, "de"):
        three, ten = (
            asyncio.run(
                answering.answer_batch(
                    [Spec(t, k, prefer_lang=prefer) for t in texts],
                    vectors,
                    search,
                    2000,
                    topic_entries=faq.snapshot,
                )
            )
            for k in (3, 10)
        )
        assert answers(ten, 3) == answers(three, 3), prefer
        assert searched == [len(texts), len(texts)]
        searched.clear()
        fetched = faq.search(texts, vectors, 24)
        for shaped, row in zip(three, fetched, strict=True):
            wanted = wanted_languages(prefer, shaped.query_lang)
            for h, topic in zip(shaped.hits, shaped.topics, strict=True):
                has = [lang for lang in wanted if lang in faq.topic_langs[topic]]
                assert h.lang == (has[0] if has else h.lang), (shaped, topic)
                looked_up += h.id not in {e.id for e in row}
    assert looked_up > 0  # some entries shown were not among the fetched hits


def test_the_served_variant_gets_its_own_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fp32 = _calibration(0.5, 0.0, [])
    int8 = _calibration(0.4, 0.0, []).model_copy(update={"variant": "int8"})
    model = _model_dir(tmp_path, None)
    manifest = ModelManifest.read(model).with_calibration(fp32).with_calibration(int8)
    manifest.write(model)
    served = served_calibration(model, manifest.fingerprint("int8"), "int8")
    assert served is not None and served.min_score == 0.4
    served = served_calibration(model, manifest.fingerprint("fp32"), "fp32")
    assert served is not None and served.min_score == 0.5
    assert "is served" not in caplog.text
    # A variant never calibrated: fp32's, with a warning.
    only_fp32 = _model_dir(tmp_path / "c", None)
    ModelManifest.read(only_fp32).with_calibration(fp32).write(only_fp32)
    fallback = served_calibration(only_fp32, manifest.fingerprint("int8"), "int8")
    assert fallback is not None and fallback.variant == "fp32"
    assert "calibrated on the fp32 variant and int8 is served" in caplog.text
